"""Checks shared by the configs of the training stages (`train`, `train-reranker`); each config declares
the fields they read: groups, metric_for_best, precision, device."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, field_validator, model_validator

from rtune.data.groups import groups_path
from rtune.eval.metrics import parse_metric
from rtune.models.precision import precision_flags


class TrainingStageChecks(BaseModel):
    """A known dev metric, a precision the device has (before any work), and the groups file."""
    @field_validator("metric_for_best", check_fields=False)
    @classmethod
    def _known_metric(cls, value: str) -> str:
        parse_metric(value)
        return value

    @model_validator(mode="after")
    def _precision_fits_device(self):
        precision_flags(self.precision, self.device)  # fp16 without CUDA fails here, before any work
        return self

    def groups_file(self) -> Path:
        """The groups.jsonl given, or the one inside the `rtune mine` / `rtune score` folder given."""
        return groups_path(self.groups)
