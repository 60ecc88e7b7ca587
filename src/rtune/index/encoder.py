"""The Encoder protocol and its sentence-transformers implementation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rtune.models.prompts import PromptSettings


class Encoder(Protocol):
    """Turns texts into embeddings where higher inner product means more relevant."""

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""


class SentenceTransformerEncoder:
    """Wraps a SentenceTransformer. Prompts saved with the model apply unless overridden here; embeddings
    are L2-normalised when the model's similarity is cosine, so inner product equals its similarity.
    `model_id` (its folder or hub id) identifies the weights for the embedding cache."""

    def __init__(self, model, query_prompt: str | None = None, document_prompt: str | None = None,
                 prompts: PromptSettings | None = None, model_id: str | None = None) -> None:
        self.model = model
        self.prompts = prompts or PromptSettings(query_prompt=query_prompt, document_prompt=document_prompt)
        self.query_prompt = self.prompts.query_prompt
        self.document_prompt = self.prompts.document_prompt
        self.model_id = model_id
        similarity = str(getattr(model, "similarity_fn_name", None) or "cosine")
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity '{similarity}' is not supported for inner-product search; valid: cosine, dot")
        self.normalize = similarity == "cosine"

    def _encode(self, method: str, texts: Sequence[str], prompt: str | None, batch_size: int, show_progress: bool) -> np.ndarray:
        kwargs = {"prompt": prompt} if prompt is not None else {}
        embeddings = getattr(self.model, method)(
            list(texts), batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True,
            normalize_embeddings=self.normalize, **kwargs,
        )
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        texts = [self.prompts.format_query(t) for t in texts]
        return self._encode("encode_query", texts, self.query_prompt, batch_size, show_progress)

    def cache_identity(self, kind: str, memo_dir: Path | None = None) -> dict | None:
        """What, besides the texts, decides the embeddings of `kind` ('queries' or 'documents'); None when
        the weights cannot be identified (a model in training). `memo_dir` keeps weight hashes between runs."""
        if self.model_id is None:
            return None
        from rtune.index.embedding_cache import model_fingerprint

        prompts = self.prompts.as_dict() if kind == "queries" else {"document_prompt": self.document_prompt}
        return {"model": model_fingerprint(self.model_id, memo_dir), "kind": kind, "max_seq_length": self.model.max_seq_length,
                "normalize": self.normalize, **prompts}

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._encode("encode_document", texts, self.document_prompt, batch_size, show_progress)
