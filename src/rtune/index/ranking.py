"""The one retrieval protocol: a corpus index ranks a stream of queries in batches.

BM25 (rtune.index.bm25) and dense search (rtune.index.dense_index) implement it; eval's rankers, mining's
candidate sources and the Retriever are thin users of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class RankedBatch:
    """One batch of queries: rows `start..start+len` of the query list.

    positions, scores: (b, k), best first; position -1 (score 0) marks an empty place. given_scores: for each
    query, the scores of the corpus positions it asked about (e.g. its positives, a previous round's negatives).
    """

    start: int
    positions: np.ndarray
    scores: np.ndarray
    given_scores: list[list[float]]


class CorpusIndex(Protocol):
    """A fixed corpus, indexed once; `size` documents addressed by position 0..size-1."""

    name: str
    size: int

    def rank_all(self, queries: Sequence[str], k: int, batch_size: int = 1024,
                 given: Sequence[Sequence[int]] | None = None) -> Iterator[RankedBatch]:
        """Top-k positions and scores per query, batch by batch, plus the scores of each query's `given`
        positions; memory is bounded by the index and one batch, not by the number of queries."""


def no_given(n: int) -> list[list[int]]:
    """`given` for queries that ask about no position."""
    return [[] for _ in range(n)]


def collect(batches: Iterable[RankedBatch], k: int) -> tuple[np.ndarray, np.ndarray]:
    """All batches' (positions, scores) stacked: shapes (n_queries, k) (k may be smaller than asked when the
    corpus is smaller)."""
    positions, scores = [], []
    for batch in batches:
        positions.append(batch.positions)
        scores.append(batch.scores)
    if not positions:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate(positions), np.concatenate(scores)


def with_progress(batches: Iterable[RankedBatch], total: int, label: str, show: bool = True) -> Iterator[RankedBatch]:
    """`batches` unchanged, counted on a labelled progress bar (queries) that appears with the first batch, so
    it does not sit at 0 while the index encodes the queries."""
    from tqdm.auto import tqdm

    bar = None
    try:
        for batch in batches:
            bar = bar or tqdm(total=total, desc=label, unit="q", disable=not show)
            bar.update(len(batch.positions))
            yield batch
    finally:
        if bar is not None:
            bar.close()
