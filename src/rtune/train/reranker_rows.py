"""Bi-encoder training rows (rtune.train.examples.build_rows: every positive, fresh negatives each epoch)
laid out for a cross-encoder loss: labelled pairs (bce), labelled lists (lambda) or tuples (mnrl)."""

from __future__ import annotations

from rtune.train.examples import TrainingRows
from rtune.train.reranker_losses import Layout


def negative_columns(rows: TrainingRows) -> list[str]:
    return [c for c in rows.columns if c.startswith("negative_")]


def pair_columns(rows: TrainingRows) -> dict[str, list]:
    """{query, passage, label}: per row its positive (1.0) then each negative (0.0); row order is kept, so
    each epoch's block of rows becomes a block of rows x group size pairs."""
    negatives = negative_columns(rows)
    out: dict[str, list] = {"query": [], "passage": [], "label": []}
    for i, query in enumerate(rows.columns["anchor"]):
        for passage, label in [(rows.columns["positive"][i], 1.0), *((rows.columns[c][i], 0.0) for c in negatives)]:
            out["query"].append(query)
            out["passage"].append(passage)
            out["label"].append(label)
    return out


def list_columns(rows: TrainingRows) -> dict[str, list]:
    """{query, docs, label}: per row the list [positive, negative_1, ...] with labels [1, 0, ...]."""
    negatives = negative_columns(rows)
    docs = [[rows.columns["positive"][i], *(rows.columns[c][i] for c in negatives)] for i in range(len(rows.columns["anchor"]))]
    return {"query": list(rows.columns["anchor"]), "docs": docs, "label": [[1.0] + [0.0] * len(negatives) for _ in docs]}


def tuple_columns(rows: TrainingRows) -> dict[str, list]:
    """{query, positive, negative_1, ...}: the rows as they are, one row per (query, positive); teacher labels are not read."""
    return {"query": list(rows.columns["anchor"]), "positive": list(rows.columns["positive"]),
            **{c: list(rows.columns[c]) for c in negative_columns(rows)}}


def reranker_columns(rows: TrainingRows, layout: Layout) -> tuple[dict[str, list], int]:
    """(columns, examples per epoch) for `layout`; pairs multiply each row by its group size."""
    if layout == "pairs":
        return pair_columns(rows), rows.rows_per_epoch * (1 + len(negative_columns(rows)))
    return (list_columns(rows) if layout == "lists" else tuple_columns(rows)), rows.rows_per_epoch
