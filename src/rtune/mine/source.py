"""Candidate sources a miner ranks the corpus with: BM25 and dense (any Encoder, cached embeddings)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rtune.mine.bm25 import BM25Index, top_k_rows


@dataclass
class RankedBatch:
    """One batch of queries: rows `start..start+len` of the query list.

    positions, scores: (b, k), best first; position -1 marks an empty place. given_scores: for each query,
    the scores of the corpus positions it asked about (its positives, a previous round's negatives).
    """

    start: int
    positions: np.ndarray
    scores: np.ndarray
    given_scores: list[list[float]]


class CandidateSource(Protocol):
    """Ranks a fixed corpus for a stream of queries."""

    name: str

    def rank_all(self, queries: Sequence[str], given: Sequence[Sequence[int]], k: int,
                 batch_size: int) -> Iterator[RankedBatch]:
        """Top-k corpus positions and scores per query, plus the scores of the `given` positions."""


class BM25Source:
    """BM25 (bm25s) over the corpus texts; one full scoring per query serves the top-k and the positives."""

    name = "bm25"

    def __init__(self, texts: Sequence[str], language: str = "en") -> None:
        """`texts`: the corpus as retrieval sees it (rtune.data.text.document_text)."""
        self.index = BM25Index(language).index(list(texts), show_progress=len(texts) > 50_000)

    def rank_all(self, queries, given, k, batch_size):
        k = min(k, self.index.size)
        for start in range(0, len(queries), batch_size):
            full = self.index.batch_scores(queries[start : start + batch_size])
            positions, scores = top_k_rows(full, k)  # only documents sharing a term with the query
            yield RankedBatch(start, positions, scores,
                              [[float(s[p]) for p in pos] for s, pos in zip(full, given[start : start + batch_size])])


class DenseSource:
    """Embeddings from the cache (or encoded once), searched exactly or with an approximate FAISS index."""

    name = "dense"

    def __init__(self, encoder, texts: Sequence[str], cache=None, dtype: str = "float32",
                 index_type: str = "exact", seed: int = 0, batch_size: int = 64) -> None:
        from rtune.index.dense_search import make_searcher
        from rtune.index.embeddings import cached_embeddings

        self.encoder, self.cache, self.batch_size = encoder, cache, batch_size
        self.matrix = cached_embeddings(encoder, list(texts), "documents", cache, dtype, batch_size)
        self.search = make_searcher(self.matrix, index_type, seed)

    def rank_all(self, queries, given, k, batch_size):
        from rtune.index.embeddings import cached_embeddings

        embeddings = cached_embeddings(self.encoder, list(queries), "queries", self.cache, "float32", self.batch_size)
        for start in range(0, len(queries), batch_size):
            block = np.asarray(embeddings[start : start + batch_size], dtype=np.float32)  # (b, d)
            positions, scores = self.search(block, k)
            given_scores = [(np.asarray(self.matrix[list(pos)], dtype=np.float32) @ block[i]).tolist() if pos else []
                            for i, pos in enumerate(given[start : start + batch_size])]
            yield RankedBatch(start, positions, scores, given_scores)
