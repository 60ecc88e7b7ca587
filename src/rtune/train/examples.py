"""Training groups -> rows of (anchor, positive, negative_1..negative_k) for every epoch.

Every (query, positive) pair is a row in every epoch (`positives="all"`), or one positive per query per
epoch, cycling so that every positive is reached over the epochs (`positives="sample"`, FlagEmbedding's
way). Each epoch draws its `group_size - 1` negatives afresh from the query's mined pool, seeded by
(seed, query, positive, epoch), as FlagEmbedding's `train_group_size` does. A negative is drawn for a
positive only when the miner's per-positive filter allowed it (`neg_valid_pos`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import Literal

from rtune.data.dataset import normalize_text, text_digest
from rtune.data.records import TrainingGroup
from rtune.errors import DataCollapsedError

log = logging.getLogger(__name__)

PositiveMode = Literal["all", "sample"]


def text_key(text: str) -> int:
    """A compact key of a text up to case and whitespace (for batch conflicts): the mining digest as an int."""
    return int.from_bytes(text_digest(text), "little")


@dataclass(frozen=True, slots=True)
class RowKeys:
    """What a batch sampler needs to know of a row: the passages it brings into the batch, and the known
    positives of its query (which must not appear in the batch as anyone's passage)."""

    texts: frozenset[int]
    known_positives: frozenset[int]


@dataclass
class TrainingRows:
    """Column-oriented rows for `epochs` epochs, epoch after epoch (`rows_per_epoch` each), and their keys."""

    columns: dict[str, list]
    keys: list[RowKeys]
    rows_per_epoch: int
    epochs: int
    counts: dict[str, int] = field(default_factory=dict)


def no_conflicts(rows: Sized) -> list[RowKeys]:
    """One never-conflicting key per row: for losses that see only each row's own texts (no in-batch
    negatives, a cross-encoder), the batch sampler then yields a plain seeded shuffle of the epoch's block."""
    return [RowKeys(frozenset(), frozenset())] * len(rows)


def _valid_negatives(group: TrainingGroup, positive: int) -> list[int]:
    if not group.neg_valid_pos:
        return list(range(len(group.neg)))
    return [i for i, allowed in enumerate(group.neg_valid_pos) if positive in allowed]


def _draw(pool: list[int], n: int, rng: random.Random) -> tuple[list[int], bool]:
    """`n` indices from `pool`: a sample without replacement, or the pool repeated when it is too small."""
    if len(pool) >= n:
        return rng.sample(pool, n), False
    drawn = (pool * (n // len(pool) + 1))[:n]
    rng.shuffle(drawn)
    return drawn, True


def build_rows(groups: Sequence[TrainingGroup], group_size: int, seed: int, epochs: int = 1,
               positives: PositiveMode = "all", teacher_scores: bool = False,
               rows_like_group_size: int | None = None) -> TrainingRows:
    """Rows for every epoch. Positives without an allowed negative are skipped when negatives are wanted
    (counted); queries with too few negatives reuse theirs (counted). With `teacher_scores`, a `label`
    column holds each row's teacher scores [positive, negative_1, ...] (for distillation losses)."""
    n_neg = group_size - 1
    # which (query, positive) pairs make rows: those a run with `rows_like_group_size` trains (pairs with an allowed
    # negative), for an equal-budget control that trains the same rows with in-batch negatives only
    needs_negatives = (rows_like_group_size or group_size) > 1
    names = ["anchor", "positive", *(f"negative_{i + 1}" for i in range(n_neg))]
    columns: dict[str, list] = {name: [] for name in names + (["label"] if teacher_scores else [])}
    known_by_text: dict[str, set[int]] = {}
    for group in groups:
        known_by_text.setdefault(normalize_text(group.query), set()).update(text_key(p) for p in group.pos)
    counts = {"queries": len(groups), "positives": sum(len(g.pos) for g in groups), "queries_without_negatives": 0,
              "positives_without_allowed_negatives": 0, "padded_rows": 0}
    plans: list[tuple[int, list[int]]] = []  # (group index, trainable positive indices)
    for index, group in enumerate(groups):
        if needs_negatives and not group.neg:
            counts["queries_without_negatives"] += 1
            continue
        trainable = [p for p in range(len(group.pos)) if not needs_negatives or _valid_negatives(group, p)]
        counts["positives_without_allowed_negatives"] += len(group.pos) - len(trainable)
        if trainable:
            plans.append((index, trainable))
    keys: list[RowKeys] = []
    for epoch in range(epochs):
        for index, trainable in plans:
            group = groups[index]
            qid = group.query_id or str(index)
            if positives == "all":
                chosen = trainable
            else:
                order = trainable[:]
                random.Random(f"{seed}:{qid}:positives").shuffle(order)
                chosen = [order[epoch % len(order)]]
            known = frozenset(known_by_text[normalize_text(group.query)])
            for p in chosen:
                rng = random.Random(f"{seed}:{qid}:{p}:{epoch}")
                drawn, padded = _draw(_valid_negatives(group, p), n_neg, rng) if n_neg else ([], False)
                counts["padded_rows"] += padded
                texts = [group.pos[p], *(group.neg[i] for i in drawn)]
                for name, text in zip(names, [group.query, *texts]):
                    columns[name].append(text)
                if teacher_scores:
                    columns["label"].append([group.pos_scores[p], *(group.neg_scores[i] for i in drawn)])
                keys.append(RowKeys(frozenset(text_key(t) for t in texts), known))
    rows_per_epoch = len(keys) // epochs if epochs else 0
    counts["rows_per_epoch"] = rows_per_epoch
    counts["rows"] = rows_per_epoch  # one epoch's rows (the figure reported as "training rows")
    return TrainingRows(columns=columns, keys=keys, rows_per_epoch=rows_per_epoch, epochs=epochs, counts=counts)


def check_rows(rows: TrainingRows, group_size: int, allow_collapsed: bool, source: str) -> None:
    """Stop when the training data collapsed: most queries without negatives, or far fewer rows than queries."""
    counts = rows.counts
    queries, per_epoch = counts["queries"], rows.rows_per_epoch
    if per_epoch == 0:
        raise DataCollapsedError(f"no training rows from {source}: every query lacks negatives "
                                 "(use --group-size 1 for in-batch negatives only)")
    problems = []
    if counts["queries_without_negatives"] * 2 > queries:
        problems.append(f"{counts['queries_without_negatives']} of {queries} queries have no negative")
    if per_epoch * 2 < queries:
        problems.append(f"{per_epoch} training rows for {queries} queries")
    if not problems:
        if counts["queries_without_negatives"]:
            log.warning("skipped %d queries with no negatives", counts["queries_without_negatives"])
        return
    message = f"training data from {source} collapsed: {'; '.join(problems)} (group size {group_size})"
    if not allow_collapsed:
        raise DataCollapsedError(message + ". Mine more negatives, use --group-size 1, or pass --allow-collapsed to train anyway")
    log.warning("%s; training anyway (--allow-collapsed)", message)
