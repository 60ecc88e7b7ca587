"""The Python API: load a model, index documents, retrieve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtune.data.beir import read_corpus
from rtune.data.records import Document
from rtune.index.dense_search import exact_search
from rtune.index.encoder import Encoder, SentenceTransformerEncoder


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
    """Dense retrieval with exact FAISS (inner-product) search.

    >>> retriever = Retriever.from_pretrained("path/to/model")
    >>> retriever.index_documents(["Paris is the capital of France.", "Berlin is in Germany."])
    >>> retriever.retrieve("capital of France", top_k=1)[0].doc_id
    '0'
    """

    def __init__(self, encoder: Encoder, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.documents: list[Document] = []
        self.embeddings: np.ndarray | None = None  # (n_documents, dim) float32

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str | None = None,
                        query_prompt: str | None = None, document_prompt: str | None = None,
                        batch_size: int = 64) -> Retriever:
        """Load a sentence-transformers model (folder, hub id, or None for the default MiniLM)."""
        from rtune.models.loading import load_bi_encoder

        model = load_bi_encoder(name_or_path, device=device)
        return cls(SentenceTransformerEncoder(model, query_prompt, document_prompt), batch_size=batch_size)

    def index_documents(self, corpus, show_progress: bool = False) -> Retriever:
        """Encode and index documents (see `as_documents` for what `corpus` may be); replaces any earlier index."""
        self.documents = as_documents(corpus)
        if not self.documents:
            raise ValueError("nothing to index: the corpus is empty")
        self.embeddings = self.encoder.encode_documents([d.text for d in self.documents], self.batch_size, show_progress)
        return self

    def search_embeddings(self, query_embeddings: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.embeddings is None:
            raise RuntimeError("call index_documents() before retrieving")
        return exact_search(query_embeddings, self.embeddings, top_k)

    def batch_retrieve(self, queries: Sequence[str], top_k: int = 10, batch_size: int | None = None,
                       show_progress: bool = False) -> list[list[Hit]]:
        """Top-k hits for each query, best first."""
        embeddings = self.encoder.encode_queries(list(queries), batch_size or self.batch_size, show_progress)
        positions, scores = self.search_embeddings(embeddings, top_k)
        return [
            [Hit(self.documents[p].id, float(s), self.documents[p].text) for p, s in zip(row_p, row_s) if p >= 0]
            for row_p, row_s in zip(positions, scores)
        ]

    def retrieve(self, query: str, top_k: int = 10) -> list[Hit]:
        """Top-k hits for one query, best first."""
        return self.batch_retrieve([query], top_k)[0]
