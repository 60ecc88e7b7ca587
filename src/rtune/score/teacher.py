"""The Teacher protocol: anything that scores (query, passage) pairs, higher meaning more relevant."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Teacher(Protocol):
    """Scores pairs. Rerankers at evaluation use the same protocol (see rtune.score.rerank)."""

    name: str

    def settings(self) -> dict:
        """What decides the scores besides the model (prefixes, max length, dtype...), for manifests and cache keys."""

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """One raw score (a logit or a similarity, never squashed) per (query, passage) pair, in order."""
