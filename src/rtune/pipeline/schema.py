"""The pipeline YAML: dataset, base model, seed, evaluation settings and an ordered list of stages.

A stage entry is `{name, stage, keep_if_better, <the stage config's own fields>}`; a `rounds` entry
declares repeated hard-negative rounds once (see plan.expand_rounds). Stage settings are checked against
their config class in plan.build_plan, so this file only holds the pipeline-level shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rtune.eval.fusion import DEFAULT_WEIGHTS
from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, metric_names, parse_metric
from rtune.models.loading import DEFAULT_MODEL

RESERVED_NAMES = ("base", "bm25", "previous", "dataset", "baselines", "final")


class EvalSettings(BaseModel):
    """How every model is measured: the same metrics on dev (each stage, the gate, fusion) and test (the end)."""

    model_config = ConfigDict(extra="forbid")

    dev_split: str = "dev"
    test_split: str = "test"
    metric: str = Field("ndcg@10", description="the dev metric that gates keep_if_better and picks the fusion")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    ks: list[int] = Field(default_factory=lambda: list(DEFAULT_KS))
    hybrid: bool = Field(True, description="BM25 + dense fusion baselines for the base and the final model")
    fusion_weights: list[float] = Field(default_factory=lambda: list(DEFAULT_WEIGHTS), description="dense weights tried on dev")
    language: str = Field("en", description="BM25 language (stemmer, stopwords)")
    encode_batch_size: int = Field(64, ge=1)
    rerank_top: int = Field(50, ge=1, description="candidates reranked per query when a reranker stage exists")
    rerank_fusion: bool = Field(True, description="also report the final model + reranker with the reranked scores fused with "
                                "the first stage's (method and reranker weight from fusion_weights, chosen on dev)")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        parse_metric(value)
        return value

    @field_validator("fusion_weights")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= w <= 1 for w in value):
            raise ValueError("fusion weights must be a non-empty list of numbers within 0..1")
        return value

    def eval_ks(self) -> list[int]:
        """The cut-offs every evaluation computes: `ks` plus the gate metric's own."""
        return sorted(set(self.ks) | {int(self.metric.split("@")[1])})

    def names(self) -> list[str]:
        return metric_names(self.eval_metrics(), self.eval_ks())

    def eval_metrics(self) -> list[str]:
        """`metrics` plus the gate metric's family."""
        return list(dict.fromkeys([*self.metrics, self.metric.split("@")[0]]))


class RoundsBlock(BaseModel):
    """`count` hard-negative rounds, each a dense `mine` then a `train`, named mine_<name>_<i> / train_<name>_<i>."""

    model_config = ConfigDict(extra="forbid")

    name: str = "dense"
    count: int = Field(ge=1)
    mine: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    keep_if_better: bool = False


class PipelineConfig(BaseModel):
    """The whole pipeline file. Relative paths are relative to the directory `rtune run` starts in."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="raw input for a first `prepare` stage, or a prepared BEIR folder")
    base_model: str = Field(DEFAULT_MODEL, description="the model training starts from and the 'base' baseline")
    seed: int = 42
    output: Path | None = Field(None, description="run folder [default: runs/<pipeline file name>]")
    eval: EvalSettings = Field(default_factory=EvalSettings)
    stages: list[dict[str, Any]] = Field(min_length=1)
