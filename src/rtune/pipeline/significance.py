"""Per-query wins and losses between two systems, with a paired test (Wilcoxon signed-rank, scipy)."""

from __future__ import annotations

from collections.abc import Mapping


def paired_comparison(before: Mapping[str, float], after: Mapping[str, float], eps: float = 1e-9) -> dict:
    """Wins / losses / ties of `after` over `before` on their shared queries, the mean difference and the
    two-sided Wilcoxon signed-rank p-value (None when every difference is zero or there are none)."""
    from scipy.stats import wilcoxon

    qids = sorted(set(before) & set(after))
    diffs = [after[q] - before[q] for q in qids]
    wins = sum(d > eps for d in diffs)
    losses = sum(d < -eps for d in diffs)
    p_value = None
    if wins + losses:
        p_value = float(wilcoxon([d for d in diffs if abs(d) > eps]).pvalue)
    return {"queries": len(qids), "wins": wins, "losses": losses, "ties": len(qids) - wins - losses,
            "mean_difference": sum(diffs) / len(diffs) if diffs else 0.0, "p_value": p_value}
