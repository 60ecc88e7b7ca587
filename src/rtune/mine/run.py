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
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset, normalize_text, text_digest
from rtune.data.groups import GROUPS_FILE, group_writer, groups_path, read_groups
from rtune.data.manifest import write_manifest
from rtune.data.records import TrainingGroup
from rtune.data.text import describe_rule, document_text
from rtune.errors import DataCollapsedError, InputError, check_choice
from rtune.eval.collapse import collapse_warning
from rtune.index.bm25 import dataset_language
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.ranking import with_progress
from rtune.mine.filters import FalseNegativeFilter, PositiveAwareRules, parse_window
from rtune.mine.report import MiningReport
from rtune.mine.sampling import STRATEGIES, Candidate, RankRange, select_negatives
from rtune.mine.source import BM25Source, CandidateSource, DenseSource
from rtune.models.encoder_options import EncoderOptions

log = logging.getLogger(__name__)

REPORT_FILE = "mining_report.json"
BACKFILL = ("none", "random")
# method name -> builder of its candidate source over the corpus texts (filled below the config); miners register here.
MINERS: dict[str, Callable[[MineConfig, list[str]], CandidateSource]] = {}


class MineConfig(EncoderOptions):
    """Everything `rtune mine` needs (encoder options apply to `--method dense`)."""

    dataset: Path = Field(description="prepared dataset folder (`rtune prepare` output)")
    output: Path = Field(description="new folder for groups.jsonl, mining_report.json and manifest.json")
    method: str = Field("bm25", description="miner (dense needs --model)", json_schema_extra={"choices": MINERS.keys()})
    model: str | None = Field(None, description="dense miner: model folder or hub id (e.g. the previous stage)")
    split: str = Field("train", description="split whose queries get training groups")
    range: str = Field("2-200", description="1-based inclusive rank range to sample from")
    negatives: int = Field(15, ge=1, description="negatives per query")
    strategy: str = Field("random", description="how to pick within the range (window: by score, see --window)",
                          json_schema_extra={"choices": STRATEGIES})
    window: str = Field("0.5-0.95", description="strategy window: scores within LO-HI x the positive's score")
    max_score_ratio: float | None = Field(None, gt=0, description="drop candidates scoring above this x the positive (e.g. 0.95)")
    margin: float | None = Field(None, description="drop candidates scoring above the positive minus this margin")
    max_score: float | None = Field(None, description="drop candidates scoring above this absolute score")
    backfill: str = Field("none", description="when too few survive: none, or random corpus documents",
                          json_schema_extra={"choices": BACKFILL})
    previous_groups: Path | None = Field(None, description="previous round's groups (file or folder) to mix negatives from")
    previous_fraction: float = Field(0.5, ge=0, le=1, description="share of negatives taken from --previous-groups")
    seed: int = Field(42, description="seed for sampling negatives and backfill")
    language: str | None = Field(None, description="BM25 stemmer/stopwords language (ISO code, e.g. en, de, vi) "
                                 "[default: the dataset's, recorded by `rtune prepare --language`, else en]")
    index_type: str = Field("exact", description="dense search: exact, or an approximate FAISS index for big corpora",
                            json_schema_extra={"choices": INDEX_TYPES})
    batch_size: int = Field(1024, ge=1, description="queries searched per batch")
    allow_collapsed: bool = Field(False, description="write the groups even when most queries kept no negative")
    overwrite: bool = Field(False, description="replace an existing --output")


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


def _bm25(config: MineConfig, texts: list[str]) -> CandidateSource:
    return BM25Source(texts, language=dataset_language(config.language, config.dataset))


def _dense(config: MineConfig, texts: list[str]) -> CandidateSource:
    return DenseSource(config.build_encoder(config.model), texts, config.build_cache(),
                       config.embedding_dtype, config.index_type, config.seed, config.encode_batch_size)


MINERS.update(bm25=_bm25, dense=_dense)


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


def known_positives(dataset: RetrievalDataset, split: str) -> dict[str, frozenset[str]]:
    """Query id -> its positives and those of every query in the split with the same normalised text
    (generic questions recur: one copy's positive must not become the other's hard negative)."""
    by_text: dict[str, set[str]] = {}
    table = dataset.require_split(split)
    for qid in table:
        by_text.setdefault(normalize_text(dataset.queries[qid].text), set()).update(dataset.positives(split, qid))
    return {qid: frozenset(by_text[normalize_text(dataset.queries[qid].text)]) for qid in table}


class _Miner:
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


def document_rule(config: MineConfig) -> bool:
    """Whether documents are title + text: the option, else (dense) the model's saved rule, else on."""
    from rtune.models.loading import resolve_model

    model = resolve_model(config.model) if config.method == "dense" else None
    return config.resolve_settings(model).use_title


def check_not_collapsed(report: MiningReport, allow: bool) -> None:
    """Refuse to publish groups where most queries kept no negative: training on them would silently
    drop those queries (a 'stage 2' trained on a handful of rows)."""
    empty = report.queries_without_negatives
    if report.queries and empty * 2 > report.queries:
        summary = "; ".join(report.summary_lines())
        if not allow:
            raise DataCollapsedError(
                f"{empty} of {report.queries} queries kept no negative, so the training data collapsed ({summary}). "
                "Loosen the false-negative rules or the range, use --backfill random, or pass --allow-collapsed to write them anyway")
        log.warning("%d of %d queries kept no negative; writing them anyway (--allow-collapsed)", empty, report.queries)


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
    use_title = document_rule(config)
    texts = {doc_id: document_text(doc, use_title) for doc_id, doc in dataset.corpus.items()}
    source = source or MINERS[config.method](config, list(texts.values()))
    miner = _Miner(config, dataset, rank_range, source.name, previous, texts)
    queries = dataset.split_queries(config.split)
    qids = list(queries)
    k = min(rank_range.end, len(miner.doc_ids))
    given = [miner.given_positions(q) for q in qids]
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp, group_writer(tmp / GROUPS_FILE) as write:
        batches = source.rank_all([queries[q].text for q in qids], k, config.batch_size, given=given)
        for batch in with_progress(batches, len(qids), f"mining ({source.name})"):  # the bar starts once queries are encoded
            for row in range(len(batch.positions)):
                qid = qids[batch.start + row]
                if batch.positions[row][0] >= 0:
                    miner.report.note_first(miner.doc_ids[batch.positions[row][0]])
                write(miner.group(qid, batch.positions[row], batch.scores[row], batch.given_scores[row]))
        stats = {**miner.report.as_dict(), "false_negative_filter": miner.filter.describe(),
                 "document_text": describe_rule(use_title), "dataset_dropped": dataset.dropped_summary(),
                 "seconds": round(time.time() - started, 2)}
        check_not_collapsed(miner.report, config.allow_collapsed)
        (tmp / REPORT_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        provenance = {"miner": source.name, "miner_scores": "pos_miner_scores / neg_miner_scores", "teacher": None,
                      "bm25_language": getattr(source, "language", None),
                      "document_text": {"use_title": use_title, "rule": describe_rule(use_title)}}
        write_manifest(tmp, "mine", {**config.model_dump(mode="json"), **provenance},
                       [config.dataset] + ([config.previous_groups] if config.previous_groups else []), started, stats)
    for line in miner.report.summary_lines():
        log.info(line)
    if miner.report.looks_collapsed():
        log.warning("%s: its negatives are the same few documents for most queries; check it with rtune eval before "
                    "training on them", collapse_warning(f"the miner ({source.name})", miner.report.top1_share(), miner.report.ranked_queries()))
    return stats
