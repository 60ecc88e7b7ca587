"""A ranker that puts the same document first for a large share of the queries: the sign of collapsed embeddings
(every vector pointing one way, so a few "hub" documents win everywhere), which the metrics alone show only as a
very low score, indistinguishable from a hard task."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

from rtune.data.run_file import ranked

log = logging.getLogger(__name__)


def most_common_share(tops: Iterable[Hashable]) -> float:
    """The share of the most common item of `tops` (each query's first document, or its top-k as a frozenset)."""
    counts = Counter(tops)
    total = sum(counts.values())
    return counts.most_common(1)[0][1] / total if total else 0.0


def shared_top_share(run: Mapping[str, Mapping[str, float]], k: int = 1) -> float:
    """The share of queries whose top `k` documents (as a set) are the most common top `k` of the run."""
    return most_common_share(frozenset(d for d, _ in ranked(docs)[:k]) for docs in run.values() if docs)


def collapse_threshold(documents: int, floor: float = 0.25, spread: float = 5.0) -> float:
    """The top-1 share above which a ranking of `documents` candidates looks collapsed: `floor`, or more for a small
    corpus (`spread` x the share one document would get if the first places were spread evenly over them)."""
    return max(floor, spread / max(1, documents))


def looks_collapsed(share: float, queries: int, documents: int, min_queries: int = 20) -> bool:
    """Whether a top-1 `share` over `queries` queries and `documents` candidates is the sign of collapse."""
    return queries >= min_queries and share > collapse_threshold(documents)


def collapse_warning(ranker_name: str, share: float, queries: int) -> str:
    return (f"{ranker_name} ranks one document first for {100 * share:.0f}% of the {queries} queries: its embeddings have "
            "probably collapsed (e.g. a learning rate too high for this model)")


def warn_if_collapsed(run: Mapping[str, Mapping[str, float]], ranker_name: str, min_queries: int = 20) -> float:
    """Log a warning when one document comes first for more than collapse_threshold of (at least `min_queries`)
    queries; return that share."""
    share = shared_top_share(run, 1)
    documents = len({d for docs in run.values() for d in docs})
    if looks_collapsed(share, len(run), documents, min_queries):
        log.warning("%s; its metrics say little", collapse_warning(ranker_name, share, len(run)))
    return share
