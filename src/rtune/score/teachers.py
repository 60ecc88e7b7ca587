"""Teacher registry: the names users type -> the classes that score, and one builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from rtune.errors import check_choice
from rtune.score.bi_encoder import BiEncoderTeacher
from rtune.score.cross_encoder import CrossEncoderTeacher
from rtune.score.llm import LLMRerankerTeacher
from rtune.score.teacher import Teacher

AUTO = "auto"
TEACHERS: dict[str, Callable[..., Teacher]] = {
    "cross_encoder": CrossEncoderTeacher,
    "llm": LLMRerankerTeacher,
    "bi_encoder": BiEncoderTeacher,
}


def detect_kind(model: str, gguf_file: str | None = None) -> str:
    """`llm` for a GGUF file, a config whose architecture is a `...ForCausalLM` or an LLM-reranker adapter folder
    (`rtune train-llm-reranker`), else `cross_encoder`. (A bi-encoder teacher is never guessed: name it.)"""
    if gguf_file:
        return "llm"
    from transformers import AutoConfig

    from rtune.models.adapter import is_adapter_folder

    path = Path(model).expanduser()
    if path.is_dir() and is_adapter_folder(path) and not (path / "modules.json").is_file():
        return "llm"
    try:
        config = AutoConfig.from_pretrained(str(path) if path.exists() else model)
    except Exception:  # noqa: BLE001 - the teacher's own loader reports what is wrong with the model
        return "cross_encoder"
    return "llm" if any(a.endswith("ForCausalLM") for a in config.architectures or []) else "cross_encoder"


def build_teacher(kind: str, model: str, **settings) -> Teacher:
    """Load `model` as the `kind` teacher (`auto`: see detect_kind). Settings a teacher does not take are dropped,
    so one config can hold the options of all of them."""
    check_choice("teacher", kind, [AUTO, *TEACHERS])
    if kind == AUTO:
        kind = detect_kind(model, settings.get("gguf_file"))
    cls = TEACHERS[kind]
    accepted = set(inspect.signature(cls).parameters)
    return cls(model, **{k: v for k, v in settings.items() if k in accepted})
