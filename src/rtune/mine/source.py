"""Candidate sources a miner ranks the corpus with: the retrieval core's indexes (rtune.index), built over the
corpus texts as retrieval sees them (rtune.data.text.document_text)."""

from __future__ import annotations

from collections.abc import Sequence

from rtune.index.bm25 import BM25Index
from rtune.index.dense_index import DenseIndex
from rtune.index.ranking import CorpusIndex, RankedBatch

CandidateSource = CorpusIndex  # ranks a fixed corpus for a stream of queries, with the scores of given positions

__all__ = ["BM25Source", "CandidateSource", "DenseSource", "RankedBatch"]


def BM25Source(texts: Sequence[str], language: str = "en") -> BM25Index:  # noqa: N802 - reads as the source it builds
    """BM25 (bm25s) over the corpus texts; each query's top k kept as it is scored."""
    return BM25Index(language).index(list(texts), show_progress=len(texts) > 50_000)


def DenseSource(encoder, texts: Sequence[str], cache=None, dtype: str = "float32", index_type: str = "exact",  # noqa: N802
                seed: int = 0, batch_size: int = 64) -> DenseIndex:
    """Embeddings from the cache (or encoded once), searched exactly or with an approximate FAISS index."""
    return DenseIndex.build(encoder, texts, cache, dtype, index_type, seed, batch_size)
