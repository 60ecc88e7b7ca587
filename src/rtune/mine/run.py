"""Stage `mine`: training groups for the train queries, negatives sampled from a miner's rank range.

BM25 or a dense model ranks the corpus; known positives and likely false negatives are dropped by named,
counted rules; `--negatives` are sampled from `--range`; groups are written as each query batch is done.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset, normalize_text
from rtune.data.groups import group_writer, read_groups
from rtune.data.manifest import write_manifest
from rtune.data.records import TrainingGroup
from rtune.errors import InputError
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.embedding_cache import DTYPES
from rtune.mine.filters import FalseNegativeFilter, parse_window
from rtune.mine.report import MiningReport
from rtune.mine.sampling import STRATEGIES, Candidate, RankRange, select_negatives
from rtune.mine.source import BM25Source, CandidateSource, DenseSource

log = logging.getLogger(__name__)

GROUPS_FILE = "groups.jsonl"
REPORT_FILE = "mining_report.json"
BACKFILL = ("none", "random")


class MineConfig(BaseModel):
    """Everything `rtune mine` needs."""

    model_config = ConfigDict(extra="forbid")

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
    query_prompt: str | None = None
    query_instruction: str | None = Field(None, description="dense: instruction put into --query-format")
    query_format: str = Field("{}{}", description="dense: how instruction and query combine, e.g. '<instruct>{}\\n<query>{}'")
    document_prompt: str | None = None
    embedding_dtype: str = Field("float32", description=f"cached corpus embeddings: {', '.join(DTYPES)}")
    index_type: str = Field("exact", description=f"dense search: {', '.join(INDEX_TYPES)}")
    cache: bool = Field(True, description="reuse/keep corpus and query embeddings in the embedding cache")
    cache_dir: Path | None = Field(None, description="embedding cache folder [default: $RTUNE_CACHE_DIR or ~/.cache/rtune/embeddings]")
    encode_batch_size: int = Field(64, ge=1)
    batch_size: int = Field(1024, ge=1, description="queries searched per batch")
    device: str | None = None
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

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _choices(self) -> MineConfig:
        for name, value, valid in (("backfill", self.backfill, BACKFILL), ("embedding_dtype", self.embedding_dtype, DTYPES),
                                   ("index_type", self.index_type, INDEX_TYPES)):
            if value not in valid:
                raise ValueError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")
        return self

    def false_negative_filter(self) -> FalseNegativeFilter:
        return FalseNegativeFilter(self.max_score_ratio, self.margin, self.max_score,
                                   parse_window(self.window) if self.strategy == "window" else None)


def _bm25(config: MineConfig, dataset: RetrievalDataset) -> CandidateSource:
    return BM25Source(list(dataset.corpus.values()), language=config.language)


def _dense(config: MineConfig, dataset: RetrievalDataset) -> CandidateSource:
    from rtune.index.embedding_cache import EmbeddingCache
    from rtune.index.encoder import SentenceTransformerEncoder
    from rtune.models.loading import load_bi_encoder, resolve_model
    from rtune.models.prompts import PromptSettings

    prompts = PromptSettings(config.query_prompt, config.document_prompt, config.query_instruction, config.query_format)
    encoder = SentenceTransformerEncoder(load_bi_encoder(config.model, config.device), prompts=prompts,
                                         model_id=resolve_model(config.model))
    cache = EmbeddingCache(config.cache_dir) if config.cache else None
    return DenseSource(encoder, list(dataset.corpus.values()), cache, config.embedding_dtype, config.index_type,
                       config.seed, config.encode_batch_size)


# method name -> builder of its candidate source; other miners register here.
MINERS: dict[str, Callable[[MineConfig, RetrievalDataset], CandidateSource]] = {"bm25": _bm25, "dense": _dense}


def check_config(config: MineConfig, dataset: RetrievalDataset) -> RankRange:
    """Everything that can be wrong with the request, before any work starts."""
    if config.method not in MINERS:
        raise ValueError(f"unknown mining method '{config.method}'; valid: {', '.join(sorted(MINERS))}")
    if config.method == "dense" and not config.model:
        raise ValueError("--method dense needs --model (a model folder or hub id)")
    dataset.require_split(config.split)
    rank_range = RankRange.parse(config.range)
    size = len(dataset.corpus)
    if rank_range.start > size:
        raise InputError(f"rank range {rank_range} starts beyond the corpus ({size} documents)", config.dataset)
    width = min(rank_range.end, size) - rank_range.start + 1
    if config.negatives > width:
        raise InputError(f"--negatives {config.negatives} is more than the range {rank_range} holds "
                         f"({width} ranks over a corpus of {size})", config.dataset)
    if config.previous_groups is not None:
        path = config.previous_groups / GROUPS_FILE if config.previous_groups.is_dir() else config.previous_groups
        if not path.is_file():
            raise InputError("previous round's groups not found", path)
    return rank_range


class _Miner:
    """Turns one query's ranked candidates into a training group and records the outcome."""

    def __init__(self, config: MineConfig, dataset: RetrievalDataset, rank_range: RankRange, source_name: str,
                 previous: dict[str, TrainingGroup]) -> None:
        self.config, self.dataset, self.rank_range, self.source_name = config, dataset, rank_range, source_name
        self.previous = previous
        self.doc_ids = list(dataset.corpus)
        self.position = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}
        # One hash of the normalised text per document, so 'identical text' checks cost a set lookup.
        self.text_key = {doc_id: hash(normalize_text(doc.text)) for doc_id, doc in dataset.corpus.items()}
        self.filter = config.false_negative_filter()
        self.report = MiningReport(wanted=config.negatives, range_end=rank_range.end)

    def positive_positions(self, qid: str) -> list[int]:
        return [self.position[d] for d in self.dataset.positives(self.config.split, qid)]

    def _known_positive_rules(self, positives: list[str]):
        positive_set = set(positives)
        positive_texts = {self.text_key[d] for d in positives}
        return [("known_positive_id", lambda c: c.doc_id in positive_set),
                ("identical_positive_text", lambda c: self.text_key[c.doc_id] in positive_texts)]

    def group(self, qid: str, positions, scores, pos_scores: list[float]) -> TrainingGroup:
        corpus, config = self.dataset.corpus, self.config
        positives = self.dataset.positives(config.split, qid)
        known = self._known_positive_rules(positives)
        ranked = [Candidate(self.doc_ids[i], rank, float(s)) for rank, (i, s) in enumerate(zip(positions, scores), start=1) if i >= 0]
        rng = random.Random(f"{config.seed}:{qid}")
        n_previous = self._previous_share(qid)
        selection = select_negatives(ranked, self.rank_range, config.negatives - n_previous, config.strategy, rng,
                                     known + self.filter.rules(min(pos_scores)))
        chosen = [(c.doc_id, c.rank, c.score, self.source_name) for c in selection.negatives]
        chosen = self._mix_previous(qid, chosen, known, rng)
        backfilled = self._backfill(chosen, known, rng)
        positive_set = set(positives)
        positive_rank = min((c.rank for c in ranked if c.doc_id in positive_set), default=len(ranked) + 1)
        self.report.add(qid, len(chosen) - backfilled, selection.dropped_counts(), positive_rank, max(pos_scores),
                        [c.score for c in selection.negatives], [c.score for _, c in selection.dropped])
        self.report.backfilled += backfilled
        chosen.sort(key=lambda n: (n[1] <= 0, n[1]))  # ranked negatives in rank order, then unranked ones
        return TrainingGroup(
            query=self.dataset.queries[qid].text,
            pos=tuple(corpus[d].text for d in positives),
            neg=tuple(corpus[d].text for d, _, _, _ in chosen),
            query_id=qid,
            pos_ids=tuple(positives),
            neg_ids=tuple(d for d, _, _, _ in chosen),
            pos_scores=tuple(pos_scores),
            neg_scores=tuple(s for _, _, s, _ in chosen),
            neg_ranks=tuple(r for _, r, _, _ in chosen),
            neg_sources=tuple(src for _, _, _, src in chosen),
        )

    def _previous_share(self, qid: str) -> int:
        old = self.previous.get(qid)
        return min(round(self.config.negatives * self.config.previous_fraction), len(old.neg)) if old else 0

    def _mix_previous(self, qid: str, chosen: list, known, rng: random.Random) -> list:
        """Add the previous round's negatives (their own source, rank and score kept) up to the wanted count."""
        old = self.previous.get(qid)
        if old is None:
            return chosen
        taken = {d for d, *_ in chosen}
        candidates = [(d, r, s, src) for d, r, s, src in zip(old.neg_ids, old.neg_ranks or [0] * len(old.neg_ids),
                                                              old.neg_scores or [None] * len(old.neg_ids),
                                                              old.neg_sources or ["previous"] * len(old.neg_ids))
                      if d in self.dataset.corpus and d not in taken
                      and not any(rejects(Candidate(d, 0, 0.0)) for _, rejects in known)]
        need = self.config.negatives - len(chosen)
        return chosen + rng.sample(candidates, min(need, len(candidates)))

    def _backfill(self, chosen: list, known, rng: random.Random) -> int:
        """Random corpus documents (source 'random', rank 0, score null) when asked and too few survived."""
        need = self.config.negatives - len(chosen)
        if need <= 0 or self.config.backfill == "none":
            return 0
        taken = {d for d, *_ in chosen}
        added = 0
        for _ in range(20 * need):
            doc_id = self.doc_ids[rng.randrange(len(self.doc_ids))]
            if doc_id in taken or any(rejects(Candidate(doc_id, 0, 0.0)) for _, rejects in known):
                continue
            chosen.append((doc_id, 0, None, "random"))
            taken.add(doc_id)
            added += 1
            if added == need:
                break
        return added


def load_previous(path: Path | None) -> dict[str, TrainingGroup]:
    if path is None:
        return {}
    file = path / GROUPS_FILE if path.is_dir() else path
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
    positives = [miner.positive_positions(q) for q in qids]
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp, group_writer(tmp / GROUPS_FILE) as write:
        with tqdm(total=len(qids), desc=f"mining ({source.name})", unit="q") as bar:
            for batch in source.rank_all([queries[q].text for q in qids], positives, k, config.batch_size):
                for row in range(len(batch.positions)):
                    qid = qids[batch.start + row]
                    write(miner.group(qid, batch.positions[row], batch.scores[row], batch.positive_scores[row]))
                bar.update(len(batch.positions))
        stats = {**miner.report.as_dict(), "false_negative_filter": miner.filter.describe(),
                 "seconds": round(time.time() - started, 2)}
        (tmp / REPORT_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        write_manifest(tmp, "mine", {**config.model_dump(mode="json"), "scores": f"{source.name} miner scores"},
                       [config.dataset] + ([config.previous_groups] if config.previous_groups else []), started, stats)
    for line in miner.report.summary_lines():
        log.info(line)
    return stats
