"""The typed config of `rtune mine` and its miners registry: method name -> the corpus index it ranks with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from rtune.data.dataset import RetrievalDataset
from rtune.data.groups import groups_path
from rtune.errors import InputError, check_choice
from rtune.index.bm25 import BM25Index, dataset_language
from rtune.index.dense_index import DenseIndex
from rtune.index.dense_search import INDEX_TYPES
from rtune.index.embedding_cache import cache_for
from rtune.index.ranking import CorpusIndex
from rtune.mine.filters import FalseNegativeFilter, parse_window
from rtune.mine.sampling import STRATEGIES, RankRange
from rtune.models.encoder_options import EncoderOptions
from rtune.models.rerankers.registry import AUTO, RERANKERS

REPORT_FILE = "mining_report.json"
BACKFILL = ("none", "random")
# method name -> builder of its candidate source over the corpus texts (filled below the config); miners register here.
MINERS: dict[str, Callable[[MineConfig, list[str]], CorpusIndex]] = {}


class MineConfig(EncoderOptions):
    """Everything `rtune mine` needs (encoder options apply to `--method dense`)."""

    NEUTRAL: ClassVar[frozenset[str]] = frozenset({"batch_size"})  # queries searched at once

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
    false_negative_check: str | None = Field(None, description="estimate the false negatives kept: this scorer (a "
                                             "cross-encoder, LLM reranker or, with --false-negative-kind bi_encoder, a "
                                             "bi-encoder) reads a sample of the groups; the share of negatives it "
                                             "scores above the best positive goes to the report [default: no estimate]")
    false_negative_kind: str = Field("auto", description="--false-negative-check: the scorer's kind (auto: a causal LM "
                                     "is an LLM reranker, else a cross-encoder)", json_schema_extra={"choices": [AUTO, *RERANKERS]})
    false_negative_sample: int = Field(200, ge=1, description="--false-negative-check: queries sampled (seeded by --seed)")
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

    @field_validator("strategy", "backfill", "index_type", "false_negative_kind")
    @classmethod
    def _choices(cls, value: str, info) -> str:
        valid = {"strategy": STRATEGIES, "backfill": BACKFILL, "index_type": INDEX_TYPES,
                 "false_negative_kind": [AUTO, *RERANKERS]}[info.field_name]
        return check_choice(info.field_name.replace("_", " "), value, valid)

    def false_negative_filter(self) -> FalseNegativeFilter:
        return FalseNegativeFilter(self.max_score_ratio, self.margin, self.max_score,
                                   parse_window(self.window) if self.strategy == "window" else None)


def _bm25(config: MineConfig, texts: list[str]) -> CorpusIndex:
    """BM25 (bm25s) over the corpus texts; each query's top k kept as it is scored."""
    return BM25Index(dataset_language(config.language, config.dataset)).index(texts, show_progress=len(texts) > 50_000)


def _dense(config: MineConfig, texts: list[str]) -> CorpusIndex:
    """The model's corpus embeddings (from the cache, or encoded once), searched exactly or approximately."""
    return DenseIndex.build(config.build_encoder(config.model), texts, cache_for(config), config.embedding_dtype,
                            config.index_type, config.seed, config.encode_batch_size)


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
