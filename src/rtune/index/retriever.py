"""The Python API: load a model, index documents, retrieve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rtune.data.beir import read_corpus
from rtune.data.records import Document
from rtune.data.run_file import ranked
from rtune.data.text import document_text, document_texts
from rtune.errors import InputError, check_choice
from rtune.index.bm25 import DEFAULT_LANGUAGE, BM25Index, dataset_language
from rtune.index.dense_index import DenseIndex
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.embeddings import cached_embeddings
from rtune.index.fusion import FUSION_METHODS, HybridSettings, check_weight, fused_top_k, ranks
from rtune.index.rankers import rank_run
from rtune.index.rerank import fuse_with_first_stage, rerank_run
from rtune.index.saved import load_retriever, save_retriever
from rtune.models.encoder import Encoder
from rtune.models.encoder_options import EncoderOptions
from rtune.models.rerankers.registry import load_reranker


@dataclass(frozen=True, slots=True)
class HybridScores:
    """How a hybrid hit was ranked: its fused score and, for each run that found it among its candidates, its
    score and rank there (1 = best; None when that run did not have it)."""
    fused: float
    dense_score: float | None
    dense_rank: int | None
    bm25_score: float | None
    bm25_rank: int | None


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document. `score`: the dense, fused (hybrid) or, with a reranker, reranker score;
    `hybrid`: the fusion's parts in hybrid mode (kept through reranking), else None."""
    doc_id: str
    score: float
    text: str
    hybrid: HybridScores | None = None


def as_documents(corpus: str | Path | Mapping[str, Document] | Iterable[Document | str | dict]) -> list[Document]:
    """Accept a corpus.jsonl path, {id: Document}, Documents, BEIR-style dicts or plain strings."""
    if isinstance(corpus, (str, Path)):
        return list(read_corpus(corpus).values())
    if isinstance(corpus, Mapping):
        return list(corpus.values())
    docs = []
    for i, item in enumerate(corpus):
        if isinstance(item, Document):
            docs.append(item)
        elif isinstance(item, str):
            docs.append(Document(id=str(i), text=item))
        elif isinstance(item, dict):
            docs.append(Document(id=str(item.get("_id", item.get("id", i))), text=item["text"], title=item.get("title", "")))
        else:
            raise TypeError(f"cannot index a {type(item).__name__}; give Documents, dicts with 'text', or strings")
    return docs


class Retriever:
    """Dense retrieval with FAISS inner-product search: exact by default, or an approximate `index_type`
    ("ivf", "hnsw") for large corpora. Index once, `save(path)`, and `Retriever.load(path)` to serve.
    With `hybrid=HybridSettings(...)`, BM25 and dense candidates are fused as `rtune eval --hybrid` fuses them.

    >>> retriever = Retriever.from_pretrained("path/to/model")
    >>> retriever.index_documents(["Paris is the capital of France.", "Berlin is in Germany."])
    >>> retriever.retrieve("capital of France", top_k=1)[0].doc_id
    '0'
    """
    def __init__(self, encoder: Encoder, batch_size: int = 64, reranker=None, rerank_top: int = 50,
                 index_type: str = "exact", seed: int = 0, hybrid: HybridSettings | None = None,
                 rerank_fusion: str | None = None, rerank_weight: float = 0.5) -> None:
        """`reranker`: a Reranker (rtune.models.rerankers.registry) or a cross-encoder / LLM reranker folder or hub id that
        re-scores each query's top `rerank_top` hits; with `rerank_fusion` (minmax or rrf) their order is the
        reranker's scores fused with the first stage's, the reranker weighing `rerank_weight` (as
        `rtune eval --rerank-fusion`). `index_type`: exact, ivf or hnsw (`seed`: IVF training sample).
        `hybrid`: fuse BM25 with the dense search (see HybridSettings); the reranker then reranks the fused hits."""
        check_choice("index type", index_type, INDEX_TYPES)
        if rerank_fusion is not None:

            check_choice("rerank fusion", rerank_fusion, FUSION_METHODS)
            if reranker is None:
                raise InputError("rerank_fusion fuses a reranker's scores with the first stage's: give a reranker too")
            check_weight(rerank_weight, "rerank_weight")
        self.rerank_fusion, self.rerank_weight = rerank_fusion, rerank_weight
        if hybrid is not None and not isinstance(hybrid, HybridSettings):
            raise TypeError(f"hybrid must be a HybridSettings or None, not {type(hybrid).__name__}")
        self.hybrid = hybrid
        self.bm25: BM25Index | None = None
        self._corpus_language = "en"  # BM25's language when hybrid.language is None (set by index_documents)
        self._by_id: tuple[list[Document] | None, dict[str, Document]] = (None, {})
        self.encoder = encoder
        self.batch_size = batch_size
        self.index_type, self.seed = index_type, seed
        if isinstance(reranker, (str, Path)):

            reranker = load_reranker(str(reranker))
        self.reranker, self.rerank_top = reranker, rerank_top
        self.documents: list[Document] = []
        self.index: DenseIndex | None = None

    @property
    def embeddings(self) -> np.ndarray | None:
        """(n_documents, dim) float32 document embeddings (None before indexing, or for a loaded IVF/HNSW index)."""
        return self.index.matrix if self.index is not None else None

    @property
    def use_title(self) -> bool:
        return getattr(getattr(self.encoder, "settings", None), "use_title", True)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str | None = None,
                        batch_size: int = 64, reranker=None, rerank_top: int = 50, index_type: str = "exact",
                        hybrid: HybridSettings | None = None, rerank_fusion: str | None = None, rerank_weight: float = 0.5,
                        **settings) -> Retriever:
        """Load a sentence-transformers model (folder, hub id, or None for the default MiniLM) with the
        encoder settings saved beside it; `settings` (query_prompt, query_instruction, query_format,
        document_prompt, max_query_length, max_passage_length, use_title) override them."""
        encoder = EncoderOptions(device=device, **settings).build_encoder(str(name_or_path) if name_or_path else None)
        return cls(encoder, batch_size=batch_size, reranker=reranker, rerank_top=rerank_top, index_type=index_type,
                   hybrid=hybrid, rerank_fusion=rerank_fusion, rerank_weight=rerank_weight)

    def index_documents(self, corpus, show_progress: bool = False) -> Retriever:
        """Encode and index documents (see `as_documents` for what `corpus` may be); replaces any earlier index.
        In hybrid mode BM25 indexes the same document texts; a prepared dataset's corpus.jsonl gives it the
        dataset's language (recorded by `rtune prepare --language`) unless hybrid.language is set."""
        documents = as_documents(corpus)
        if not documents:
            raise ValueError("nothing to index: the corpus is empty")
        self.index = DenseIndex.build(self.encoder, document_texts(documents, self.use_title), None, "float32",
                                      self.index_type, self.seed, self.batch_size, show_progress)
        self.documents, self.bm25 = documents, None
        self._corpus_language = _corpus_language(corpus)
        if self.hybrid is not None:
            self.bm25_index(show_progress)
        return self

    def bm25_language(self) -> str:
        """The language BM25 runs in: hybrid.language, else the indexed dataset's, else en."""
        return (self.hybrid.language if self.hybrid is not None else None) or self._corpus_language

    def bm25_index(self, show_progress: bool = False) -> BM25Index:
        """The BM25 index over the documents (the same text rule as dense search), built when missing or when its
        language is not `bm25_language()`."""
        if self.index is None:
            raise RuntimeError("call index_documents() or Retriever.load() before retrieving")
        language = self.bm25_language()
        if self.bm25 is None or self.bm25.language != language or self.bm25.size != len(self.documents):
            if len(self._documents_by_id()) != len(self.documents):
                seen: set[str] = set()
                duplicate = next(d.id for d in self.documents if d.id in seen or seen.add(d.id))
                raise InputError(f"hybrid retrieval needs unique document ids; '{duplicate}' occurs more than once")
            self.bm25 = BM25Index(language).index(document_texts(self.documents, self.use_title), show_progress)
        return self.bm25

    def search_embeddings(self, query_embeddings: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("call index_documents() or Retriever.load() before retrieving")
        return self.index.search_embeddings(query_embeddings, top_k)

    def batch_retrieve(self, queries: Sequence[str], top_k: int = 10, batch_size: int | None = None,
                       show_progress: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query, best first: dense, or fused with BM25 in hybrid mode (BM25's and the dense
        search's top `hybrid.depth(k)` each, fused, then the k best), then reranked when the retriever has a
        reranker (its top `rerank_top` first-stage hits)."""
        if self.index is None:
            raise RuntimeError("call index_documents() or Retriever.load() before retrieving")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if not queries:
            return []
        embeddings = cached_embeddings(self.encoder, list(queries), "queries", None, "float32", batch_size or self.batch_size,
                                       show_progress)
        depth = max(top_k, self.rerank_top) if self.reranker is not None else top_k
        if self.hybrid is not None:
            hits = self._hybrid_hits(list(queries), embeddings, depth, show_progress)
        else:
            positions, scores = self.search_embeddings(embeddings, depth)
            hits = [
                [Hit(self.documents[p].id, float(s), self.documents[p].text) for p, s in zip(row_p, row_s) if p >= 0]
                for row_p, row_s in zip(positions, scores)
            ]
        if self.reranker is None:
            return hits
        return self._rerank(list(queries), hits, top_k, show_progress)

    def _hybrid_hits(self, queries: list[str], embeddings: np.ndarray, k: int, show_progress: bool) -> list[list[Hit]]:
        """Each query's k best after fusing BM25's and the dense search's candidates (rtune.index.fusion.fused_top_k,
        the function `rtune eval --hybrid` ranks with)."""
        depth = self.hybrid.depth(k)
        ids = [d.id for d in self.documents]
        qids = {str(i): q for i, q in enumerate(queries)}
        lexical = rank_run(self.bm25_index(show_progress), ids, qids, depth, "BM25 search", show_progress)
        positions, scores = self.search_embeddings(embeddings, depth)
        dense = {qid: {ids[p]: float(s) for p, s in zip(row_p, row_s) if p >= 0}
                 for qid, row_p, row_s in zip(qids, positions, scores)}
        fused = fused_top_k(lexical, dense, self.hybrid, k)
        by_id = self._documents_by_id()
        out = []
        for qid in qids:
            row = fused.get(qid, {})
            lex, den, lex_rank, den_rank = lexical[qid], dense[qid], ranks(lexical[qid]), ranks(dense[qid])
            out.append([Hit(d, float(s), by_id[d].text,
                            HybridScores(float(s), den.get(d), den_rank.get(d), lex.get(d), lex_rank.get(d)))
                        for d, s in ranked(row)])
        return out

    def _documents_by_id(self) -> dict[str, Document]:
        """{doc id: Document}, built once per document list."""
        if self._by_id[0] is not self.documents:
            self._by_id = (self.documents, {d.id: d for d in self.documents})
        return self._by_id[1]

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the index with everything needed to serve it (see rtune.index.saved); atomic."""
        if self.index is None:
            raise RuntimeError("call index_documents() before save()")
        return save_retriever(self, Path(path), overwrite)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, batch_size: int = 64, reranker=None,
             rerank_top: int = 50, hybrid: HybridSettings | bool | None = None, rerank_fusion: str | None = None,
             rerank_weight: float = 0.5) -> Retriever:
        """A retriever saved by `save`: the same model and encoder settings, documents and index, nothing re-encoded.
        `hybrid`: None keeps the saved hybrid settings (or none), False turns hybrid off, a HybridSettings replaces
        them (e.g. `HybridSettings.from_record(...)`: the fusion chosen on dev)."""
        return load_retriever(cls, Path(path), device, batch_size=batch_size, reranker=reranker, rerank_top=rerank_top,
                              hybrid=hybrid, rerank_fusion=rerank_fusion, rerank_weight=rerank_weight)

    def _rerank(self, queries: list[str], hits: list[list[Hit]], top_k: int, show_progress: bool) -> list[list[Hit]]:
        """Each query's top `rerank_top` hits re-scored by the reranker, the rest after them; top_k kept."""
        documents = self._documents_by_id()
        texts = {h.doc_id: document_text(documents[h.doc_id], self.use_title) for row in hits for h in row}
        run = {str(i): {h.doc_id: h.score for h in row} for i, row in enumerate(hits)}
        reranked = rerank_run(run, {str(i): q for i, q in enumerate(queries)}, texts, self.reranker, self.rerank_top,
                              batch_size=self.batch_size, show_progress=show_progress)
        if self.rerank_fusion is not None:

            reranked = fuse_with_first_stage(run, reranked, self.rerank_top, self.rerank_fusion, self.rerank_weight)
        out = []
        for i, row in enumerate(hits):
            by_id, scores = {h.doc_id: h for h in row}, reranked[str(i)]
            best = [d for d, _ in ranked(scores)[:top_k]]
            out.append([replace(by_id[d], score=scores[d]) for d in best])
        return out

    def retrieve(self, query: str, top_k: int = 10) -> list[Hit]:
        """Top-k hits for one query, best first."""
        return self.batch_retrieve([query], top_k)[0]


def _corpus_language(corpus) -> str:
    """The BM25 language recorded in a prepared dataset when `corpus` is its corpus.jsonl (or folder), else en."""
    if isinstance(corpus, (str, Path)):
        path = Path(corpus)
        return dataset_language(None, path if path.is_dir() else path.parent)
    return DEFAULT_LANGUAGE
