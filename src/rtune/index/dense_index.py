"""Dense retrieval over a corpus: embeddings from the cache (or encoded once), exact or approximate FAISS search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from rtune.index.dense_search import ApproximateIndex, ExactIndex, make_searcher
from rtune.index.embedding_cache import EmbeddingCache
from rtune.index.embeddings import cached_embeddings
from rtune.index.ranking import RankedBatch, no_given
from rtune.models.encoder import Encoder


class DenseIndex:
    """A rtune.index.ranking.CorpusIndex over an Encoder's document embeddings.

    `matrix`: (size, dim), possibly memory-mapped float16 (None for an approximate index loaded without it);
    `searcher`: exact block-wise search or a FAISS IVF / HNSW index. Queries are encoded through the same
    cache, with the encoder's query settings.
    """

    name = "dense"

    def __init__(self, encoder: Encoder, matrix: np.ndarray | None, searcher: ExactIndex | ApproximateIndex,
                 cache: EmbeddingCache | None = None, batch_size: int = 64, show_progress: bool = True,
                 name: str = "dense") -> None:
        self.encoder, self.matrix, self.searcher, self.cache = encoder, matrix, searcher, cache
        self.batch_size, self.show_progress, self.name = batch_size, show_progress, name
        self.size = len(matrix) if matrix is not None else int(searcher.index.ntotal)

    @classmethod
    def build(cls, encoder: Encoder, texts: Sequence[str], cache: EmbeddingCache | None = None, dtype: str = "float32",
              index_type: str = "exact", seed: int = 0, batch_size: int = 64, show_progress: bool = True,
              name: str = "dense") -> DenseIndex:
        """Embed `texts` (the corpus as retrieval sees it: rtune.data.text.document_text) and index them."""
        matrix = cached_embeddings(encoder, list(texts), "documents", cache, dtype, batch_size, show_progress)
        return cls(encoder, matrix, make_searcher(matrix, index_type, seed), cache, batch_size, show_progress, name)

    @property
    def index_type(self) -> str:
        return self.searcher.index_type

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 query embeddings (through the cache when it can identify the encoder)."""
        return cached_embeddings(self.encoder, list(queries), "queries", self.cache, "float32", self.batch_size,
                                 self.show_progress)

    def search_embeddings(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, scores) per query embedding, best first; -1 marks an empty place."""
        return self.searcher(np.asarray(embeddings, dtype=np.float32), k)

    def given_scores(self, embedding: np.ndarray, positions: Sequence[int]) -> list[float]:
        """Inner products of one query embedding (dim,) with the documents at `positions`."""
        if not positions:
            return []
        if self.matrix is None:
            raise RuntimeError("this index was loaded without its embedding matrix: it cannot score given documents")
        return (np.asarray(self.matrix[list(positions)], dtype=np.float32) @ embedding).tolist()

    def rank_all(self, queries: Sequence[str], k: int, batch_size: int = 1024,
                 given: Sequence[Sequence[int]] | None = None) -> Iterator[RankedBatch]:
        given = given if given is not None else no_given(len(queries))
        embeddings = self.encode_queries(queries)
        for start in range(0, len(queries), batch_size):
            block = np.asarray(embeddings[start : start + batch_size], dtype=np.float32)  # (b, d)
            positions, scores = self.search_embeddings(block, k)
            yield RankedBatch(start, positions, scores,
                              [self.given_scores(block[i], pos) for i, pos in enumerate(given[start : start + batch_size])])
