"""The typed config of `rtune score`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict, Field, field_validator

from rtune.data.groups import groups_path
from rtune.errors import check_choice
from rtune.models.precision import Precision
from rtune.models.rerankers.llm import PROMPT_DEFAULTS, LLMPromptOptions
from rtune.models.rerankers.registry import AUTO, RERANKERS

UNSET_MEANS_SAVED = set(PROMPT_DEFAULTS)  # left unset, the teacher takes its saved value, else its default


class ScoreConfig(LLMPromptOptions):
    """Everything `rtune score` needs: input groups, output folder, the teacher and how it reads pairs."""
    model_config = ConfigDict(extra="forbid")
    NEUTRAL: ClassVar[frozenset[str]] = frozenset({"batch_size", "shard_size"})  # how the work is cut, not its result

    groups: Path = Field(description="training groups: a groups.jsonl or a `rtune mine` output folder")
    output: Path = Field(description="new groups folder (groups.jsonl + manifest.json) with teacher scores")
    model: str = Field(description="teacher model: folder or hub id (cross-encoder, causal LM or bi-encoder)")
    teacher: str = Field(AUTO, description="teacher kind (auto: causal LM -> llm, else cross_encoder)",
                         json_schema_extra={"choices": [AUTO, *RERANKERS]})
    batch_size: int = Field(32, ge=1, description="pairs scored at once (pairs are sorted by length first)")
    max_length: int | None = Field(None, ge=8, description="tokens of query + passage (the LLM prompt is added on top) "
                                   "[default: a cross-encoder's own saved length; 512 for an LLM]")
    precision: Precision = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU")
    device: str | None = Field(None, description="cpu, cuda, cuda:1... [default: cuda when visible]")
    max_queries: int | None = Field(None, ge=1, description="score a seeded sample of this many groups (the sample "
                                    "`rtune train --max-queries` draws with the same seed), for CPU budgets [default: all]")
    max_negatives: int | None = Field(None, ge=1, description="score each group's first N negatives (the miner's best "
                                      "ranked) and drop the rest [default: all]")
    seed: int = Field(42, description="seed of the --max-queries sample")
    shard_size: int = Field(1000, ge=1, description="groups per resumable shard (a killed run resumes at the last finished one)")
    gguf_file: str | None = Field(None, description="llm: GGUF file inside --model (a folder or hub id)")
    query_prompt: str | None = Field(None, description="bi_encoder: query prefix (default: the model's saved prompt)")
    document_prompt: str | None = Field(None, description="bi_encoder: document prefix (default: the model's saved prompt)")
    overwrite: bool = Field(False, description="replace an existing --output")

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, value: str) -> str:
        return check_choice("teacher", value, [AUTO, *RERANKERS])

    def teacher_settings(self) -> dict:
        """Keyword arguments for load_reranker (each teacher takes the ones it knows)."""
        settings = self.model_dump(include={"device", "precision", "max_length", "batch_size", "query_prefix", "passage_prefix",
                                            "separator", "prompt", "yes_word", "gguf_file", "query_prompt", "document_prompt"})
        # unset: each teacher's own default (a cross-encoder's saved length, an LLM reranker's saved prompt)
        return {k: v for k, v in settings.items() if v is not None or k not in UNSET_MEANS_SAVED}

    def groups_file(self) -> Path:
        return groups_path(self.groups)
