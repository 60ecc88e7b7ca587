"""The Encoder protocol and its sentence-transformers implementation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rtune.errors import InputError
from rtune.models.fingerprint import encoder_fingerprint
from rtune.models.settings import EncoderSettings


class Encoder(Protocol):
    """Turns texts into embeddings where higher inner product means more relevant."""

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""
    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32."""


class SentenceTransformerEncoder:
    """Wraps a SentenceTransformer and applies `settings` exactly as training does: the query instruction
    and format, then the prompt prefixes (never the model's implicit defaults: an unset prompt is ""), and
    the query / passage max lengths. Embeddings are L2-normalised when the model's similarity is cosine, so
    inner product equals its similarity. `model_id` (its folder or hub id) identifies the weights for the
    embedding cache."""
    def __init__(self, model, settings: EncoderSettings | None = None, model_id: str | None = None,
                 devices: list[str] | None = None) -> None:
        """`devices`: encode with one process per device (sentence-transformers' multi-process pool, started at the
        first encoding and stopped when the process exits), e.g. ["cuda:0", "cuda:1"]."""
        self.model = model
        self.devices, self._pool = devices, None
        self.settings = settings if settings is not None else EncoderSettings.from_model(model)
        self.model_id = model_id
        similarity = str(getattr(model, "similarity_fn_name", None) or "cosine")
        if similarity not in ("cosine", "dot"):
            raise InputError(f"similarity '{similarity}' is not supported for inner-product search; valid: cosine, dot")
        self.normalize = similarity == "cosine"

    def max_length(self, kind: str) -> int | None:
        """Token limit for 'queries' or 'documents': the setting, else the model's own."""
        value = self.settings.max_query_length if kind == "queries" else self.settings.max_passage_length
        return value or self.model.max_seq_length

    @contextlib.contextmanager
    def _limited(self, kind: str) -> Iterator[None]:
        previous = self.model.max_seq_length
        self.model.max_seq_length = self.max_length(kind)
        try:
            yield
        finally:
            self.model.max_seq_length = previous

    def _encode(self, kind: str, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        method = "encode_query" if kind == "queries" else "encode_document"
        prompt = (self.settings.query_prompt if kind == "queries" else self.settings.document_prompt) or ""
        with self._limited(kind):
            embeddings = getattr(self.model, method)(
                list(texts), prompt=prompt, batch_size=batch_size, show_progress_bar=show_progress,
                convert_to_numpy=True, normalize_embeddings=self.normalize, pool=self.pool())
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def pool(self):
        """The multi-process pool over `devices` (started once), or None for in-process encoding."""
        if not self.devices or len(self.devices) < 2:
            return None
        if self._pool is None:
            import atexit

            self._pool = self.model.start_multi_process_pool(list(self.devices))
            atexit.register(self.model.stop_multi_process_pool, self._pool)
        return self._pool

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._encode("queries", [self.settings.format_query(t) for t in texts], batch_size, show_progress)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._encode("documents", texts, batch_size, show_progress)

    def cache_identity(self, kind: str, memo_dir: Path | None = None) -> dict | None:
        """What, besides the texts, decides the embeddings of `kind` ('queries' or 'documents'); None when
        the weights cannot be identified (a model in training). `memo_dir` keeps weight hashes between runs."""
        if self.model_id is None:
            return None

        s = self.settings
        if kind == "queries":
            presentation = {"query_prompt": s.query_prompt, "query_instruction": s.query_instruction, "query_format": s.query_format}
            if s.icl_examples:
                presentation["icl_examples"] = [dict(e) for e in s.icl_examples]
        else:
            presentation = {"document_prompt": s.document_prompt, "use_title": s.use_title}
        return {"model": encoder_fingerprint(self.model_id, memo_dir), "kind": kind, "max_seq_length": self.max_length(kind),
                "normalize": self.normalize, **presentation, **s.loading_identity()}
