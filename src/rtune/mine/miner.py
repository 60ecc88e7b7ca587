"""Per-query mining: one query's ranked candidates -> a training group (known positives and likely false
negatives dropped by named, counted rules, negatives sampled from the rank range, mixed with a previous round's,
backfilled when asked), recorded in the mining report."""

from __future__ import annotations

import random
from dataclasses import dataclass

from rtune.data.dataset import RetrievalDataset, normalize_text, text_digest
from rtune.data.records import TrainingGroup
from rtune.mine.config import MineConfig
from rtune.mine.filters import PositiveAwareRules
from rtune.mine.report import MiningReport
from rtune.mine.sampling import Candidate, RankRange, select_negatives


@dataclass(frozen=True, slots=True)
class Negative:
    """A chosen negative: rank under the current miner (0: not in its ranking), its score, where it came from."""

    doc_id: str
    rank: int
    score: float | None
    source: str


def known_positives(dataset: RetrievalDataset, split: str) -> dict[str, frozenset[str]]:
    """Query id -> its positives and those of every query in the split with the same normalised text
    (generic questions recur: one copy's positive must not become the other's hard negative)."""
    by_text: dict[str, set[str]] = {}
    table = dataset.require_split(split)
    for qid in table:
        by_text.setdefault(normalize_text(dataset.queries[qid].text), set()).update(dataset.positives(split, qid))
    return {qid: frozenset(by_text[normalize_text(dataset.queries[qid].text)]) for qid in table}


class Miner:
    """Turns one query's ranked candidates into a training group and records the outcome."""

    def __init__(self, config: MineConfig, dataset: RetrievalDataset, rank_range: RankRange, source_name: str,
                 previous: dict[str, TrainingGroup], texts: dict[str, str]) -> None:
        self.config, self.dataset, self.rank_range, self.source_name = config, dataset, rank_range, source_name
        self.previous = previous
        self.doc_ids = list(dataset.corpus)
        self.texts = texts  # doc id -> the text retrieval sees (the document text rule)
        self.position = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        self.text_key = {doc_id: text_digest(text) for doc_id, text in texts.items()}
        self.filter = config.false_negative_filter()
        self.report = MiningReport(wanted=config.negatives, range_end=rank_range.end, corpus_size=len(self.doc_ids))
        self.known = known_positives(dataset, config.split)

    def previous_ids(self, qid: str) -> list[str]:
        old = self.previous.get(qid)
        return [d for d in old.neg_ids if d in self.position] if old else []

    def given_positions(self, qid: str) -> list[int]:
        """Corpus positions to score beside the ranking: the positives, then the previous round's negatives."""
        return [self.position[d] for d in self.dataset.positives(self.config.split, qid) + self.previous_ids(qid)]

    def group(self, qid: str, positions, scores, given_scores: list[float]) -> TrainingGroup:
        config = self.config
        positives = self.dataset.positives(config.split, qid)
        pos_scores, previous_scores = given_scores[: len(positives)], given_scores[len(positives) :]
        known_ids = self.known[qid]  # its own positives and those of every query with the same text
        known_texts = {self.text_key[d] for d in known_ids}
        known = [("known_positive_id", lambda c: c.doc_id in known_ids),
                 ("identical_positive_text", lambda c: self.text_key[c.doc_id] in known_texts)]
        per_positive = PositiveAwareRules(self.filter, pos_scores)
        rules = known + per_positive.rules
        ranked = [Candidate(self.doc_ids[i], rank, float(s)) for rank, (i, s) in enumerate(zip(positions, scores), start=1) if i >= 0]
        rng = random.Random(f"{config.seed}:{qid}")
        selection = select_negatives(ranked, self.rank_range, config.negatives, config.strategy, rng, rules)
        chosen = self._with_previous(qid, selection.negatives, previous_scores, ranked, rules, rng)
        kept = len(chosen)
        chosen += self._backfill(chosen, known, rng)
        rank_of = {c.doc_id: c.rank for c in ranked}
        self.report.add(qid, kept, selection.dropped_counts(), [rank_of.get(d) for d in positives], pos_scores,
                        [n.score for n in chosen if n.source == self.source_name],
                        [c.score for rule, c in selection.dropped if rule not in ("known_positive_id", "identical_positive_text")],
                        relative_skipped=sum(s <= 0 for s in pos_scores) if self.filter.relative() else 0)
        self.report.backfilled += len(chosen) - kept
        self.report.finish_query(len(chosen))
        chosen.sort(key=lambda n: (n.rank <= 0, n.rank))  # ranked negatives by rank, then unranked ones
        valid = self._valid_positives(chosen, per_positive, len(positives))
        return TrainingGroup(
            query=self.dataset.queries[qid].text,
            pos=tuple(self.texts[d] for d in positives),
            neg=tuple(self.texts[n.doc_id] for n in chosen),
            query_id=qid,
            pos_ids=tuple(positives),
            neg_ids=tuple(n.doc_id for n in chosen),
            pos_miner_scores=tuple(pos_scores),
            neg_miner_scores=tuple(n.score for n in chosen),
            neg_ranks=tuple(n.rank for n in chosen),
            neg_sources=tuple(n.source for n in chosen),
            neg_valid_pos=valid,
        )

    @staticmethod
    def _valid_positives(chosen: list[Negative], per_positive: PositiveAwareRules, n_pos: int) -> tuple[tuple[int, ...], ...]:
        """Per negative, the positives it may be trained against; () when every negative suits every positive.
        A backfilled negative (no score) suits every positive."""
        everyone = tuple(range(n_pos))
        valid = tuple(everyone if n.score is None else per_positive.valid_positives(Candidate(n.doc_id, n.rank, n.score))
                      for n in chosen)
        return () if all(v == everyone for v in valid) else valid

    def _with_previous(self, qid: str, fresh: list[Candidate], previous_scores: list[float], ranked: list[Candidate],
                       rules, rng: random.Random) -> list[Negative]:
        """Up to `previous_fraction` of the negatives from the previous round (passing the current rules,
        scored by the current miner, keeping their source tag), the rest from this round's sample."""
        wanted = self.config.negatives
        fresh_negatives = [Negative(c.doc_id, c.rank, c.score, self.source_name) for c in fresh]
        old = self.previous.get(qid)
        if old is None:
            return fresh_negatives[:wanted]
        sources = dict(zip(old.neg_ids, old.neg_sources or ["previous"] * len(old.neg_ids)))
        rank_of = {c.doc_id: c.rank for c in ranked}
        admissible = []
        for doc_id, score in zip(self.previous_ids(qid), previous_scores):
            candidate = Candidate(doc_id, rank_of.get(doc_id, 0), score)
            if not any(rejects(candidate) for _, rejects in rules):
                admissible.append(Negative(doc_id, candidate.rank, score, sources[doc_id]))
        take = rng.sample(admissible, min(round(wanted * self.config.previous_fraction), len(admissible)))
        taken = {n.doc_id for n in take}
        rest = [n for n in fresh_negatives if n.doc_id not in taken]
        if self.config.strategy != "top":
            rng.shuffle(rest)  # `fresh` is a random sample kept in rank order: any prefix must stay random
        return take + rest[: wanted - len(take)]

    def _backfill(self, chosen: list[Negative], known, rng: random.Random) -> list[Negative]:
        """Random corpus documents (source 'random', rank 0, score null) when asked and too few survived."""
        need = self.config.negatives - len(chosen)
        if need <= 0 or self.config.backfill == "none":
            return []
        taken, added = {n.doc_id for n in chosen}, []
        for _ in range(20 * need):
            doc_id = self.doc_ids[rng.randrange(len(self.doc_ids))]
            if doc_id in taken or any(rejects(Candidate(doc_id, 0, 0.0)) for _, rejects in known):
                continue
            added.append(Negative(doc_id, 0, None, "random"))
            taken.add(doc_id)
            if len(added) == need:
                break
        return added
