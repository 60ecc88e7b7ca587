"""Load bi-encoders: a local folder, a hub id, a GGUF file, a base + adapter folder, or the packaged
all-MiniLM-L6-v2 default (rtune.models.names); the encoder settings' pooling, EOS, padding and dtype applied."""

from __future__ import annotations

import logging
from pathlib import Path

from rtune.errors import InputError
from rtune.models.adapter import adapter_base, attach_adapter, is_adapter_folder
from rtune.models.decoder import apply_decoder_settings, is_causal_lm
from rtune.models.finite import require_finite_weights
from rtune.models.gguf import load_gguf_transformer, split_gguf
from rtune.models.names import check_model_name, first_line, not_found_message, resolve_model
from rtune.models.settings import EncoderSettings

log = logging.getLogger(__name__)


def load_bi_encoder(name_or_path: str | Path | None = None, device: str | None = None, settings=None):
    """Load a SentenceTransformer with `settings` (EncoderSettings: pooling, EOS, padding side, dtype) applied;
    a folder or id that does not load raises InputError naming it. An adapter folder loads its base, then
    the adapter; a `.gguf` file or a plain causal-LM folder gets last-token pooling unless told otherwise."""
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
    require_finite_weights(model, "the model", resolved)  # a diverged model is not evaluated as if it were fine
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
            raise InputError(not_found_message(resolved, f"{type(err).__name__}: {first_line(err)}")) from err
        raise InputError(f"model does not load: {type(err).__name__}: {err}", resolved) from err
    plain = Path(resolved).is_dir() and not (Path(resolved) / "modules.json").is_file()
    return model, ("last_token" if plain and is_causal_lm(model) else None)


