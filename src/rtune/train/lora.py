"""LoRA fine-tuning of a bi-encoder through peft: options, wrapping the model, adapter checkpoints.

With `--lora-rank`, only the adapter trains; checkpoints and the output hold the adapter (peft's
`adapter_config.json` + `adapter_model.safetensors`) and `rtune_adapter.json` naming the base model, and
every stage loads the folder as base + adapter (rtune.models.loading). `rtune merge` folds it into a full model.
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from rtune.errors import InputError
from rtune.models.adapter import merge_adapter_into_model, require_peft, write_base_reference
from rtune.models.names import resolve_model

log = logging.getLogger(__name__)


class LoraOptions(BaseModel):
    """LoRA and memory options of a training stage (none set: full fine-tuning)."""
    lora_rank: int | None = Field(None, ge=1, description="train a LoRA adapter of this rank instead of all weights")
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scaling alpha [default: 2 x rank]")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    lora_target_modules: list[str] | None = Field(
        None, description="modules that get adapters, e.g. q_proj,v_proj [default: peft's choice for the architecture]")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory, slower)")

    @model_validator(mode="after")
    def _lora_options_need_rank(self):
        given = [n for n in ("lora_alpha", "lora_dropout", "lora_target_modules") if n in self.model_fields_set]
        if given and self.lora_rank is None:
            raise InputError(f"--{given[0].replace('_', '-')} is read only with --lora-rank")
        return self

    def lora_config(self, task_type: str | None = None):
        """The peft LoraConfig these options describe."""
        peft = require_peft()
        return peft.LoraConfig(r=self.lora_rank, lora_alpha=self.lora_alpha or 2 * self.lora_rank,
                               lora_dropout=self.lora_dropout, target_modules=self.lora_target_modules, bias="none",
                               task_type=task_type)


def peft_model_of(model):
    """The PeftModel inside a SentenceTransformer's first module, or None."""
    try:
        from peft import PeftModel
    except ImportError:
        return None
    inner = getattr(model[0], "model", None)
    return inner if isinstance(inner, PeftModel) else None


def enable_gradient_checkpointing(transformer) -> None:
    """Non-reentrant checkpointing: works with a frozen base (LoRA) without forcing input gradients."""
    if hasattr(transformer, "activation_checkpointing_enable"):  # transformers >= 5.2 name
        transformer.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(transformer, "config"):
        transformer.config.use_cache = False


def apply_lora(model, options: LoraOptions, model_name: str = "", seed: int | None = None):
    """`model` (a SentenceTransformer) ready to train: gradient checkpointing when asked; with `lora_rank`, its
    transformer wrapped in a fresh LoRA adapter, initialised from `seed` (peft draws it from the global RNG, which
    the trainer seeds only later). A start model that is itself base + adapter is merged first for full
    fine-tuning, and refused for LoRA (its saved adapter could not name a base that holds the first one)."""
    if peft_model_of(model) is not None:
        if options.lora_rank is not None:
            raise InputError("--model is a LoRA adapter folder: merge it first (rtune merge), then train a new adapter "
                             "on the merged model", model_name or None)

        merge_adapter_into_model(model)
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(model[0].model)
    if options.lora_rank is None:
        return model
    peft = require_peft()
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)  # the adapter's initial weights
    try:
        model[0].model = peft.get_peft_model(model[0].model, options.lora_config())
    except ValueError as err:  # e.g. target modules not found in the model
        raise InputError(f"--lora-target-modules: {err}", model_name or None) from None
    trainable, total = model[0].model.get_nb_trainable_parameters()
    log.info("LoRA rank %d: %d of %d parameters train (%.2f%%)", options.lora_rank, trainable, total, 100 * trainable / total)
    return model


def load_adapter_checkpoint(trainer, checkpoint_path: str) -> None:
    """The trainer's best-epoch reload for an adapter checkpoint: only the adapter weights are read back."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(peft_model_of(trainer.model), load_file(str(Path(checkpoint_path) / "adapter_model.safetensors")))


def use_adapter_checkpoints(trainer) -> None:
    """Make `trainer` reload the best epoch's adapter (sentence-transformers would reload the whole model
    through transformers, whose adapter loading needs a newer peft)."""
    if peft_model_of(trainer.model) is not None:
        trainer._load_from_checkpoint = types.MethodType(load_adapter_checkpoint, trainer)


def save_base_reference(folder: str | Path, model, base: str) -> None:
    """After `model.save(folder)`: for a LoRA model, record which base the saved adapter belongs to."""
    if peft_model_of(model) is not None:

        write_base_reference(folder, resolve_model(base))
