"""Paired significance tests (ranx's, Holm-corrected) against reference computations."""

from __future__ import annotations

import random

import pytest

from rtune.eval.significance import compare_pairs, holm, paired_p_value


def _systems(n: int = 10, shift: float = 0.15, seed: int = 0) -> tuple[dict, dict]:
    rng = random.Random(seed)
    before = {f"q{i}": rng.random() for i in range(n)}
    after = {q: min(1.0, v + shift + rng.gauss(0, 0.2)) for q, v in before.items()}
    return before, after


def test_student_p_value_equals_scipys_paired_t_test():
    from scipy.stats import ttest_rel

    before, after = _systems(30)
    qids = sorted(before)
    expected = ttest_rel([after[q] for q in qids], [before[q] for q in qids]).pvalue
    assert paired_p_value([before[q] for q in qids], [after[q] for q in qids], "student") == pytest.approx(expected, rel=1e-6)


def test_holm_matches_a_hand_worked_example():
    # sorted p: 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08 -> 0.09, monotone), 0.2 (x1 = 0.2)
    adjusted = holm([0.04, 0.01, None, 0.2, 0.03])
    assert adjusted[2] is None
    assert [adjusted[i] for i in (0, 1, 3, 4)] == pytest.approx([0.09, 0.04, 0.2, 0.09])


def test_compare_pairs_counts_and_corrects_over_the_pairs_given():
    before = {f"q{i}": 0.0 for i in range(12)}
    after = {**{f"q{i}": 1.0 for i in range(10)}, "q10": 0.0, "q11": 0.0}
    same = compare_pairs([("same", before, before)])[0]
    assert same.p_value is None and (same.wins, same.losses, same.ties) == (0, 0, 12)
    one, other = compare_pairs([("a", before, after), ("b", *_systems(12))])
    assert (one.wins, one.losses, one.ties) == (10, 0, 2) and one.mean_difference == pytest.approx(10 / 12)
    assert one.p_value < 0.01
    assert holm([one.p_value, other.p_value]) == pytest.approx([one.p_adjusted, other.p_adjusted])
    assert compare_pairs([("a", before, after)])[0].p_adjusted == pytest.approx(one.p_value)  # alone: no correction
