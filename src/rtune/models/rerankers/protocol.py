"""The Reranker protocol: anything that scores (query, passage) pairs, higher meaning more relevant. The same
object reranks at evaluation and serving time and is the teacher whose scores `rtune score` writes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Reranker(Protocol):
    """Scores pairs (a cross-encoder, an LLM yes-token reranker, a bi-encoder's similarity)."""

    name: str

    def settings(self) -> dict:
        """What decides the scores besides the model (prefixes, max length, dtype...), for manifests and cache keys."""

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """One raw score (a logit or a similarity, never squashed) per (query, passage) pair, in order."""
