"""Paired significance tests between systems on the same queries, through ranx's test (the two-sided paired
Student's t-test that `ranx.compare` runs by default) on the per-query values a report shows, with Holm's
correction for the number of comparisons made together. (ranx's Fisher randomisation test is not offered: it
draws its permutations on numba threads that its seed does not reach, so its p-values change from run to run.)

Every comparison a report or benchmark makes goes through `compare_pairs`, so it names one test and one
correction, and its p-values account for the others it made beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rtune.errors import check_choice

TESTS = {"student": "paired Student's t-test"}
DEFAULT_TEST = "student"
CORRECTION = "Holm"
TIE = 1e-9  # per-query differences smaller than this are ties


@dataclass(frozen=True)
class Comparison:
    """`after` against `before` over their shared queries: wins, losses, ties, the mean difference, the test's
    p-value and its Holm-adjusted value (over the comparisons made together)."""

    label: str
    queries: int
    wins: int
    losses: int
    ties: int
    mean_difference: float
    p_value: float | None
    p_adjusted: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def describe(test: str = DEFAULT_TEST, comparisons: int = 1) -> str:
    """The test and correction in words, for a report."""
    return f"{TESTS[test]} (ranx, two-sided), {CORRECTION}-corrected over {comparisons} comparison(s)"


def paired_p_value(before: Sequence[float], after: Sequence[float], test: str = DEFAULT_TEST) -> float | None:
    """The two-sided p-value of `after` vs `before` (same queries, same order); None when every difference is 0 or
    there are fewer than two queries."""
    import numpy as np
    from ranx.statistical_tests import paired_student_t_test

    check_choice("significance test", test, TESTS)
    a, b = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if len(a) < 2 or not np.any(np.abs(a - b) > TIE):
        return None
    p_value, _ = paired_student_t_test(a, b, 0.05)
    return float(p_value) if np.isfinite(p_value) else None


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of `p_values` (None stays None and is not counted as a comparison)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def compare_pairs(pairs: Sequence[tuple[str, Mapping[str, float], Mapping[str, float]]],
                  test: str = DEFAULT_TEST) -> list[Comparison]:
    """One Comparison per (label, before, after) of per-query values ({query id: value}), over the queries both
    have; the p-values are Holm-adjusted over all the pairs given."""
    rows = []
    for label, before, after in pairs:
        qids = sorted(set(before) & set(after))
        a, b = [before[q] for q in qids], [after[q] for q in qids]
        diffs = [y - x for x, y in zip(a, b)]
        rows.append((label, qids, diffs, paired_p_value(a, b, test)))
    adjusted = holm([p for *_, p in rows])
    return [Comparison(label, len(qids), sum(d > TIE for d in diffs), sum(d < -TIE for d in diffs),
                       sum(abs(d) <= TIE for d in diffs), sum(diffs) / len(diffs) if diffs else 0.0, p, p_adj)
            for (label, qids, diffs, p), p_adj in zip(rows, adjusted)]
