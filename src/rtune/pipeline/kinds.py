"""The stage kinds a pipeline can declare: each one's config class, library function, what it produces,
which fields may name an earlier stage, and which fields do not change its results."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from rtune.errors import InputError

# what a stage's output is; later stages refer to it by the stage's name
DATASET, GROUPS, MODEL, RERANKER, EVAL = "dataset", "groups", "model", "reranker", "eval"
# fields that may hold an earlier stage's name instead of a path or hub id
REF_FIELDS = ("input", "dataset", "groups", "previous_groups", "model", "rerank", "first_stage")
# fields that never change a stage's results (execution, caching, progress): changing them keeps it fresh
VOLATILE_COMMON = frozenset({"output", "overwrite", "encode_batch_size", "cache", "cache_dir", "device",
                             "checkpoint_dir", "save_steps", "resume_from_checkpoint"})


@dataclass(frozen=True)
class StageKind:
    """One stage kind: `config` and `function` are 'module:attribute' paths, imported on first use."""

    name: str
    config: str
    function: str
    produces: str
    volatile: frozenset[str] = field(default_factory=frozenset)

    def config_class(self) -> type[BaseModel]:
        return _load(self.config, self.name)

    def run(self, config: BaseModel) -> dict:
        return _load(self.function, self.name)(config)

    def ignored(self) -> frozenset[str]:
        """Fields left out of the stage's freshness key."""
        return VOLATILE_COMMON | self.volatile


def _load(target: str, kind: str):
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise InputError(f"stage kind '{kind}' is not available in this rtune ({target}: {err})") from None


KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("prepare", "rtune.data.prepare:PrepareConfig", "rtune.data.prepare:prepare", DATASET),
    StageKind("mine", "rtune.mine.run:MineConfig", "rtune.mine.run:mine", GROUPS, frozenset({"batch_size"})),
    StageKind("train", "rtune.train.config:TrainConfig", "rtune.train.bi_encoder:train_bi_encoder", MODEL),
    StageKind("train-reranker", "rtune.train.cross_encoder_config:RerankerTrainConfig",
              "rtune.train.cross_encoder:train_cross_encoder", RERANKER, frozenset({"eval_batch_size"})),
    StageKind("score", "rtune.score.config:ScoreConfig", "rtune.score.run:score_groups", GROUPS,
              frozenset({"batch_size", "shard_size"})),
    StageKind("eval", "rtune.eval.evaluate:EvalConfig", "rtune.eval.evaluate:evaluate", EVAL),
)}


def stage_kind(name: str) -> StageKind:
    from rtune.errors import check_choice

    return KINDS[check_choice("stage kind", name, KINDS)]


def default_refs(kind: str) -> dict[str, str]:
    """Field -> what it defaults to when a stage leaves it out: the latest earlier output of that type."""
    return {
        "prepare": {},
        "mine": {"dataset": DATASET},
        "train": {"dataset": DATASET, "groups": GROUPS, "model": "base"},
        "train-reranker": {"dataset": DATASET, "groups": GROUPS, "first_stage": MODEL},
        "score": {"groups": GROUPS},
        "eval": {"dataset": DATASET, "model": MODEL},
    }[kind]


RunFunction = Callable[[BaseModel], dict]
