"""Rankers turn queries into a run over a corpus: BM25 and dense (any Encoder, exact FAISS search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from rtune.data.records import Document
from rtune.data.text import document_texts
from rtune.eval.metrics import Run
from rtune.index.dense_search import exact_search
from rtune.index.embedding_cache import EmbeddingCache
from rtune.index.embeddings import cached_embeddings
from rtune.index.encoder import Encoder
from rtune.mine.bm25 import BM25Index


class Ranker(Protocol):
    name: str

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        """{query id: {doc id: score}} with each query's top k documents."""


def _to_run(qids: Sequence[str], doc_ids: Sequence[str], positions, scores) -> Run:
    return {qid: {doc_ids[p]: float(s) for p, s in zip(row_p, row_s) if p >= 0}
            for qid, row_p, row_s in zip(qids, positions, scores)}


class BM25Ranker:
    name = "bm25"

    def __init__(self, corpus: Sequence[Document], language: str = "en", use_title: bool = True) -> None:
        self.doc_ids = [d.id for d in corpus]
        self.index = BM25Index(language).index(document_texts(corpus, use_title), show_progress=len(corpus) > 50_000)

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        positions, scores = self.index.search(list(queries.values()), k, show_progress=True)
        return _to_run(list(queries), self.doc_ids, positions, scores)


class DenseRanker:
    """Embeds the corpus once (from the embedding cache when given one), then answers any rank() call
    with exact FAISS search over the (possibly memory-mapped) matrix."""

    def __init__(self, encoder: Encoder, corpus: Sequence[Document], name: str = "dense", batch_size: int = 64,
                 show_progress: bool = True, cache: EmbeddingCache | None = None, dtype: str = "float32",
                 use_title: bool = True) -> None:
        self.encoder, self.corpus, self.name = encoder, list(corpus), name
        self.use_title = use_title
        self.batch_size, self.show_progress = batch_size, show_progress
        self.cache, self.dtype = cache, dtype
        self._matrix = None

    def matrix(self):
        if self._matrix is None:
            self._matrix = cached_embeddings(self.encoder, document_texts(self.corpus, self.use_title), "documents", self.cache,
                                             self.dtype, self.batch_size, self.show_progress)
        return self._matrix

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        matrix = self.matrix()
        embeddings = cached_embeddings(self.encoder, list(queries.values()), "queries", self.cache, "float32",
                                       self.batch_size, self.show_progress)
        positions, scores = exact_search(embeddings, matrix, k)
        return _to_run(list(queries), [d.id for d in self.corpus], positions, scores)
