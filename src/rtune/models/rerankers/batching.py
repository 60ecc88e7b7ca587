"""Score many pairs with a reranker: sorted by length into batches, order restored, progress reported."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtune.models.rerankers.protocol import Reranker


def score_pairs(reranker: Reranker, pairs: list[tuple[str, str]], batch_size: int,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """(n,) float64 scores in the order of `pairs`. Longest pairs first, so each batch pads little and an
    out-of-memory error shows on the first batch; `on_batch(n)` is called after each batch of n pairs."""
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    scores = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch_scores = reranker.score([pairs[i] for i in chunk])
        if len(batch_scores) != len(chunk):
            raise RuntimeError(f"reranker {reranker.name} returned {len(batch_scores)} scores for {len(chunk)} pairs")
        scores[chunk] = np.asarray(batch_scores, dtype=np.float64)
        if on_batch is not None:
            on_batch(len(chunk))
    return scores
