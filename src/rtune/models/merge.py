"""`rtune merge`: fold a LoRA adapter into its base and save a full model that needs no peft to load.

A bi-encoder adapter folder (sentence-transformers modules) becomes a sentence-transformers folder with the
merged weights (safetensors), its tokenizer (added special tokens included) and `rtune_encoder.json`; an LLM
reranker adapter (`rtune train-llm-reranker`) becomes a causal-LM folder with its tokenizer and
`rtune_reranker.json`. Either loads and scores like base + adapter, within float tolerance.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.manifest import write_manifest
from rtune.errors import InputError
from rtune.models.adapter import adapter_base, is_adapter_folder, merge_adapter_into_model
from rtune.models.causal_lm import load_causal_lm
from rtune.models.loading import load_bi_encoder
from rtune.models.rerankers.llm import RERANKER_SETTINGS
from rtune.models.settings import EncoderSettings
from rtune.stage import MODEL, RERANKER, StageSpec


class MergeConfig(BaseModel):
    """Everything `rtune merge` needs."""
    model_config = ConfigDict(extra="forbid")

    adapter: Path = Field(description="adapter folder written by `rtune train --lora-rank` or `rtune train-llm-reranker`")
    output: Path = Field(description="folder for the merged full model")
    overwrite: bool = Field(False, description="replace an existing --output")


def load_causal_lm_with_adapter(folder: str | Path, device: str = "cpu"):
    """(tokenizer, PeftModel) of an LLM-reranker adapter folder on its base (a folder, hub id or GGUF file), fp32."""
    import torch


    return load_causal_lm(str(folder), torch.float32, device)


def merge(config: MergeConfig) -> dict:
    """Merge `config.adapter` into its base and save the full model at `config.output`; returns a summary."""
    started = time.time()
    adapter = config.adapter
    if not adapter.is_dir() or not is_adapter_folder(adapter):
        raise InputError("not a LoRA adapter folder (it has no adapter_config.json)", adapter)
    base = adapter_base(adapter)  # a missing base fails here, before any loading
    ensure_new_output(config.output, config.overwrite)
    kind = "bi_encoder" if (adapter / "modules.json").is_file() else "llm_reranker"
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
        if kind == "bi_encoder":
            _merge_bi_encoder(adapter, tmp)
        else:
            tokenizer, model = load_causal_lm_with_adapter(adapter)
            model.merge_and_unload().save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            if (adapter / RERANKER_SETTINGS).is_file():
                shutil.copy2(adapter / RERANKER_SETTINGS, tmp / RERANKER_SETTINGS)
        summary = {"kind": kind, "base_model": base, "seconds": round(time.time() - started, 2)}
        write_manifest(tmp, "merge", config.model_dump(mode="json"), [adapter], started, summary, name="rtune_manifest.json")
    return summary


def _merge_bi_encoder(adapter: Path, out: Path) -> None:
    settings = EncoderSettings.load(adapter)
    model = load_bi_encoder(str(adapter), "cpu", settings)
    merge_adapter_into_model(model)
    model.save(str(out))
    if settings is not None:
        settings.save(out)


def summary(config: MergeConfig, result: dict) -> list[str]:
    """The terminal's line after `rtune merge`."""
    return [f"merged {result['kind']} (base {result['base_model']}) saved to {config.output}"]


def merged_kind(ref_kinds, settings) -> str:
    """A merged bi-encoder adapter is a model; a merged LLM-reranker adapter (no sentence-transformers modules) a
    reranker: the kind of the stage the adapter comes from, or what the adapter folder holds."""
    if "adapter" in ref_kinds:
        return ref_kinds["adapter"]
    folder = Path(str(settings.get("adapter", "")))
    return RERANKER if folder.is_dir() and not (folder / "modules.json").is_file() else MODEL


MERGE = StageSpec(
    name="merge", config=MergeConfig, run=merge, produces=merged_kind,
    help="Merge a LoRA adapter folder into its base: a full model that loads without peft.",
    refs={"adapter": (MODEL, RERANKER)}, positional=("adapter",), summary=summary,
)
