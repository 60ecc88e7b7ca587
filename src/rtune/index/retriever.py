"""The Python API: load a model, index documents, retrieve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtune.data.beir import read_corpus
from rtune.data.records import Document
from rtune.data.text import document_text, document_texts
from rtune.errors import check_choice
from rtune.index.dense_index import DenseIndex
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.embeddings import cached_embeddings
from rtune.index.encoder import Encoder


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document."""

    doc_id: str
    score: float
    text: str


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

    >>> retriever = Retriever.from_pretrained("path/to/model")
    >>> retriever.index_documents(["Paris is the capital of France.", "Berlin is in Germany."])
    >>> retriever.retrieve("capital of France", top_k=1)[0].doc_id
    '0'
    """

    def __init__(self, encoder: Encoder, batch_size: int = 64, reranker=None, rerank_top: int = 50,
                 index_type: str = "exact", seed: int = 0) -> None:
        """`reranker`: a Reranker (rtune.score.reranker) or a cross-encoder / LLM reranker folder or hub id that
        re-scores each query's top `rerank_top` hits. `index_type`: exact, ivf or hnsw (`seed`: IVF training sample)."""
        check_choice("index type", index_type, INDEX_TYPES)
        self.encoder = encoder
        self.batch_size = batch_size
        self.index_type, self.seed = index_type, seed
        if isinstance(reranker, (str, Path)):
            from rtune.score.reranker import load_reranker

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
                        **settings) -> Retriever:
        """Load a sentence-transformers model (folder, hub id, or None for the default MiniLM) with the
        encoder settings saved beside it; `settings` (query_prompt, query_instruction, query_format,
        document_prompt, max_query_length, max_passage_length, use_title) override them."""
        from rtune.models.encoder_options import EncoderOptions

        encoder = EncoderOptions(device=device, **settings).build_encoder(str(name_or_path) if name_or_path else None)
        return cls(encoder, batch_size=batch_size, reranker=reranker, rerank_top=rerank_top, index_type=index_type)

    def index_documents(self, corpus, show_progress: bool = False) -> Retriever:
        """Encode and index documents (see `as_documents` for what `corpus` may be); replaces any earlier index."""
        documents = as_documents(corpus)
        if not documents:
            raise ValueError("nothing to index: the corpus is empty")
        self.index = DenseIndex.build(self.encoder, document_texts(documents, self.use_title), None, "float32",
                                      self.index_type, self.seed, self.batch_size, show_progress)
        self.documents = documents
        return self

    def search_embeddings(self, query_embeddings: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("call index_documents() or Retriever.load() before retrieving")
        return self.index.search_embeddings(query_embeddings, top_k)

    def batch_retrieve(self, queries: Sequence[str], top_k: int = 10, batch_size: int | None = None,
                       show_progress: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query, best first (reranked when the retriever has a reranker)."""
        if self.index is None:
            raise RuntimeError("call index_documents() or Retriever.load() before retrieving")
        if not queries:
            return []
        embeddings = cached_embeddings(self.encoder, list(queries), "queries", None, "float32", batch_size or self.batch_size,
                                       show_progress)
        depth = max(top_k, self.rerank_top) if self.reranker is not None else top_k
        positions, scores = self.search_embeddings(embeddings, depth)
        hits = [
            [Hit(self.documents[p].id, float(s), self.documents[p].text) for p, s in zip(row_p, row_s) if p >= 0]
            for row_p, row_s in zip(positions, scores)
        ]
        if self.reranker is None:
            return hits
        return self._rerank(list(queries), hits, positions, top_k, show_progress)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the index with everything needed to serve it (see rtune.index.saved); atomic."""
        from rtune.index.saved import save_retriever

        if self.index is None:
            raise RuntimeError("call index_documents() before save()")
        return save_retriever(self, Path(path), overwrite)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, batch_size: int = 64, reranker=None,
             rerank_top: int = 50) -> Retriever:
        """A retriever saved by `save`: the same model and encoder settings, documents and index, nothing re-encoded."""
        from rtune.index.saved import load_retriever

        return load_retriever(cls, Path(path), device, batch_size=batch_size, reranker=reranker, rerank_top=rerank_top)

    def _rerank(self, queries: list[str], hits: list[list[Hit]], positions: np.ndarray, top_k: int,
                show_progress: bool) -> list[list[Hit]]:
        """Each query's top `rerank_top` hits re-scored by the reranker, the rest after them; top_k kept."""
        from rtune.score.rerank import rerank_run

        texts = {self.documents[p].id: document_text(self.documents[p], self.use_title) for p in positions.ravel() if p >= 0}
        run = {str(i): {h.doc_id: h.score for h in row} for i, row in enumerate(hits)}
        reranked = rerank_run(run, {str(i): q for i, q in enumerate(queries)}, texts, self.reranker, self.rerank_top,
                              batch_size=self.batch_size, show_progress=show_progress)
        out = []
        for i, row in enumerate(hits):
            by_id, scores = {h.doc_id: h for h in row}, reranked[str(i)]
            best = sorted(scores, key=lambda d: -scores[d])[:top_k]
            out.append([Hit(d, scores[d], by_id[d].text) for d in best])
        return out

    def retrieve(self, query: str, top_k: int = 10) -> list[Hit]:
        """Top-k hits for one query, best first."""
        return self.batch_retrieve([query], top_k)[0]
