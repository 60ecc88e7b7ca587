"""What the terminal shows after a training stage: the dev table (the start model, then each epoch, the kept
one marked) and one line on what was saved."""

from __future__ import annotations

from rtune.eval.report import metrics_table
from rtune.models.names import display_name


def dev_rows(history: list[dict], start_model: str, best: dict | None) -> dict[str, dict]:
    """The dev table's rows: the starting checkpoint as "start (<model>)", then each epoch; the kept one marked."""
    rows = {}
    for h in history:
        label = f"start ({start_model})" if h["epoch"] == 0 else f"epoch {h['epoch']:g}"
        rows[label + (" (kept)" if best is not None and h is best else "")] = h
    return rows


def dev_table(config, summary: dict, title: str, first_stage: dict | None = None):
    """The dev table of a training summary (None without a dev evaluation); `first_stage` adds the first stage's
    own row for a reranker."""
    if not summary.get("dev_history"):
        return None
    rows = {f"{config.first_stage} alone": first_stage} if first_stage is not None else {}
    rows.update(dev_rows(summary["dev_history"], display_name(config.model), summary.get("best")))
    return metrics_table(rows, title=title)


def reranker_dev_table(config, summary: dict):
    """A reranker's dev table: the first stage alone, the start model and each epoch reranking its top candidates."""
    return dev_table(config, summary, f"dev metrics ({config.dev_split}): top {config.rerank_top} of {config.first_stage}, "
                                      "reranked", first_stage=(summary.get("first_stage") or {}).get("dev"))
