"""Training groups -> rows of (anchor, positive, negative_1..negative_k) for the contrastive loss."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence

from rtune.data.records import TrainingGroup

log = logging.getLogger(__name__)


def sample_queries(groups: Sequence[TrainingGroup], max_queries: int | None, seed: int) -> list[TrainingGroup]:
    """A seeded sample of at most `max_queries` groups (all of them, in file order, when no cap)."""
    if max_queries is None or max_queries >= len(groups):
        return list(groups)
    chosen = sorted(random.Random(seed).sample(range(len(groups)), max_queries))
    return [groups[i] for i in chosen]


def build_rows(groups: Iterable[TrainingGroup], group_size: int, seed: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Column-oriented rows: one positive and `group_size - 1` negatives per query, seeded per query.

    Queries without negatives are skipped when negatives are wanted; queries with too few reuse theirs
    (as FlagEmbedding does). Returns the columns and counts of what was skipped or padded.
    """
    n_neg = group_size - 1
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(n_neg)}}
    counts = {"rows": 0, "skipped_no_negatives": 0, "padded_few_negatives": 0}
    for index, group in enumerate(groups):
        rng = random.Random(f"{seed}:{group.query_id or index}")
        if n_neg and not group.neg:
            counts["skipped_no_negatives"] += 1
            continue
        if len(group.neg) >= n_neg:
            negatives = rng.sample(list(group.neg), n_neg)
        else:
            counts["padded_few_negatives"] += 1
            negatives = (list(group.neg) * (n_neg // len(group.neg) + 1))[:n_neg]
            rng.shuffle(negatives)
        columns["anchor"].append(group.query)
        columns["positive"].append(rng.choice(group.pos))
        for i, negative in enumerate(negatives):
            columns[f"negative_{i + 1}"].append(negative)
        counts["rows"] += 1
    if counts["skipped_no_negatives"]:
        log.warning("skipped %d queries with no negatives", counts["skipped_no_negatives"])
    if counts["padded_few_negatives"]:
        log.info("%d queries had fewer than %d negatives and reuse theirs", counts["padded_few_negatives"], n_neg)
    return columns, counts
