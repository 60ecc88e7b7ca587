"""Equal-budget controls: beside each training stage that uses mined negatives or teacher scores, the same rows
(the same queries and positives, epochs, batch size, learning rate, seed and start model) trained with in-batch
negatives only (MNRL), the plain fine-tune the recipe exists to beat. `eval: {controls: true}` turns them on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rtune.train.config import TrainConfig
from rtune.train.losses import DISTILL_OPTIONS, GROUP_LOSSES

CONTROL_FOLDER = "control"
_DEFAULT_GROUP_SIZE = TrainConfig.model_fields["group_size"].default


def uses_negatives(kind: str, settings: Mapping[str, Any]) -> bool:
    """Whether a stage of `kind` with these settings trains on mined negatives or teacher scores (so has a control)."""
    if kind != "train":
        return False
    return settings.get("group_size", _DEFAULT_GROUP_SIZE) > 1 or settings.get("loss", "mnrl") in GROUP_LOSSES


def control_config(config: TrainConfig, folder: Path) -> TrainConfig:
    """The control of a training stage's config: its rows with MNRL and no hard negative, written under `folder`."""
    values = config.model_dump(exclude_unset=True, exclude={*DISTILL_OPTIONS, "loss", "group_size", "rows_like_group_size", "output",
                                        "checkpoint_dir", "resume_from_checkpoint"})
    return TrainConfig(**values, loss="mnrl", group_size=1, rows_like_group_size=max(2, config.group_size),
                       output=folder / "output", checkpoint_dir=folder / "checkpoints")


CONTROL_REF = "::control"  # a stage's control as a model reference (stage names cannot hold ':')


def control_ref(stage: str) -> str:
    return stage + CONTROL_REF


def label_of(ref: str) -> str:
    """A model reference as the report names it: a stage's control is `<stage> control`."""
    return f"{ref.removesuffix(CONTROL_REF)} control" if ref.endswith(CONTROL_REF) else ref


def folder_of(run_dir: Path, ref: str) -> Path:
    """The folder of a model reference's step (a stage's, or its control's)."""
    return run_dir / ref.removesuffix(CONTROL_REF) / CONTROL_FOLDER if ref.endswith(CONTROL_REF) else run_dir / ref
