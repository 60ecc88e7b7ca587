"""A bi-encoder's similarity as a (cheap) reranker / teacher, or a sanity check."""

from __future__ import annotations

import numpy as np

from rtune.models.encoder_options import EncoderOptions
from rtune.models.precision import dtype_name, inference_dtype, resolve_device


class BiEncoderReranker:
    """Scores a pair with the model's similarity (cosine or dot, as the model declares), loaded and fed
    through the shared encoder builder, so its saved prompts and settings apply as in every other stage."""
    def __init__(self, model_name: str, device: str | None = None, precision: str = "auto",
                 query_prompt: str | None = None, document_prompt: str | None = None, batch_size: int = 64) -> None:
        import torch


        self.name = model_name
        self.device = resolve_device(device)
        self.dtype = inference_dtype(precision, self.device)
        options = EncoderOptions(device=self.device, query_prompt=query_prompt, document_prompt=document_prompt)
        self.encoder = options.build_encoder(model_name)  # rtune.models.encoder.SentenceTransformerEncoder
        if self.dtype != torch.float32:
            self.encoder.model.to(self.dtype)
        self.batch_size = batch_size

    def settings(self) -> dict:
        saved = getattr(self.encoder, "settings", None)
        encoder = saved.as_dict() if hasattr(saved, "as_dict") else {}
        return {"kind": "bi_encoder", "model": self.name, "dtype": dtype_name(self.dtype),
                "max_seq_length": self.encoder.model.max_seq_length, "normalize": self.encoder.normalize, **encoder}

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        q_emb = self.encoder.encode_queries(queries, self.batch_size)  # (n_queries, dim)
        p_emb = self.encoder.encode_documents(passages, self.batch_size)  # (n_passages, dim)
        q_row = {q: i for i, q in enumerate(queries)}
        p_row = {p: i for i, p in enumerate(passages)}
        qi = np.array([q_row[q] for q, _ in pairs])
        pi = np.array([p_row[p] for _, p in pairs])
        scores = np.einsum("nd,nd->n", q_emb[qi], p_emb[pi])  # (n_pairs,) inner product = the model's similarity
        return [float(s) for s in scores]
