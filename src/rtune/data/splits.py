"""Leak-free train/dev/test splits, by query or by group, and the cross-split report."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from rtune.data.dataset import SPLITS, RetrievalDataset, normalize_text
from rtune.data.records import Qrels
from rtune.errors import InputError

SplitBy = Literal["query", "group"]


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of units (queries or groups) per split; they must sum to 1. A 0 leaves the split out."""

    train: float = 0.7
    dev: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        values = {"train": self.train, "dev": self.dev, "test": self.test}
        for split, value in values.items():
            if not 0.0 <= value <= 1.0:
                raise InputError(f"split fraction '{split}' must be between 0 and 1, got {value}")
        if self.train <= 0:
            raise InputError("the train fraction must be above 0")
        if abs(sum(values.values()) - 1.0) > 1e-6:
            raise InputError(f"split fractions must sum to 1, got {sum(values.values()):.4f} ({values})")

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


@dataclass
class SplitReport:
    """What a person checks after splitting: sizes, texts seen in several splits, true leaks."""

    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    shared_texts: list[dict] = field(default_factory=list)  # same text, different positives: legitimate
    leaks: list[dict] = field(default_factory=list)  # same text and same positive: a true leak

    def as_dict(self) -> dict:
        return {
            "sizes": self.sizes,
            "queries_texts_in_several_splits": len(self.shared_texts),
            "examples_texts_in_several_splits": self.shared_texts[:20],
            "true_leaks": len(self.leaks),
            "examples_true_leaks": self.leaks[:20],
        }


def _unit_counts(n: int, fractions: SplitFractions, by: str) -> dict[str, int]:
    counts = {}
    for split in ("dev", "test"):
        fraction = getattr(fractions, split)
        counts[split] = round(fraction * n) if fraction > 0 else 0
        if fraction > 0 and counts[split] == 0:
            raise InputError(f"split fraction {split}={fraction} leaves the '{split}' split empty ({n} {by} units)")
    counts["train"] = n - counts["dev"] - counts["test"]
    if counts["train"] <= 0:
        raise InputError(f"split fractions leave the 'train' split empty ({n} {by} units)")
    return counts


def _positive_texts(dataset: RetrievalDataset, judged: dict[str, int]) -> frozenset[str]:
    return frozenset(normalize_text(dataset.corpus[d].text or dataset.corpus[d].title) for d, r in judged.items() if r > 0)


def query_units(dataset: RetrievalDataset, pooled: Qrels) -> dict[str, list[str]]:
    """Queries that must share a split, by the relation the leak check uses: the same normalised text
    and any shared positive text (so {d0} and {d0, d1}, or a duplicate passage under another id, join).
    Union-find over (text, positive text) keys; each unit is keyed by its smallest member id."""
    parent = {qid: qid for qid in pooled}

    def find(qid: str) -> str:
        while parent[qid] != qid:
            parent[qid] = parent[parent[qid]]
            qid = parent[qid]
        return qid

    first_with: dict[tuple[str, str], str] = {}
    for qid, judged in pooled.items():
        text = normalize_text(dataset.queries[qid].text)
        for positive in sorted(_positive_texts(dataset, judged)):
            other = first_with.setdefault((text, positive), qid)
            root_a, root_b = find(qid), find(other)
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)
    units: dict[str, list[str]] = {}
    for qid in pooled:
        units.setdefault(find(qid), []).append(qid)
    return units


def split_dataset(dataset: RetrievalDataset, fractions: SplitFractions, by: SplitBy = "group", seed: int = 42) -> RetrievalDataset:
    """Pool every judged query and re-split it. By group, no group straddles two splits; by query,
    queries that the leak check would pair (same text, a shared positive text) stay together."""
    pooled: Qrels = {}
    for table in dataset.qrels.values():
        pooled.update(table)
    if by == "group":
        units: dict[str, list[str]] = {}
        for qid in pooled:
            group = dataset.queries[qid].group
            if not group:
                raise InputError(f"query '{qid}' has no group; split by query instead", dataset.name or None)
            units.setdefault(group, []).append(qid)
    elif by == "query":
        units = query_units(dataset, pooled)
    else:
        raise InputError(f"unknown split mode '{by}'; valid: group, query")
    keys = sorted(units)
    random.Random(seed).shuffle(keys)
    counts = _unit_counts(len(keys), fractions, by)
    qrels: dict[str, Qrels] = {}
    start = 0
    for split in SPLITS:
        chosen = keys[start : start + counts[split]]
        start += counts[split]
        if chosen:
            members = {qid for key in chosen for qid in units[key]}
            qrels[split] = {qid: pooled[qid] for qid in pooled if qid in members}
    return RetrievalDataset(corpus=dataset.corpus, queries=dataset.queries, qrels=qrels, name=dataset.name,
                            dropped=dataset.dropped)


def cross_split_report(dataset: RetrievalDataset) -> SplitReport:
    """Find query texts judged in more than one split and tell legitimate repeats from true leaks."""
    report = SplitReport()
    by_text: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
    for split, table in dataset.qrels.items():
        report.sizes[split] = {"queries": len(table), "judgements": sum(len(j) for j in table.values())}
        for qid, judged in table.items():
            positives = _positive_texts(dataset, judged)
            by_text.setdefault(normalize_text(dataset.queries[qid].text), []).append((split, qid, positives))
    for text, entries in by_text.items():
        splits = {split for split, _, _ in entries}
        if len(splits) < 2:
            continue
        report.shared_texts.append({"text": text, "queries": {qid: split for split, qid, _ in entries}})
        for i, (split_a, qid_a, pos_a) in enumerate(entries):
            for split_b, qid_b, pos_b in entries[i + 1 :]:
                if split_a != split_b and pos_a & pos_b:
                    report.leaks.append({"text": text, split_a: qid_a, split_b: qid_b})
    return report


def check_leaks(report: SplitReport, allow_leaks: bool, where: str | None = None) -> None:
    """Refuse true leaks (same text, same positive, two splits) unless the user allows them."""
    if report.leaks and not allow_leaks:
        first = report.leaks[0]
        raise InputError(
            f"{len(report.leaks)} true leak(s): the same query text with the same positive passage is judged in "
            f"two splits, e.g. {first}. Re-split (e.g. --split-by group) or pass --allow-leaks",
            where,
        )
