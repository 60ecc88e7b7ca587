"""Corpus and query embeddings through the cache when the encoder's weights are identifiable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtune.index.embedding_cache import EmbeddingCache


def cached_embeddings(encoder, texts: Sequence[str], kind: str, cache: EmbeddingCache | None, dtype: str = "float32",
                      batch_size: int = 64, show_progress: bool = True) -> np.ndarray:
    """(n, dim) embeddings of `texts` as documents or queries; from/into `cache` when possible."""
    method = encoder.encode_documents if kind == "documents" else encoder.encode_queries

    def encode(chunk: Sequence[str]) -> np.ndarray:
        return method(chunk, batch_size, show_progress)

    identity = encoder.cache_identity(kind, cache.folder) if cache is not None and hasattr(encoder, "cache_identity") else None
    if identity is None:
        embeddings = encode(list(texts))
        return embeddings if dtype == "float32" else embeddings.astype(dtype)
    return cache.get_or_encode(identity, list(texts), encode, dtype=dtype)
