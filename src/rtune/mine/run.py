"""Stage `mine`: training groups for the train queries, negatives sampled from a miner's rank range."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from rtune.data.atomic import atomic_dir
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset, normalize_text
from rtune.data.groups import group_writer
from rtune.data.manifest import write_manifest
from rtune.data.records import TrainingGroup
from rtune.errors import InputError
from rtune.mine.report import MiningReport
from rtune.mine.sampling import STRATEGIES, Candidate, RankRange, select_negatives
from rtune.mine.source import BM25Source, CandidateSource

log = logging.getLogger(__name__)

GROUPS_FILE = "groups.jsonl"
REPORT_FILE = "mining_report.json"


class MineConfig(BaseModel):
    """Everything `rtune mine` needs."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path
    output: Path
    method: str = Field("bm25", description="miner: bm25")
    split: str = "train"
    range: str = Field("2-200", description="1-based inclusive rank range to sample from")
    negatives: int = Field(15, ge=1, description="negatives per query")
    strategy: str = Field("random", description=f"how to pick within the range: {', '.join(STRATEGIES)}")
    seed: int = 42
    language: str = Field("en", description="BM25 stemmer/stopwords language (ISO code)")
    batch_size: int = Field(256, ge=1, description="queries searched per batch")
    overwrite: bool = False

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy '{value}'; valid: {', '.join(STRATEGIES)}")
        return value

    @field_validator("range")
    @classmethod
    def _valid_range(cls, value: str) -> str:
        return str(RankRange.parse(value))


def _bm25(config: MineConfig, dataset: RetrievalDataset) -> CandidateSource:
    return BM25Source(list(dataset.corpus.values()), language=config.language)


# method name -> builder of its candidate source; other miners register here.
MINERS: dict[str, Callable[[MineConfig, RetrievalDataset], CandidateSource]] = {"bm25": _bm25}


def check_config(config: MineConfig, dataset: RetrievalDataset) -> RankRange:
    """Everything that can be wrong with the request, before any work starts."""
    if config.method not in MINERS:
        raise ValueError(f"unknown mining method '{config.method}'; valid: {', '.join(sorted(MINERS))}")
    dataset.require_split(config.split)
    rank_range = RankRange.parse(config.range)
    size = len(dataset.corpus)
    if rank_range.start > size:
        raise InputError(f"rank range {rank_range} starts beyond the corpus ({size} documents)", config.dataset)
    width = min(rank_range.end, size) - rank_range.start + 1
    if config.negatives > width:
        raise InputError(f"--negatives {config.negatives} is more than the range {rank_range} holds "
                         f"({width} ranks over a corpus of {size})", config.dataset)
    return rank_range


class _Miner:
    """Turns one query's ranked candidates into a training group and records the outcome."""

    def __init__(self, config: MineConfig, dataset: RetrievalDataset, rank_range: RankRange, source_name: str) -> None:
        self.config, self.dataset, self.rank_range, self.source_name = config, dataset, rank_range, source_name
        self.doc_ids = list(dataset.corpus)
        self.position = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        # One hash of the normalised text per document, so 'identical text' checks cost a set lookup.
        self.text_key = {doc_id: hash(normalize_text(doc.text)) for doc_id, doc in dataset.corpus.items()}
        self.report = MiningReport(wanted=config.negatives, range_end=rank_range.end)

    def positive_positions(self, qid: str) -> list[int]:
        return [self.position[d] for d in self.dataset.positives(self.config.split, qid)]

    def group(self, qid: str, indices, scores, pos_scores: list[float]) -> TrainingGroup:
        corpus, split = self.dataset.corpus, self.config.split
        positives = self.dataset.positives(split, qid)
        positive_set = set(positives)
        positive_texts = {self.text_key[d] for d in positives}
        ranked = [Candidate(self.doc_ids[i], rank, float(s)) for rank, (i, s) in enumerate(zip(indices, scores), start=1)]
        rules = [
            ("known_positive_id", lambda c: c.doc_id in positive_set),
            ("identical_positive_text", lambda c: self.text_key[c.doc_id] in positive_texts),
        ]
        rng = random.Random(f"{self.config.seed}:{qid}")
        selection = select_negatives(ranked, self.rank_range, self.config.negatives, self.config.strategy, rng, rules)
        kept = selection.negatives
        positive_rank = min((c.rank for c in ranked if c.doc_id in positive_set), default=len(ranked) + 1)
        self.report.add(qid, len(kept), selection.dropped_counts(), positive_rank, max(pos_scores),
                        [c.score for c in kept], [c.score for _, c in selection.dropped])
        if len(kept) < self.config.negatives:
            log.debug("query %s: only %d of %d negatives survived", qid, len(kept), self.config.negatives)
        return TrainingGroup(
            query=self.dataset.queries[qid].text,
            pos=tuple(corpus[d].text for d in positives),
            neg=tuple(corpus[c.doc_id].text for c in kept),
            query_id=qid,
            pos_ids=tuple(positives),
            neg_ids=tuple(c.doc_id for c in kept),
            pos_scores=tuple(pos_scores),
            neg_scores=tuple(c.score for c in kept),
            neg_ranks=tuple(c.rank for c in kept),
            neg_sources=tuple(self.source_name for _ in kept),
        )


def mine(config: MineConfig, source: CandidateSource | None = None) -> dict:
    """Run the stage: write `<output>/groups.jsonl`, the mining report and a manifest; return the report.

    Queries are searched in batches and groups written as they are made, so memory stays bounded.
    """
    started = time.time()
    dataset = read_beir(config.dataset)
    rank_range = check_config(config, dataset)
    source = source or MINERS[config.method](config, dataset)
    miner = _Miner(config, dataset, rank_range, source.name)
    queries = dataset.split_queries(config.split)
    qids = list(queries)
    k = min(rank_range.end, len(miner.doc_ids))
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp, group_writer(tmp / GROUPS_FILE) as write:
        with tqdm(total=len(qids), desc=f"mining ({source.name})", unit="q") as bar:
            for start in range(0, len(qids), config.batch_size):
                batch = qids[start : start + config.batch_size]
                texts = [queries[q].text for q in batch]
                indices, scores = source.search(texts, k)
                pos_scores = source.score(texts, [miner.positive_positions(q) for q in batch])
                for row, qid in enumerate(batch):
                    write(miner.group(qid, indices[row], scores[row], pos_scores[row]))
                bar.update(len(batch))
        stats = miner.report.as_dict()
        (tmp / REPORT_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        write_manifest(tmp, "mine", {**config.model_dump(mode="json"), "scores": f"{source.name} miner scores"},
                       [config.dataset], started, stats)
    for line in miner.report.summary_lines():
        log.info(line)
    return stats
