"""Exact inner-product search with FAISS."""

from __future__ import annotations

import numpy as np


class ExactIndex:
    """`IndexFlatIP`: exact maximum inner product. Embeddings: (n, dim) float32."""

    def __init__(self, dim: int) -> None:
        import faiss

        self.index = faiss.IndexFlatIP(dim)

    @classmethod
    def build(cls, embeddings: np.ndarray) -> ExactIndex:
        index = cls(embeddings.shape[1])
        index.add(embeddings)
        return index

    def add(self, embeddings: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(embeddings, dtype=np.float32))

    @property
    def size(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, scores) per query, best first: shapes (n_queries, min(k, size))."""
        k = min(k, self.size)
        scores, positions = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return positions, scores
