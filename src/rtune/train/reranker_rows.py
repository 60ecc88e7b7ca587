"""Bi-encoder training rows (rtune.train.examples.build_rows: every positive, fresh negatives each epoch)
laid out for a cross-encoder loss: labelled pairs (bce) or labelled lists (lambda)."""

from __future__ import annotations

from rtune.train.examples import TrainingRows


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
