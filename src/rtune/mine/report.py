"""The mining report: what was kept, what was dropped and why, and labelling smells."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from rtune.index.collapse import looks_collapsed, most_common_share


def describe(values: list[float]) -> dict[str, float]:
    """Summary statistics of a list of numbers (empty -> {})."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    q = np.percentile(arr, [5, 25, 50, 75, 95])
    return {"count": int(arr.size), "mean": float(arr.mean()), "min": float(arr.min()), "p5": float(q[0]),
            "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p95": float(q[4]), "max": float(arr.max())}


@dataclass
class MiningReport:
    """Accumulates per-query outcomes; `as_dict()` is what goes to mining_report.json."""
    wanted: int
    range_end: int
    queries: int = 0
    negatives_kept: int = 0
    queries_without_negatives: int = 0
    dropped: Counter = field(default_factory=Counter)
    short_queries: list[dict] = field(default_factory=list)
    positive_ranks: list[int] = field(default_factory=list)  # ranks of positives the miner retrieved
    unretrieved: list[dict] = field(default_factory=list)  # positives not in the miner's top `range_end`
    positives: int = 0
    positive_scores: list[float] = field(default_factory=list)
    kept_scores: list[float] = field(default_factory=list)
    dropped_scores: list[float] = field(default_factory=list)
    relative_rules_skipped: int = 0
    backfilled: int = 0
    first_documents: Counter = field(default_factory=Counter)  # each query's first-ranked document (collapse check)
    corpus_size: int = 0

    def add(self, query_id: str, kept: int, dropped: Counter, positive_ranks: list[int | None],
            positive_scores: list[float], kept_scores: list[float], dropped_scores: list[float],
            relative_skipped: int = 0) -> None:
        """One query: negatives kept from the ranking, drops per rule, each positive's rank (None when the
        miner did not retrieve it) and score."""
        self.queries += 1
        self.negatives_kept += kept
        self.dropped.update(dropped)
        if kept < self.wanted:
            self.short_queries.append({"query_id": query_id, "kept": kept})
        self.positives += len(positive_ranks)
        self.positive_ranks.extend(r for r in positive_ranks if r is not None)
        missing = sum(r is None for r in positive_ranks)
        if missing:
            self.unretrieved.append({"query_id": query_id, "positives_not_retrieved": missing, "positives": len(positive_ranks)})
        self.positive_scores.extend(positive_scores)
        self.kept_scores.extend(kept_scores)
        self.dropped_scores.extend(dropped_scores)
        self.relative_rules_skipped += relative_skipped

    def note_first(self, doc_id: str) -> None:
        """The document the miner ranked first for one query."""
        self.first_documents[doc_id] += 1

    def ranked_queries(self) -> int:
        """Queries the miner ranked at least one document for (those the collapse check measures)."""
        return sum(self.first_documents.values())

    def top1_share(self) -> float:
        """The share of queries whose first-ranked document is the most common one."""
        return most_common_share(self.first_documents.elements())

    def looks_collapsed(self) -> bool:
        return looks_collapsed(self.top1_share(), self.ranked_queries(), self.corpus_size)

    def finish_query(self, total_negatives: int) -> None:
        """After backfill: count the query if it ends with no negative at all."""
        self.queries_without_negatives += total_negatives == 0

    def as_dict(self) -> dict:
        ranks = np.asarray(self.positive_ranks or [0])
        not_retrieved = sum(u["positives_not_retrieved"] for u in self.unretrieved)
        return {
            "queries": self.queries,
            "negatives_wanted_per_query": self.wanted,
            "negatives_kept": self.negatives_kept,
            "queries_without_negatives": self.queries_without_negatives,
            "dropped_by_rule": dict(self.dropped),
            "short_queries": len(self.short_queries),
            "backfilled_negatives": self.backfilled,
            "short_query_list": self.short_queries,
            "positive_rank": {
                **describe([float(r) for r in self.positive_ranks]),
                "positives": self.positives,
                "at_rank_1": float((ranks == 1).sum() / max(1, self.positives)),
                f"outside_top_{self.range_end}": int((ranks > self.range_end).sum()) + not_retrieved,
                f"not_retrieved_in_top_{self.range_end}": not_retrieved,
                "not_retrieved_list": self.unretrieved,
            },
            "relative_rules_skipped_for_non_positive_reference": self.relative_rules_skipped,
            "first_document": {"top1_share": round(self.top1_share(), 4), "looks_collapsed": self.looks_collapsed(),
                               "most_common": [[d, n] for d, n in self.first_documents.most_common(3)]},
            "scores": {
                "positive (each positive; the per-positive reference of the filters)": describe(self.positive_scores),
                "kept_negative": describe(self.kept_scores),
                "dropped_negative": describe(self.dropped_scores),
            },
        }

    def summary_lines(self) -> list[str]:
        d = self.as_dict()
        rank = d["positive_rank"]
        missing = rank[f"not_retrieved_in_top_{self.range_end}"]
        lines = [
            f"mined {self.queries} queries: {self.negatives_kept} negatives kept "
            f"({self.negatives_kept / max(1, self.queries):.1f} per query, {self.wanted} wanted)",
            "dropped: " + (", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"),
            f"queries short of negatives: {len(self.short_queries)}, with none at all: {self.queries_without_negatives}"
            + (f" (backfilled {self.backfilled} random negatives)" if self.backfilled else " (no backfill)"),
            f"positive rank under the miner: median {rank.get('median', 0):.0f}, at rank 1 {rank['at_rank_1']:.1%}, "
            f"not retrieved in the top {self.range_end}: {missing} of {self.positives}",
        ]
        if missing:
            lines.append("  a positive the miner does not rank in the top range is a labelling smell: see positive_rank in the report")
        if self.relative_rules_skipped:
            lines.append(f"  ratio/window rules skipped for {self.relative_rules_skipped} positive(s) scoring <= 0")
        return lines
