"""Candidate sources a miner ranks the corpus with. BM25 here; dense search plugs in the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rtune.data.records import Document
from rtune.mine.bm25 import BM25Index


class CandidateSource(Protocol):
    """Ranks a fixed corpus for queries."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k corpus positions and scores per query, best first: shapes (n, k)."""

    def score(self, queries: Sequence[str], positions: Sequence[Sequence[int]]) -> list[list[float]]:
        """Scores of the given corpus positions for each query."""


class BM25Source:
    """BM25 (bm25s) over the corpus texts."""

    name = "bm25"

    def __init__(self, documents: Sequence[Document], language: str = "en") -> None:
        self.index = BM25Index(language).index([d.text for d in documents], show_progress=len(documents) > 50_000)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)

    def score(self, queries: Sequence[str], positions: Sequence[Sequence[int]]) -> list[list[float]]:
        return [[float(full[p]) for p in pos] for full, pos in zip(self.index.batch_scores(queries), positions)]
