"""Batches without disguised positives: no row's passage is a known positive of another row's query.

The contrastive loss treats every other passage in the batch as a negative of each query. With several
positives per query (or several questions on one passage, as in SQuAD) a plain shuffle puts a query's
other positive into the batch as someone else's positive or negative. This sampler fills each batch in a
seeded order and defers a row that would bring such a conflict (or the same passage twice) to a later
batch, as sentence-transformers' NoDuplicatesBatchSampler does for duplicates. The dataset holds one block
of rows per epoch (fresh negatives); epoch e draws from block e.

Every epoch has the same number of batches. Deferred rows can make one epoch's plan longer than another's, and
transformers' Trainer (5.x) counts every epoch with the length the dataloader has at the start: it takes exactly
that many batches from each epoch (a longer epoch's extra batches are never trained, a shorter one ends early),
sizes the LR schedule (max_steps) by it, and maps a checkpoint's global step to (epoch, batch) by dividing by it.
So the sampler plans all epochs, and an epoch with fewer batches than the longest splits its largest batches in
two until it has as many (a split batch stays conflict-free); its length is then true for every epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

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


def split_to(batches: list[list[int]], count: int) -> list[list[int]]:
    """`batches` as `count` batches: the largest one (the last of equals) is halved, in place, until there are
    as many; order and rows kept. Needs at least `count` rows."""
    batches = [list(b) for b in batches]
    while len(batches) < count:
        largest = max(range(len(batches)), key=lambda i: (len(batches[i]), i))
        batch = batches[largest]
        if len(batch) < 2:
            raise ValueError(f"{sum(map(len, batches))} rows cannot fill {count} batches")
        half = (len(batch) + 1) // 2
        batches[largest:largest + 1] = [batch[:half], batch[half:]]
    return batches


class KnownPositiveBatchSampler(DefaultBatchSampler):
    """`batch_sampler` for sentence-transformers' trainer: conflict-free batches of the current epoch's block,
    as many in every epoch (see the module's note).

    Build it with `functools.partial(KnownPositiveBatchSampler, keys=..., rows_per_epoch=..., blocks=...)`;
    the trainer passes the dataset, batch size, drop_last and seed, and calls `set_epoch` every epoch. The
    training runs `blocks` epochs (rtune builds one block of rows per epoch).
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, keys: Sequence[RowKeys], rows_per_epoch: int,
                 blocks: int = 1, valid_label_columns=None, generator=None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        if len(keys) != rows_per_epoch * blocks:
            raise ValueError(f"{len(keys)} row keys for {blocks} block(s) of {rows_per_epoch} rows")
        self.keys, self.rows_per_epoch, self.blocks = keys, rows_per_epoch, blocks
        self._plans: dict[int, list[list[int]]] = {}
        self._length: int | None = None

    def greedy_plan(self, epoch: int) -> list[list[int]]:
        """The conflict-free batches of `epoch` as the greedy fill makes them (their number varies by epoch)."""
        start = (epoch % self.blocks) * self.rows_per_epoch
        order = list(range(start, start + self.rows_per_epoch))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        batches = plan_batches(self.keys, order, self.batch_size)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def batches_per_epoch(self) -> int:
        """The batch count of every epoch: the longest greedy plan's (the shortest's with drop_last, whose batches
        stay full: a longer epoch then drops its last full batches too)."""
        if self._length is None:
            lengths = [len(self.greedy_plan(e)) for e in range(self.blocks)] if self.rows_per_epoch else [0]
            self._length = min(lengths) if self.drop_last else max(lengths)
        return self._length

    def plan(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` (deterministic for the seed), `batches_per_epoch()` of them."""
        if epoch not in self._plans:
            batches, count = self.greedy_plan(epoch), self.batches_per_epoch()
            if len(batches) > count and not self.drop_last:  # only past the planned epochs
                raise ValueError(f"epoch {epoch} needs {len(batches)} batches, more than the {count} of the "
                                 f"{self.blocks} planned epoch(s): train at most {self.blocks} epochs")
            batches = batches[:count] if self.drop_last else split_to(batches, count)
            self._plans = {epoch: batches}  # keep one epoch's plan
        return self._plans[epoch]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.plan(self.epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch()
