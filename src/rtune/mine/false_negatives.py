"""An estimate of the false negatives a miner kept: a stronger scorer (a cross-encoder, an LLM reranker, or a
bi-encoder) reads a seeded sample of the training groups, and the share of negatives it scores above the query's
best positive is reported, with the most suspicious examples to read. Mined negatives that a good reranker prefers
to the labelled positive are usually unlabelled positives: training pushes them away from the query."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from rtune.data.records import TrainingGroup
from rtune.models.rerankers.batching import score_pairs
from rtune.models.rerankers.protocol import Reranker

EXAMPLES = 10


def sample_query_ids(query_ids: Sequence[str], n: int, seed: int) -> set[str]:
    """A seeded sample of at most `n` query ids (all when there are fewer)."""
    ids = sorted(query_ids)
    return set(ids) if n >= len(ids) else set(random.Random(f"{seed}:false-negatives").sample(ids, n))


def estimate(groups: Sequence[TrainingGroup], checker: Reranker, batch_size: int = 32) -> dict:
    """The share of the groups' negatives `checker` scores above their query's best positive, with the sample's size,
    the share per negative source and the most suspicious negatives (query, positive, negative, both scores)."""
    pairs: list[tuple[str, str]] = []
    spans = []
    for group in groups:
        start = len(pairs)
        pairs += [(group.query, text) for text in (*group.pos, *group.neg)]
        spans.append((start, len(group.pos), len(group.neg)))
    scores = score_pairs(checker, pairs, batch_size) if pairs else np.zeros(0)  # (n_pairs,)
    above, total, by_source, suspicious = 0, 0, {}, []
    for group, (start, n_pos, n_neg) in zip(groups, spans):
        positives = scores[start:start + n_pos]
        best = int(np.argmax(positives))
        for i in range(n_neg):
            score = float(scores[start + n_pos + i])
            source = group.neg_sources[i] if group.neg_sources else "mined"
            seen = by_source.setdefault(source, [0, 0])
            seen[1] += 1
            total += 1
            if score > positives[best]:
                above += 1
                seen[0] += 1
                suspicious.append({"query_id": group.query_id, "query": group.query, "positive": group.pos[best],
                                   "negative": group.neg[i], "negative_id": group.neg_ids[i] if group.neg_ids else None,
                                   "negative_rank": group.neg_ranks[i] if group.neg_ranks else None,
                                   "positive_score": round(float(positives[best]), 4), "negative_score": round(score, 4)})
    suspicious.sort(key=lambda s: s["positive_score"] - s["negative_score"])
    return {"checker": checker.name, "queries": len(groups), "negatives": total,
            "share_above_best_positive": round(above / total, 4) if total else None,
            "by_source": {s: round(a / n, 4) for s, (a, n) in by_source.items()},
            "examples": suspicious[:EXAMPLES]}
