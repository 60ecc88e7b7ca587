"""False-negative control: rules that drop candidates too close to (or above) the positive.

Each rule is `(name, rejects)`; the mining report counts what each one dropped. The reference is each
positive on its own, as sentence-transformers filters each (query, positive) pair against that positive's
score: a candidate stays in a query's pool when it passes against at least one positive, and it is
trained only against the positives it passes (`valid_positives`). The ratio and window rules are
relative to the reference and are undefined for a reference score <= 0 (a BM25 positive that shares no
term with its query scores 0; a cosine can be negative): they are skipped for such a positive, and the
absolute rules (`max_score`, `margin`) still apply.
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

    def relative(self) -> bool:
        """True when a rule scales with the reference score (ratio or window)."""
        return self.max_score_ratio is not None or self.window is not None

    def rules(self, positive_score: float) -> list[Rule]:
        """The rules against one positive's score (ratio and window only for a score > 0)."""
        rules: list[Rule] = []
        relative = positive_score > 0
        if self.max_score is not None:
            cap = self.max_score
            rules.append(("above_max_score", lambda c: c.score > cap))
        if self.max_score_ratio is not None and relative:
            limit = self.max_score_ratio * positive_score
            rules.append(("above_positive_ratio", lambda c: c.score > limit))
        if self.margin is not None:
            limit_margin = positive_score - self.margin
            rules.append(("within_margin_of_positive", lambda c: c.score > limit_margin))
        if self.window is not None and relative:
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


class PositiveAwareRules:
    """The filter applied per positive. `rules` drop a candidate only when it fails against every positive,
    counted under the rule that rejects it against the highest-scoring positive (the most lenient one)."""

    def __init__(self, flt: FalseNegativeFilter, positive_scores: list[float]) -> None:
        self.per_positive = [flt.rules(score) for score in positive_scores]
        best = max(range(len(positive_scores)), key=lambda i: positive_scores[i]) if positive_scores else None
        best_rules = self.per_positive[best] if best is not None else []
        self.rules: list[Rule] = [(name, self._composite(rejects)) for name, rejects in best_rules]

    def _composite(self, rejects: Callable[[Candidate], bool]) -> Callable[[Candidate], bool]:
        return lambda c: rejects(c) and not self.valid_positives(c)

    def valid_positives(self, candidate: Candidate) -> tuple[int, ...]:
        """Indices of the positives this candidate passes every rule against."""
        return tuple(i for i, rules in enumerate(self.per_positive) if not any(rejects(candidate) for _, rejects in rules))
