"""Choose negatives from a ranked candidate list: a rank range, known positives excluded, a strategy."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rtune.errors import check_choice

Strategy = Literal["random", "top", "window"]
STRATEGIES: tuple[str, ...] = ("random", "top", "window")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A retrieved document: its id, 1-based rank and the miner's score."""

    doc_id: str
    rank: int
    score: float


@dataclass(frozen=True)
class RankRange:
    """Inclusive 1-based rank range, e.g. `2-200`."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> RankRange:
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(text))
        if not match:
            raise ValueError(f"rank range '{text}' must look like START-END, e.g. 2-200")
        start, end = int(match.group(1)), int(match.group(2))
        if start < 1 or end < start:
            raise ValueError(f"rank range '{text}' needs 1 <= START <= END")
        return cls(start, end)

    @property
    def width(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass
class Selection:
    """The negatives kept for one query and the in-range candidates each rule dropped."""

    negatives: list[Candidate]
    dropped: list[tuple[str, Candidate]] = field(default_factory=list)

    def dropped_counts(self) -> Counter:
        return Counter(rule for rule, _ in self.dropped)


def select_negatives(
    ranked: Sequence[Candidate],
    rank_range: RankRange,
    n: int,
    strategy: Strategy,
    rng: random.Random,
    rules: Sequence[tuple[str, Callable[[Candidate], bool]]],
) -> Selection:
    """Keep candidates within `rank_range` that no rule rejects, then take `n` of them.

    `rules` are `(name, rejects)` pairs checked in order; the first that rejects a candidate is counted
    under its name. `top` takes the best-ranked survivors; `random` and `window` a uniform sample (kept in
    rank order) — `window` is random within a score window that its rule enforces.
    """
    dropped: list[tuple[str, Candidate]] = []
    pool: list[Candidate] = []
    for candidate in ranked:
        if not rank_range.start <= candidate.rank <= rank_range.end:
            continue
        for name, rejects in rules:
            if rejects(candidate):
                dropped.append((name, candidate))
                break
        else:
            pool.append(candidate)
    if strategy == "top":
        chosen = pool[:n]
    else:
        check_choice("strategy", strategy, STRATEGIES)
        chosen = sorted(rng.sample(pool, min(n, len(pool))), key=lambda c: c.rank)
    return Selection(negatives=chosen, dropped=dropped)
