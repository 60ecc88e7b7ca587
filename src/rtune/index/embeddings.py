"""Corpus and query embeddings through the cache when the encoder's weights are identifiable, encoded in
length-sorted pieces under one labelled progress bar ("encoding corpus" / "encoding queries")."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rtune.index.embedding_cache import EmbeddingCache

LABELS = {"documents": "encoding corpus", "queries": "encoding queries"}
PIECE_BATCHES = 16  # encoder batches per call, between progress updates


class _LazyBar:
    """A tqdm bar that appears at the first update (a cache hit shows none)."""

    def __init__(self, total: int, label: str, show: bool) -> None:
        self.total, self.label, self.show, self.bar = total, label, show, None

    def update(self, n: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.label, unit="text", disable=not self.show)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def encode_sorted(method: Callable[[Sequence[str], int, bool], np.ndarray], texts: Sequence[str], batch_size: int,
                  progress: _LazyBar | None = None) -> np.ndarray:
    """(n, dim) embeddings of `texts` in their order, encoded longest first (little padding per batch) in pieces
    of PIECE_BATCHES batches; deterministic for a given batch size."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    piece = batch_size * PIECE_BATCHES
    out = None
    for start in range(0, len(texts), piece):
        rows = order[start : start + piece]
        block = np.asarray(method([texts[i] for i in rows], batch_size, False), dtype=np.float32)  # (p, dim)
        if out is None:
            out = np.empty((len(texts), block.shape[1]), dtype=np.float32)
        out[rows] = block
        if progress is not None:
            progress.update(len(rows))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def cached_embeddings(encoder, texts: Sequence[str], kind: str, cache: EmbeddingCache | None, dtype: str = "float32",
                      batch_size: int = 64, show_progress: bool = True) -> np.ndarray:
    """(n, dim) embeddings of `texts` as documents or queries; from/into `cache` when possible."""
    method = encoder.encode_documents if kind == "documents" else encoder.encode_queries
    progress = _LazyBar(len(texts), LABELS[kind], show_progress)

    def encode(chunk: Sequence[str]) -> np.ndarray:
        return encode_sorted(method, chunk, batch_size, progress)

    identity = encoder.cache_identity(kind, cache.folder) if cache is not None and hasattr(encoder, "cache_identity") else None
    try:
        if identity is None:
            embeddings = encode(list(texts))
            return embeddings if dtype == "float32" else embeddings.astype(dtype)
        return cache.get_or_encode(identity, list(texts), encode, dtype=dtype)
    finally:
        progress.close()
