"""keep_if_better: a model stage worse on dev than the model it should improve on is refused."""

from __future__ import annotations


def decide(name: str, keep_if_better: bool, metric: str, value: float | None, previous: str,
           previous_value: float | None) -> dict:
    """The gate's decision for stage `name` against the latest kept model `previous` (both dev values of `metric`).
    Without the flag, or without both values (dry run), the stage is kept."""
    decision = {"stage": name, "keep_if_better": keep_if_better, "metric": metric, "value": value,
                "previous": previous, "previous_value": previous_value, "kept": True}
    if keep_if_better and value is not None and previous_value is not None and value < previous_value:
        decision.update(kept=False, reason=f"dev {metric} {value:.4f} < {previous_value:.4f} of {previous}: refused, "
                                           f"{previous} carried forward")
    elif keep_if_better and value is not None and previous_value is not None:
        decision["reason"] = f"dev {metric} {value:.4f} >= {previous_value:.4f} of {previous}: kept"
    return decision
