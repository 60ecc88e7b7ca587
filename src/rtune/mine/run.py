"""Stage `mine`: training groups for the train queries, negatives sampled from a miner's rank range.

BM25 or a dense model ranks the corpus; known positives and likely false negatives are dropped by named,
counted rules; `--negatives` are sampled from `--range`; groups are written as each query batch is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator
from tqdm.auto import tqdm

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset, normalize_text
from rtune.data.groups import GROUPS_FILE, group_writer, groups_path, read_groups
from rtune.data.manifest import write_manifest
from rtune.data.records import TrainingGroup
from rtune.errors import InputError, check_choice
from rtune.index.dense_search import INDEX_TYPES
from rtune.mine.filters import FalseNegativeFilter, parse_window
from rtune.mine.report import MiningReport
from rtune.mine.sampling import STRATEGIES, Candidate, RankRange, select_negatives
from rtune.mine.source import BM25Source, CandidateSource, DenseSource
from rtune.models.encoder_options import EncoderOptions

log = logging.getLogger(__name__)

REPORT_FILE = "mining_report.json"
BACKFILL = ("none", "random")


class MineConfig(EncoderOptions):
    """Everything `rtune mine` needs (encoder options apply to `--method dense`)."""

    dataset: Path
    output: Path
    method: str = Field("bm25", description="miner: bm25 or dense (needs --model)")
    model: str | None = Field(None, description="dense miner: model folder or hub id (e.g. the previous stage)")
    split: str = "train"
    range: str = Field("2-200", description="1-based inclusive rank range to sample from")
    negatives: int = Field(15, ge=1, description="negatives per query")
    strategy: str = Field("random", description=f"how to pick within the range: {', '.join(STRATEGIES)}")
    window: str = Field("0.5-0.95", description="strategy window: scores within LO-HI x the positive's score")
    max_score_ratio: float | None = Field(None, gt=0, description="drop candidates scoring above this x the positive (e.g. 0.95)")
    margin: float | None = Field(None, description="drop candidates scoring above the positive minus this margin")
    max_score: float | None = Field(None, description="drop candidates scoring above this absolute score")
    backfill: str = Field("none", description=f"when too few survive: {', '.join(BACKFILL)} (random corpus documents)")
    previous_groups: Path | None = Field(None, description="previous round's groups (file or folder) to mix negatives from")
    previous_fraction: float = Field(0.5, ge=0, le=1, description="share of negatives taken from --previous-groups")
    seed: int = 42
    language: str = Field("en", description="BM25 stemmer/stopwords language (ISO code)")
    index_type: str = Field("exact", description=f"dense search: {', '.join(INDEX_TYPES)}")
    batch_size: int = Field(1024, ge=1, description="queries searched per batch")
    overwrite: bool = False


    @field_validator("range")
    @classmethod
    def _valid_range(cls, value: str) -> str:
        return str(RankRange.parse(value))

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("strategy", "backfill", "index_type")
    @classmethod
    def _choices(cls, value: str, info) -> str:
        valid = {"strategy": STRATEGIES, "backfill": BACKFILL, "index_type": INDEX_TYPES}[info.field_name]
        return check_choice(info.field_name.replace("_", " "), value, valid)

    def false_negative_filter(self) -> FalseNegativeFilter:
        return FalseNegativeFilter(self.max_score_ratio, self.margin, self.max_score,
                                   parse_window(self.window) if self.strategy == "window" else None)


def _bm25(config: MineConfig, dataset: RetrievalDataset) -> CandidateSource:
    return BM25Source(list(dataset.corpus.values()), language=config.language)


def _dense(config: MineConfig, dataset: RetrievalDataset) -> CandidateSource:
    return DenseSource(config.build_encoder(config.model), list(dataset.corpus.values()), config.build_cache(),
                       config.embedding_dtype, config.index_type, config.seed, config.encode_batch_size)


# method name -> builder of its candidate source; other miners register here.
MINERS: dict[str, Callable[[MineConfig, RetrievalDataset], CandidateSource]] = {"bm25": _bm25, "dense": _dense}


def check_config(config: MineConfig, dataset: RetrievalDataset) -> RankRange:
    """Everything that can be wrong with the request, before any work starts."""
    check_choice("mining method", config.method, sorted(MINERS))
    if config.method == "dense" and not config.model:
        raise InputError("--method dense needs --model (a model folder or hub id)")
    dataset.require_split(config.split)
    rank_range = RankRange.parse(config.range)
    size = len(dataset.corpus)
    if rank_range.start > size:
        raise InputError(f"rank range {rank_range} starts beyond the corpus ({size} documents)", config.dataset)
    width = min(rank_range.end, size) - rank_range.start + 1
    if config.negatives > width:
        raise InputError(f"--negatives {config.negatives} is more than the range {rank_range} holds "
                         f"({width} ranks over a corpus of {size})", config.dataset)
    if config.previous_groups is not None and not groups_path(config.previous_groups).is_file():
        raise InputError("previous round's groups not found", groups_path(config.previous_groups))
    return rank_range


@dataclass(frozen=True, slots=True)
class Negative:
    """A chosen negative: rank under the current miner (0: not in its ranking), its score, where it came from."""

    doc_id: str
    rank: int
    score: float | None
    source: str


def text_digest(text: str) -> bytes:
    """Collision-resistant, deterministic key of a text up to case and whitespace."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


class _Miner:
    """Turns one query's ranked candidates into a training group and records the outcome."""

    def __init__(self, config: MineConfig, dataset: RetrievalDataset, rank_range: RankRange, source_name: str,
                 previous: dict[str, TrainingGroup]) -> None:
        self.config, self.dataset, self.rank_range, self.source_name = config, dataset, rank_range, source_name
        self.previous = previous
        self.doc_ids = list(dataset.corpus)
        self.position = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        self.text_key = {doc_id: text_digest(doc.text) for doc_id, doc in dataset.corpus.items()}
        self.filter = config.false_negative_filter()
        self.report = MiningReport(wanted=config.negatives, range_end=rank_range.end)

    def previous_ids(self, qid: str) -> list[str]:
        old = self.previous.get(qid)
        return [d for d in old.neg_ids if d in self.position] if old else []

    def given_positions(self, qid: str) -> list[int]:
        """Corpus positions to score beside the ranking: the positives, then the previous round's negatives."""
        return [self.position[d] for d in self.dataset.positives(self.config.split, qid) + self.previous_ids(qid)]

    def group(self, qid: str, positions, scores, given_scores: list[float]) -> TrainingGroup:
        config, corpus = self.config, self.dataset.corpus
        positives = self.dataset.positives(config.split, qid)
        pos_scores, previous_scores = given_scores[: len(positives)], given_scores[len(positives) :]
        positive_set, positive_texts = set(positives), {self.text_key[d] for d in positives}
        known = [("known_positive_id", lambda c: c.doc_id in positive_set),
                 ("identical_positive_text", lambda c: self.text_key[c.doc_id] in positive_texts)]
        rules = known + self.filter.rules(min(pos_scores))
        ranked = [Candidate(self.doc_ids[i], rank, float(s)) for rank, (i, s) in enumerate(zip(positions, scores), start=1) if i >= 0]
        rng = random.Random(f"{config.seed}:{qid}")
        selection = select_negatives(ranked, self.rank_range, config.negatives, config.strategy, rng, rules)
        chosen = self._with_previous(qid, selection.negatives, previous_scores, ranked, rules, rng)
        kept = len(chosen)
        chosen += self._backfill(chosen, known, rng)
        positive_rank = min((c.rank for c in ranked if c.doc_id in positive_set), default=len(ranked) + 1)
        self.report.add(qid, kept, selection.dropped_counts(), positive_rank, min(pos_scores),
                        [n.score for n in chosen if n.source == self.source_name],
                        [c.score for rule, c in selection.dropped if rule not in ("known_positive_id", "identical_positive_text")])
        self.report.backfilled += len(chosen) - kept
        chosen.sort(key=lambda n: (n.rank <= 0, n.rank))  # ranked negatives by rank, then unranked ones
        return TrainingGroup(
            query=self.dataset.queries[qid].text,
            pos=tuple(corpus[d].text for d in positives),
            neg=tuple(corpus[n.doc_id].text for n in chosen),
            query_id=qid,
            pos_ids=tuple(positives),
            neg_ids=tuple(n.doc_id for n in chosen),
            pos_scores=tuple(pos_scores),
            neg_scores=tuple(n.score for n in chosen),
            neg_ranks=tuple(n.rank for n in chosen),
            neg_sources=tuple(n.source for n in chosen),
        )

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


def load_previous(path: Path | None) -> dict[str, TrainingGroup]:
    if path is None:
        return {}
    file = groups_path(path)
    groups = {g.query_id: g for g in read_groups(file) if g.query_id}
    if not groups:
        raise InputError("previous round's groups carry no query_id to match queries by", file)
    return groups


def mine(config: MineConfig, source: CandidateSource | None = None) -> dict:
    """Run the stage: write `<output>/groups.jsonl`, the mining report and a manifest; return the report.

    Queries are ranked in batches and groups written as they are made, so memory stays bounded by the
    corpus index (for dense: the embedding matrix), not by queries x candidates.
    """
    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    dataset = read_beir(config.dataset)
    rank_range = check_config(config, dataset)
    previous = load_previous(config.previous_groups)
    source = source or MINERS[config.method](config, dataset)
    miner = _Miner(config, dataset, rank_range, source.name, previous)
    queries = dataset.split_queries(config.split)
    qids = list(queries)
    k = min(rank_range.end, len(miner.doc_ids))
    given = [miner.given_positions(q) for q in qids]
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp, group_writer(tmp / GROUPS_FILE) as write:
        with tqdm(total=len(qids), desc=f"mining ({source.name})", unit="q") as bar:
            for batch in source.rank_all([queries[q].text for q in qids], given, k, config.batch_size):
                for row in range(len(batch.positions)):
                    qid = qids[batch.start + row]
                    write(miner.group(qid, batch.positions[row], batch.scores[row], batch.given_scores[row]))
                bar.update(len(batch.positions))
        stats = {**miner.report.as_dict(), "false_negative_filter": miner.filter.describe(),
                 "seconds": round(time.time() - started, 2)}
        (tmp / REPORT_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        write_manifest(tmp, "mine", {**config.model_dump(mode="json"), "scores": f"{source.name} miner scores"},
                       [config.dataset] + ([config.previous_groups] if config.previous_groups else []), started, stats)
    for line in miner.report.summary_lines():
        log.info(line)
    return stats
