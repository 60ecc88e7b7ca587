"""The Encoder protocol and its sentence-transformers implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    """Turns texts into embeddings where higher inner product means more relevant."""

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""


class SentenceTransformerEncoder:
    """Wraps a SentenceTransformer. Prompts saved with the model apply unless overridden here; embeddings
    are L2-normalised when the model's similarity is cosine, so inner product equals its similarity."""

    def __init__(self, model, query_prompt: str | None = None, document_prompt: str | None = None) -> None:
        self.model = model
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
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
        return self._encode("encode_query", texts, self.query_prompt, batch_size, show_progress)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._encode("encode_document", texts, self.document_prompt, batch_size, show_progress)
