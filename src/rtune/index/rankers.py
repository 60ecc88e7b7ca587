"""Rankers turn queries into a run over a corpus; thin users of the retrieval core (rtune.index): BM25 and
dense search (any Encoder, exact or approximate FAISS search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from rtune.data.records import Document, Run
from rtune.data.text import document_texts
from rtune.index.bm25 import BM25Index
from rtune.index.dense_index import DenseIndex
from rtune.index.embedding_cache import EmbeddingCache
from rtune.index.ranking import CorpusIndex, with_progress
from rtune.models.encoder import Encoder


class Ranker(Protocol):
    name: str

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        """{query id: {doc id: score}} with each query's top k documents."""


def rank_run(index: CorpusIndex, doc_ids: Sequence[str], queries: Mapping[str, str], k: int, label: str,
             show_progress: bool = True, batch_size: int = 1024) -> Run:
    """Each query's top k from `index` as {query id: {doc id: score}}; empty places (-1) are left out."""
    qids = list(queries)
    run: Run = {}
    for batch in with_progress(index.rank_all(list(queries.values()), k, batch_size), len(qids), label, show_progress):
        for qid, row_p, row_s in zip(qids[batch.start :], batch.positions, batch.scores):
            run[qid] = {doc_ids[p]: float(s) for p, s in zip(row_p, row_s) if p >= 0}
    return run


class BM25Ranker:
    name = "bm25"

    def __init__(self, corpus: Sequence[Document], language: str = "en", use_title: bool = True) -> None:
        self.doc_ids = [d.id for d in corpus]
        self.index = BM25Index(language).index(document_texts(corpus, use_title), show_progress=len(corpus) > 50_000)

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        return rank_run(self.index, self.doc_ids, queries, k, "BM25 search")


class DenseRanker:
    """Embeds the corpus once (from the embedding cache when given one) at the first rank() call, then answers
    any rank() call with exact (or `index_type` approximate) FAISS search over the matrix."""

    def __init__(self, encoder: Encoder, corpus: Sequence[Document], name: str = "dense", batch_size: int = 64,
                 show_progress: bool = True, cache: EmbeddingCache | None = None, dtype: str = "float32",
                 use_title: bool = True, index_type: str = "exact", seed: int = 0) -> None:
        self.encoder, self.corpus, self.name = encoder, list(corpus), name
        self.use_title, self.index_type, self.seed = use_title, index_type, seed
        self.batch_size, self.show_progress = batch_size, show_progress
        self.cache, self.dtype = cache, dtype
        self._index: DenseIndex | None = None

    def index(self) -> DenseIndex:
        if self._index is None:
            self._index = DenseIndex.build(self.encoder, document_texts(self.corpus, self.use_title), self.cache, self.dtype,
                                           self.index_type, self.seed, self.batch_size, self.show_progress, self.name)
        return self._index

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        return rank_run(self.index(), [d.id for d in self.corpus], queries, k, "dense search", self.show_progress)
