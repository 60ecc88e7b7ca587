"""The typed config of `rtune train-reranker`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from rtune.errors import check_choice
from rtune.models.names import DEFAULT_MODEL
from rtune.train.checkpointing import CheckpointOptions
from rtune.train.config import Precision
from rtune.train.reranker_losses import IN_BATCH, RERANKER_LOSSES
from rtune.train.stage_checks import TrainingStageChecks


class RerankerTrainConfig(CheckpointOptions, TrainingStageChecks):
    """Everything `rtune train-reranker` needs: groups, the base (a cross-encoder, or an encoder that gets a
    new one-logit head), the loss, and the dev evaluation that reranks a first stage's top candidates."""
    model_config = ConfigDict(extra="forbid")
    NEUTRAL: ClassVar[frozenset[str]] = frozenset({"processes"})

    groups: Path = Field(description="training groups: a groups.jsonl or a `rtune mine` output folder")
    output: Path = Field(description="folder for the trained reranker (a sentence-transformers CrossEncoder folder)")
    model: str = Field(DEFAULT_MODEL, description="base: a cross-encoder folder or hub id, or an encoder (a new one-logit head)")
    loss: str = Field("mnrl", description="mnrl (softmax cross-entropy of the positive against its negatives and "
                      "--in-batch-negatives other rows' passages), bce (binary cross-entropy on query-passage pairs) or "
                      "lambda (LambdaLoss over each group: positive + negatives)")
    in_batch_negatives: int = Field(1, ge=1, description="mnrl: other rows' passages added to each row's negatives")
    group_size: int = Field(4, ge=2, description="texts per group: 1 positive + (group_size - 1) negatives drawn afresh each epoch")
    positives: Literal["all", "sample"] = Field(
        "all", description="all: every (query, positive) pair makes a group each epoch; sample: one positive per query per epoch")
    epochs: int = Field(1, ge=1, description="passes over the groups; negatives are drawn afresh each epoch")
    batch_size: int = Field(16, ge=1, description="bce: pairs per batch; mnrl, lambda: groups per batch")
    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps with a linear warm-up")
    max_length: int = Field(256, ge=8, description="tokens of query + passage")
    max_queries: int | None = Field(None, ge=1, description="cap on training queries (a seeded sample), for CPU budgets")
    use_title: bool | None = Field(None, description="document text = title + text when a title exists [default: the groups' miner's rule, else on]")
    dataset: Path | None = Field(None, description="prepared dataset for the dev evaluation each epoch")
    dev_split: str = Field("dev", description="split of --dataset used to pick the best epoch")
    first_stage: str = Field("bm25", description="dev evaluation: the ranker whose top candidates are reranked (bm25, or a bi-encoder folder / hub id)")
    rerank_top: int = Field(50, ge=1, description="dev evaluation: first-stage candidates reranked per query")
    language: str | None = Field(None, description="BM25 first stage: stemmer/stopwords language (ISO code) [default: the "
                                 "dataset's, recorded by `rtune prepare --language`, else en]")
    metric_for_best: str = Field("ndcg@10", description="dev metric (of the reranked run) that picks the best epoch")
    eval_batch_size: int = Field(64, ge=1, description="pairs scored / texts encoded at once in the dev evaluation")
    precision: Precision = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU")
    processes: int = Field(1, ge=1, description="train on this many processes (GPUs; on CPU, gloo processes) under torchrun, "
                           "every batch split across them (mnrl's in-batch negatives then come from each process's share)")
    device: str | None = Field(None, description="torch device, e.g. cpu or cuda [default: the best available]")
    seed: int = Field(42, description="seed for sampling, negatives, the new head and training")
    allow_collapsed: bool = Field(False, description="train even when most queries have no negative")
    overwrite: bool = Field(False, description="replace an existing --output")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        return check_choice("loss", value, RERANKER_LOSSES)

    @field_validator("in_batch_negatives")
    @classmethod
    def _read_by_mnrl(cls, value: int, info) -> int:
        """Runs only when given: an option the loss does not read is an error naming it."""
        loss = info.data.get("loss")
        if loss is not None and loss not in IN_BATCH:
            raise ValueError(f"read only by --loss {' or '.join(sorted(IN_BATCH))}, not by --loss {loss}")
        return value
