"""The Reranker protocol (the Teacher protocol under its evaluation name) and one loader."""

from __future__ import annotations

from rtune.score.teacher import Teacher

Reranker = Teacher  # name, settings(), score(pairs) -> one raw score per (query, passage), higher = better


def load_reranker(model: str, kind: str = "auto", **settings) -> Reranker:
    """A cross-encoder or LLM yes-token reranker (`auto`: a causal LM is an LLM reranker); see build_teacher."""
    from rtune.score.teachers import build_teacher

    return build_teacher(kind, model, **settings)
