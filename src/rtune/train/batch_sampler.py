"""Batches without disguised positives: no row's passage is a known positive of another row's query.

The contrastive loss treats every other passage in the batch as a negative of each query. With several
positives per query (or several questions on one passage, as in SQuAD) a plain shuffle puts a query's
other positive into the batch as someone else's positive or negative. This sampler fills each batch in a
seeded order and defers a row that would bring such a conflict (or the same passage twice) to a later
batch, as sentence-transformers' NoDuplicatesBatchSampler does for duplicates. The dataset holds one block
of rows per epoch (fresh negatives); epoch e draws from block e.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence, Sized

from sentence_transformers.base.sampler import DefaultBatchSampler

from rtune.train.examples import RowKeys


def _fits(row: RowKeys, texts: set[int], known: set[int]) -> bool:
    """No shared passage, none of the row's passages is a batch query's positive, and no batch passage
    is a positive of the row's query."""
    return row.texts.isdisjoint(texts) and row.texts.isdisjoint(known) and row.known_positives.isdisjoint(texts)


def plan_batches(keys: Sequence[RowKeys], indices: list[int], batch_size: int) -> list[list[int]]:
    """Greedy batches over `indices` (in this order), each conflict-free. A row that conflicts waits in a
    queue that the next batches try first, so every row is used once and the order stays seeded."""
    pending: list[int] = []
    cursor, batches = 0, []
    while pending or cursor < len(indices):
        batch: list[int] = []
        texts: set[int] = set()
        known: set[int] = set()
        still_pending: list[int] = []

        def offer(index: int) -> bool:
            row = keys[index]
            if len(batch) < batch_size and _fits(row, texts, known):
                batch.append(index)
                texts.update(row.texts)
                known.update(row.known_positives)
                return True
            return False

        for index in pending:
            if not offer(index):
                still_pending.append(index)
        while len(batch) < batch_size and cursor < len(indices):
            if not offer(indices[cursor]):
                still_pending.append(indices[cursor])
            cursor += 1
        pending = still_pending
        batches.append(batch)
    return batches


def no_conflicts(rows: Sized) -> list[RowKeys]:
    """One never-conflicting key per row: for losses that see only each row's own texts (no in-batch
    negatives, a cross-encoder), the sampler then yields a plain seeded shuffle of the epoch's block."""
    return [RowKeys(frozenset(), frozenset())] * len(rows)


class KnownPositiveBatchSampler(DefaultBatchSampler):
    """`batch_sampler` for sentence-transformers' trainer: conflict-free batches of the current epoch's block.

    Build it with `functools.partial(KnownPositiveBatchSampler, keys=..., rows_per_epoch=..., blocks=...)`;
    the trainer passes the dataset, batch size, drop_last and seed, and calls `set_epoch` every epoch.
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, keys: Sequence[RowKeys], rows_per_epoch: int,
                 blocks: int = 1, valid_label_columns=None, generator=None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        if len(keys) != rows_per_epoch * blocks:
            raise ValueError(f"{len(keys)} row keys for {blocks} block(s) of {rows_per_epoch} rows")
        self.keys, self.rows_per_epoch, self.blocks = keys, rows_per_epoch, blocks
        self._plans: dict[int, list[list[int]]] = {}

    def plan(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` (deterministic for the seed)."""
        if epoch not in self._plans:
            start = (epoch % self.blocks) * self.rows_per_epoch
            order = list(range(start, start + self.rows_per_epoch))
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
            batches = plan_batches(self.keys, order, self.batch_size)
            if self.drop_last:
                batches = [b for b in batches if len(b) == self.batch_size]
            self._plans = {epoch: batches}  # keep one epoch's plan
        return self._plans[epoch]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.plan(self.epoch)

    def __len__(self) -> int:
        return len(self.plan(self.epoch)) if self.rows_per_epoch else 0

    def mean_batch_size(self, epoch: int = 0) -> float:
        batches = self.plan(epoch)
        return sum(map(len, batches)) / max(1, len(batches))
