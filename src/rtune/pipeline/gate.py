"""keep_if_better: a model stage worse on dev than what it should improve on is refused.

`keep_if_better: true` (or `previous`) compares the stage with the latest kept model; `control` with its equal-budget
control (the same rows trained with in-batch negatives only: did the hard negatives or the teacher help at all?);
`both` asks for both. Ties keep the stage.
"""

from __future__ import annotations

from typing import Literal

GateMode = bool | Literal["previous", "control", "both"]
CONTROL_MODES = ("control", "both")


def references(mode: GateMode) -> tuple[str, ...]:
    """Which references a gate mode compares with: () for none."""
    if mode is True or mode == "previous":
        return ("previous",)
    if mode == "control":
        return ("control",)
    if mode == "both":
        return ("previous", "control")
    return ()


def decide(name: str, keep_if_better: GateMode, metric: str, value: float | None, previous: str,
           previous_value: float | None, control: str | None = None, control_value: float | None = None) -> dict:
    """The gate's decision for stage `name` (dev values of `metric`) against the latest kept model `previous` and/or
    its control, as `keep_if_better` asks. Without a mode, or without the values (dry run), the stage is kept."""
    decision = {"stage": name, "keep_if_better": keep_if_better, "metric": metric, "value": value,
                "previous": previous, "previous_value": previous_value, "control": control,
                "control_value": control_value, "kept": True}
    against = {"previous": (previous, previous_value), "control": (control, control_value)}
    compared = [(label, other) for ref in references(keep_if_better) for label, other in [against[ref]]]
    if not compared or value is None or any(other is None for _, other in compared):
        return decision
    worse = [(label, other) for label, other in compared if value < other]
    if worse:
        label, other = worse[0]
        decision.update(kept=False, refused_by=label, reason=f"dev {metric} {value:.4f} < {other:.4f} of {label}: refused, "
                                                              f"{previous} carried forward")
    else:
        decision["reason"] = f"dev {metric} {value:.4f} >= " + " and ".join(f"{other:.4f} of {label}" for label, other in compared) + ": kept"
    return decision
