"""Reranker kinds: the names users type (`--teacher`, `--rerank`) -> the classes that score, and one builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from rtune.errors import check_choice
from rtune.models.adapter import is_adapter_folder
from rtune.models.rerankers.bi_encoder import BiEncoderReranker
from rtune.models.rerankers.cross_encoder import CrossEncoderReranker
from rtune.models.rerankers.llm import LLMReranker
from rtune.models.rerankers.protocol import Reranker

AUTO = "auto"
RERANKERS: dict[str, Callable[..., Reranker]] = {
    "cross_encoder": CrossEncoderReranker,
    "llm": LLMReranker,
    "bi_encoder": BiEncoderReranker,
}


def detect_kind(model: str, gguf_file: str | None = None) -> str:
    """`llm` for a GGUF file, a config whose architecture is a `...ForCausalLM` or an LLM-reranker adapter folder
    (`rtune train-llm-reranker`), else `cross_encoder`. (A bi-encoder reranker is never guessed: name it.)"""
    if gguf_file:
        return "llm"
    from transformers import AutoConfig


    path = Path(model).expanduser()
    if path.is_dir() and is_adapter_folder(path) and not (path / "modules.json").is_file():
        return "llm"
    try:
        config = AutoConfig.from_pretrained(str(path) if path.exists() else model)
    except Exception:  # noqa: BLE001 - the reranker's own loader reports what is wrong with the model
        return "cross_encoder"
    return "llm" if any(a.endswith("ForCausalLM") for a in config.architectures or []) else "cross_encoder"


def load_reranker(model: str, kind: str = AUTO, **settings) -> Reranker:
    """Load `model` as the `kind` reranker (`auto`: see detect_kind). Settings a kind does not take are dropped,
    so one config can hold the options of all of them."""
    check_choice("reranker kind", kind, [AUTO, *RERANKERS])
    if kind == AUTO:
        kind = detect_kind(model, settings.get("gguf_file"))
    cls = RERANKERS[kind]
    accepted = set(inspect.signature(cls).parameters)
    return cls(model, **{k: v for k, v in settings.items() if k in accepted})
