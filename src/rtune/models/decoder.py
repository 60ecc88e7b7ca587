"""Decoder-only embedders: pooling, an appended EOS token and the padding side, applied to a loaded model.

Applying is idempotent (a saved model whose tokenizer already appends EOS is left as it is), so the same
settings can be applied at every load.
"""

from __future__ import annotations

from rtune.errors import InputError
from rtune.models.settings import EncoderSettings

ST_POOLING = {"cls": "cls", "mean": "mean", "last_token": "lasttoken"}  # rtune name -> sentence-transformers mode


def pooling_module(model):
    """The model's Pooling module, or None."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return next((m for m in model if isinstance(m, Pooling)), None)


def is_causal_lm(model) -> bool:
    """Whether the first module wraps a decoder-only (causal LM) architecture."""
    config = getattr(model[0], "config", None)
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in archs)


def append_eos(tokenizer, where: str = "") -> None:
    """Make `tokenizer` end every encoded text with its EOS token (through its post-processor, so
    truncation keeps the EOS); keeps a BOS the tokenizer already adds. Raises InputError without an EOS."""
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise InputError("last_token pooling reads the last token, which must be the EOS token, but the tokenizer has "
                         "no EOS token configured; use a tokenizer with one, or --no-append-eos, or another --pooling",
                         where or None)
    probe = tokenizer("a")["input_ids"]
    if probe and probe[-1] == eos_id:
        return
    if not hasattr(type(tokenizer), "update_post_processor"):
        raise InputError(f"--append-eos: cannot make a {type(tokenizer).__name__} append EOS (needs a fast tokenizer)",
                         where or None)
    bos_id = tokenizer.bos_token_id
    tokenizer.add_bos_token = bool(probe) and bos_id is not None and probe[0] == bos_id
    tokenizer.add_eos_token = True
    if tokenizer("a")["input_ids"][-1] != eos_id:
        raise InputError("--append-eos: the tokenizer still does not end texts with its EOS token", where or None)


def plain_text_inputs(model) -> None:
    """Feed texts to `model` as the strings rtune formatted. sentence-transformers renders every text through
    the tokenizer's chat template when it has one (a chat LLM's: a default system prompt and turn markers
    around each text, ~25 tokens for SmolLM2, and truncation that cuts the text but keeps the template), so
    the message modality is dropped: the tokenizer sees the text itself, and appends EOS as configured."""
    module = model[0]
    config = getattr(module, "modality_config", None)
    if isinstance(config, dict) and "message" in config and "text" in config:
        module.modality_config = {k: v for k, v in config.items() if k != "message"}
        module.input_formatter.supported_modalities = list(module.modality_config)


def apply_decoder_settings(model, settings: EncoderSettings, default_pooling: str | None = None, where: str = ""):
    """Set pooling (`settings.pooling`, else `default_pooling`, else the model's own), append EOS and pad on
    the left when pooling is last_token (unless the settings say otherwise); give a tokenizer without a pad
    token its EOS as pad; texts go to the model without a chat template (see plain_text_inputs). Returns `model`."""
    plain_text_inputs(model)
    pooling = pooling_module(model)
    wanted = settings.pooling or default_pooling
    if wanted is not None:
        if pooling is None:
            raise InputError(f"--pooling {wanted}: the model has no pooling module", where or None)
        pooling.pooling_mode = ST_POOLING[wanted]
    last_token = pooling is not None and pooling.pooling_mode == "lasttoken"
    tokenizer = model[0].tokenizer
    if settings.append_eos if settings.append_eos is not None else last_token:
        append_eos(tokenizer, where)
    side = settings.padding_side or ("left" if last_token else None)
    if side is not None:
        tokenizer.padding_side = side
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model
