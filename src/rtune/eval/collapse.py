"""A ranker that puts the same document first for a large share of the queries: the sign of collapsed embeddings
(every vector pointing one way, so a few "hub" documents win everywhere), which the metrics alone show only as a
very low score, indistinguishable from a hard task."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

log = logging.getLogger(__name__)


def shared_top_share(run: Mapping[str, Mapping[str, float]], k: int = 1) -> float:
    """The share of queries whose top `k` documents (as a set) are the most common top `k` of the run."""
    tops = [frozenset(sorted(docs, key=lambda d: (-docs[d], d))[:k]) for docs in run.values() if docs]
    if not tops:
        return 0.0
    return Counter(tops).most_common(1)[0][1] / len(tops)


def collapse_threshold(run: Mapping[str, Mapping[str, float]], floor: float = 0.25, spread: float = 5.0) -> float:
    """The top-1 share above which a run looks collapsed: `floor`, or more for a small corpus (`spread` x the share
    one document would get if the first places were spread evenly over the documents the run returns)."""
    documents = {d for docs in run.values() for d in docs}
    return max(floor, spread / max(1, len(documents)))


def warn_if_collapsed(run: Mapping[str, Mapping[str, float]], ranker_name: str, min_queries: int = 20) -> float:
    """Log a warning when one document comes first for more than collapse_threshold of (at least `min_queries`)
    queries; return that share."""
    share = shared_top_share(run, 1)
    if len(run) >= min_queries and share > collapse_threshold(run):
        log.warning("%s ranks one document first for %.0f%% of the %d queries: its embeddings have probably collapsed "
                    "(e.g. a learning rate too high for this model); its metrics say little", ranker_name, 100 * share, len(run))
    return share
