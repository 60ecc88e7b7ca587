"""The typed config of `rtune train`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rtune.eval.metrics import parse_metric
from rtune.models.loading import DEFAULT_MODEL

Precision = Literal["auto", "fp32", "fp16", "bf16"]


class TrainConfig(BaseModel):
    """Everything `rtune train` needs."""

    model_config = ConfigDict(extra="forbid")

    groups: Path = Field(description="training groups: a groups.jsonl or a `rtune mine` output folder")
    output: Path
    model: str = Field(DEFAULT_MODEL, description="base model: folder or hub id")
    dataset: Path | None = Field(None, description="prepared dataset for the dev evaluation each epoch")
    dev_split: str = "dev"
    loss: str = Field("mnrl", description="mnrl (in-batch + hard negatives) or cached_mnrl (GradCache)")
    group_size: int = Field(2, ge=1, description="texts per query: 1 positive + (group_size - 1) hard negatives")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2)
    mini_batch_size: int = Field(32, ge=1, description="cached_mnrl: texts encoded at once")
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_query_length: int = Field(64, ge=4)
    max_passage_length: int = Field(256, ge=8)
    scale: float = Field(20.0, gt=0, description="inverse temperature of the contrastive softmax")
    max_queries: int | None = Field(None, ge=1, description="cap on training queries (a seeded sample), for CPU budgets")
    metric_for_best: str = Field("ndcg@10", description="dev metric that picks the best epoch")
    precision: Precision = "auto"
    seed: int = 42
    device: str | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    overwrite: bool = False

    @field_validator("metric_for_best")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        parse_metric(value)
        return value

    def groups_file(self) -> Path:
        from rtune.data.groups import groups_path

        return groups_path(self.groups)
