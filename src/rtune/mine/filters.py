"""False-negative control: rules that drop candidates too close to (or above) the positive.

Each rule is `(name, rejects)`; the mining report counts what each one dropped. The reference score is the
lowest-scoring positive of the query, the conservative choice when a query has several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rtune.mine.sampling import Candidate

Rule = tuple[str, Callable[[Candidate], bool]]


@dataclass(frozen=True)
class FalseNegativeFilter:
    """`max_score_ratio`: drop scores above ratio x positive (positive-aware, 0.95 is NV-Retriever's best);
    `margin`: drop scores above positive - margin; `max_score`: drop scores above an absolute cap;
    `window`: keep only scores within [lo, hi] x positive (the `window` sampling strategy)."""

    max_score_ratio: float | None = None
    margin: float | None = None
    max_score: float | None = None
    window: tuple[float, float] | None = None

    def rules(self, positive_score: float) -> list[Rule]:
        rules: list[Rule] = []
        if self.max_score is not None:
            cap = self.max_score
            rules.append(("above_max_score", lambda c: c.score > cap))
        if self.max_score_ratio is not None:
            limit = self.max_score_ratio * positive_score
            rules.append(("above_positive_ratio", lambda c: c.score > limit))
        if self.margin is not None:
            limit_margin = positive_score - self.margin
            rules.append(("within_margin_of_positive", lambda c: c.score > limit_margin))
        if self.window is not None:
            lo, hi = self.window[0] * positive_score, self.window[1] * positive_score
            rules.append(("outside_score_window", lambda c: not lo <= c.score <= hi))
        return rules

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def parse_window(text: str) -> tuple[float, float]:
    """`0.5-0.95` -> (0.5, 0.95): fractions of the positive's score."""
    try:
        lo, hi = (float(part) for part in str(text).split("-"))
    except ValueError:
        raise ValueError(f"score window '{text}' must look like LO-HI, e.g. 0.5-0.95") from None
    if not 0 <= lo < hi:
        raise ValueError(f"score window '{text}' needs 0 <= LO < HI")
    return lo, hi
