"""LoRA adapter folders: an adapter (peft) plus a reference to its base model, loaded as base + adapter.

A folder is an adapter folder when it holds `adapter_config.json`. Its base is read from
`rtune_adapter.json` (written by rtune: the base as it was given, e.g. a GGUF file path) or else from
peft's `base_model_name_or_path`. Loading goes through peft directly (transformers' own adapter
loading asks for a newer peft than is released), so the same code serves train, mine, eval, score,
merge and the Retriever.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.errors import InputError
from rtune.models.names import looks_like_path, resolve_model

ADAPTER_CONFIG = "adapter_config.json"
BASE_REFERENCE = "rtune_adapter.json"


def require_peft():
    """The peft module, or an InputError naming the extra that installs it."""
    try:
        import peft
    except ImportError:
        raise InputError("LoRA adapters need the `peft` package: pip install 'rtune[llm]'") from None
    return peft


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def write_base_reference(folder: str | Path, base: str) -> Path:
    """Record the adapter's base model (a folder or GGUF file as an absolute path, else the hub id)."""
    base_path = Path(base).expanduser()
    value = str(base_path.resolve()) if base_path.exists() else base
    path = Path(folder) / BASE_REFERENCE
    with atomic_file(path) as handle:
        handle.write(json.dumps({"base_model": value}, indent=2) + "\n")
    return path


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the adapter's base reference: {err}", path) from None
    if not isinstance(raw, dict):
        raise InputError("expected a JSON object", path)
    return raw


def adapter_base(folder: str | Path) -> str:
    """The base model of an adapter folder, resolved; InputError naming the folder when it cannot be found."""
    folder = Path(folder)
    reference = folder / BASE_REFERENCE
    key, raw = ("base_model", _read_json(reference)) if reference.is_file() else (
        "base_model_name_or_path", _read_json(folder / ADAPTER_CONFIG))
    base = raw.get(key)
    if not isinstance(base, str) or not base:
        raise InputError(f"the adapter does not name its base model ('{key}' is missing)", folder)
    resolved = resolve_model(base)
    if not Path(resolved).exists() and looks_like_path(resolved):
        raise InputError(f"the adapter's base model '{base}' cannot be found (no such file or folder); restore it "
                         f"there, or edit '{key}' in {reference.name if reference.is_file() else ADAPTER_CONFIG}", folder)
    if Path(resolved).resolve() == folder.resolve():
        raise InputError("the adapter names itself as its base model", folder)
    return resolved


def load_adapter(model, folder: str | Path, trainable: bool = False):
    """`model` (a transformers model) wrapped in the peft adapter saved in `folder`; an adapter that does not
    fit the model raises InputError naming the folder."""
    peft = require_peft()
    try:
        return peft.PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except Exception as err:  # peft raises many types
        raise InputError(f"adapter does not load onto its base: {type(err).__name__}: {err}", folder) from err


def fold_adapter(model):
    """A transformers model with its adapter merged into the weights when it is a PeftModel, else itself."""
    try:
        from peft import PeftModel
    except ImportError:
        return model
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def attach_adapter(model, folder: str | Path, trainable: bool = False):
    """Wrap `model`'s transformer (a SentenceTransformer) with the peft adapter saved in `folder`."""
    module = model[0]
    module.model = load_adapter(module.model, folder, trainable)
    return model


def merge_adapter_into_model(model):
    """Fold the adapter of `model`'s transformer into its weights (in place); returns `model`."""
    peft = require_peft()
    module = model[0]
    if not isinstance(module.model, peft.PeftModel):
        raise InputError("the model holds no adapter to merge")
    module.model = module.model.merge_and_unload()
    return model
