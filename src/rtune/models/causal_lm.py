"""Causal language models as rerankers load them: a folder, hub id or GGUF file, or an LLM-reranker adapter folder
(`rtune train-llm-reranker`: its base, then the adapter). Used by LLM-reranker scoring, its training and merge."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rtune.errors import InputError
from rtune.models.adapter import adapter_base, is_adapter_folder, load_adapter
from rtune.models.gguf import as_dense_model, parsed_once, split_gguf


def load_causal_lm(name_or_path: str, dtype, device: str, gguf_file: str | None = None):
    """(tokenizer, model) for a causal LM folder, hub id, GGUF file, or an LLM-reranker adapter folder
    (its base is loaded, then the adapter, as a PeftModel); failures raise InputError naming what did not load
    (for an adapter whose base cannot be found: the adapter folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    path = Path(name_or_path).expanduser()
    if not gguf_file and path.is_dir() and is_adapter_folder(path):
        return _load_with_adapter(path, dtype, device)
    resolved = str(path) if path.exists() else name_or_path
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        with parsed_once() if gguf_file else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(resolved, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype, **kwargs)
    except Exception as err:  # the loaders raise many types (OSError, ValueError, JSON errors...)
        raise InputError(f"model does not load as a causal LM: {type(err).__name__}: {err}", resolved) from err
    return tokenizer, model.to(device).eval()


def _load_with_adapter(folder: Path, dtype, device: str):
    """(tokenizer, PeftModel): the adapter's base (a folder, hub id or GGUF file), dequantised, with the adapter on."""
    if (folder / "modules.json").is_file():
        raise InputError("this adapter belongs to a bi-encoder (`rtune train --lora-rank`), not an LLM reranker; "
                         "score with --teacher bi_encoder", folder)
    base = adapter_base(folder)  # a base that cannot be found fails here, naming the folder
    name, gguf_file = split_gguf(base) or (base, None)
    tokenizer, model = load_causal_lm(name, dtype, device, gguf_file)
    as_dense_model(model)
    if (folder / "tokenizer_config.json").is_file():  # saved with the adapter (its pad token included)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return tokenizer, load_adapter(model, folder).eval()
