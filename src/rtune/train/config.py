"""The typed config of `rtune train`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from rtune.errors import check_choice
from rtune.models.encoder_options import EncoderOptions
from rtune.models.names import DEFAULT_MODEL
from rtune.train.checkpointing import CheckpointOptions
from rtune.train.lora import LoraOptions
from rtune.train.losses import DISTILL_OPTIONS, GROUP_LOSSES, LOSSES
from rtune.train.stage_checks import TrainingStageChecks

Precision = Literal["auto", "fp32", "fp16", "bf16"]
TeacherScale = Literal["logits", "probabilities"]  # rtune.train.distill_losses.TEACHER_SCALES
DEFAULT_QUERY_LENGTH = 64
DEFAULT_PASSAGE_LENGTH = 256


class TrainConfig(EncoderOptions, LoraOptions, CheckpointOptions, TrainingStageChecks):
    """Everything `rtune train` needs. The encoder settings (prompts, instruction and format, lengths,
    document text rule) are saved with the model and applied identically by mine, eval and the Retriever."""

    NEUTRAL: ClassVar[frozenset[str]] = frozenset({"processes"})  # the same training, on more devices
    groups: Path = Field(description="training groups: a groups.jsonl or a `rtune mine` output folder")
    output: Path = Field(description="folder for the trained model (a sentence-transformers folder)")
    model: str = Field(DEFAULT_MODEL, description="model to start from: folder or hub id")
    dataset: Path | None = Field(None, description="prepared dataset for the dev evaluation each epoch")
    dev_split: str = Field("dev", description="split of --dataset used to pick the best epoch")
    loss: str = Field("mnrl", description="mnrl (in-batch + hard negatives), cached_mnrl (GradCache), or distillation of "
                      "`rtune score` teacher scores: kl (listwise KL over each group), margin_mse, mean_margin (hinge, "
                      "no teacher scores)")
    group_size: int = Field(2, ge=1, description="texts per row: 1 positive + (group_size - 1) hard negatives")
    positives: Literal["all", "sample"] = Field(
        "all", description="all: every (query, positive) pair is a row each epoch; sample: one positive per query "
        "per epoch, cycling through them")
    epochs: int = Field(1, ge=1, description="passes over the rows; negatives are drawn afresh each epoch")
    batch_size: int = Field(32, ge=2, description="rows per batch (in-batch negatives come from the other rows)")
    mini_batch_size: int = Field(32, ge=1, description="cached_mnrl: texts encoded at once")
    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps with a linear warm-up")
    scale: float = Field(20.0, gt=0, description="inverse temperature of the student's similarity (mnrl, cached_mnrl, kl, margin_mse)")
    teacher_temperature: float = Field(1.0, gt=0, description="kl: the teacher's logits are divided by it before its softmax")
    contrastive_weight: float = Field(0.0, ge=0, description="kl: weight of an added in-batch contrastive (mnrl) term")
    margin: float = Field(0.2, description="mean_margin: hinge margin on sim(q, pos) - mean sim(q, neg) (cosine units)")
    teacher_scores: TeacherScale = Field(
        "logits", description="kl, margin_mse: scale of the groups' teacher scores; probabilities (0-1) are turned into "
        "logits log(p / (1 - p)) first")
    max_queries: int | None = Field(None, ge=1, description="cap on training queries (a seeded sample), for CPU budgets")
    rows_like_group_size: int | None = Field(
        None, ge=2, description="train exactly the (query, positive) rows a --group-size N run trains (those with an "
        "allowed negative), whatever --group-size is: an equal-budget control with in-batch negatives only")
    metric_for_best: str = Field("ndcg@10", description="dev metric that picks the best epoch")
    precision: Precision = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU")
    processes: int = Field(1, ge=1, description="train on this many processes (GPUs; on CPU, gloo processes) under torchrun: "
                           "every batch split across them, in-batch negatives gathered from all (the same training as one "
                           "process at this batch size)")
    seed: int = Field(42, description="seed for sampling, negatives and training")
    allow_collapsed: bool = Field(False, description="train even when most queries have no negative")
    icl_sample: int | None = Field(None, ge=1, description="draw this many in-context examples (query, first positive) "
                                   "from the training groups with --seed; saved with the model, replacing --icl-examples")
    overwrite: bool = Field(False, description="replace an existing --output")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        return check_choice("loss", value, LOSSES)

    @field_validator("group_size", "teacher_temperature", "contrastive_weight", "margin", "teacher_scores")
    @classmethod
    def _fits_the_loss(cls, value, info):
        """Runs only for options given (and after `loss`): one the loss does not read, or a group without
        negatives for a loss over each group, is an error naming the option."""
        loss = info.data.get("loss")
        readers = DISTILL_OPTIONS.get(info.field_name)
        if loss is not None and readers is not None and loss not in readers:
            raise ValueError(f"read only by --loss {' or '.join(readers)}, not by --loss {loss}")
        if info.field_name == "group_size" and loss in GROUP_LOSSES and value < 2:
            raise ValueError(f"--loss {loss} compares each positive with its negatives: it needs --group-size 2 or more")
        return value
