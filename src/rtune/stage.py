"""What a stage kind declares, once, beside its code: its config model, its run function, what it produces, which
fields may name an earlier stage, and how the CLI shows it. rtune.pipeline.registry collects the declarations;
the CLI commands and help panels, the pipeline's stage kinds and references, the freshness keys and the pipeline
YAML schema are all derived from them.

Settings that never change a stage's results (execution, caching, progress) are declared on the config class as
`NEUTRAL` (beside COMMON_NEUTRAL); `result_settings` is the one place that leaves them out, for the pipeline's
freshness keys, the training checkpoints' identity and the scoring shards' key alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

# what a stage's output is; later stages refer to it by the stage's name
DATASET, GROUPS, MODEL, RERANKER, EVAL = "dataset", "groups", "model", "reranker", "eval"
OUTPUT_KINDS = (DATASET, GROUPS, MODEL, RERANKER, EVAL)
# what a reference defaults to besides the latest earlier output of a kind
BASE = "base"          # the pipeline's base model
ROOT_DATASET = "dataset"  # the pipeline's `dataset` (what a reference to it is called)
PIPELINE_DATASET = "pipeline dataset"  # a default that is the pipeline's `dataset` itself, not the latest dataset
# settings of every stage that never change its results; `device` is replaced by the resolved compute identity
COMMON_NEUTRAL = frozenset({"output", "overwrite", "encode_batch_size", "encode_devices", "eval_batch_size", "cache",
                            "cache_dir", "device", "checkpoint_dir", "save_steps", "resume_from_checkpoint"})


def neutral_fields(config_cls: type[BaseModel]) -> frozenset[str]:
    """The fields of `config_cls` that do not change results: COMMON_NEUTRAL and the class's own `NEUTRAL`."""
    return COMMON_NEUTRAL | frozenset(getattr(config_cls, "NEUTRAL", frozenset()))


def result_settings(config: BaseModel, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The config's settings that decide its results (JSON values), without the neutral ones and `exclude`."""
    return config.model_dump(mode="json", exclude=set(neutral_fields(type(config))) | set(exclude))


Summary = Callable[[Any, Any], Iterable[Any]]  # (config, result) -> lines or rich renderables for the terminal


@dataclass(frozen=True)
class StageSpec:
    """One stage kind.

    `refs`: field -> the output kind(s) it may name (an earlier stage producing one, `previous`, or a path/hub id);
    `defaults(settings)`: field -> what a pipeline fills in when the field is left out (an output kind: the latest
    earlier stage producing it; BASE; PIPELINE_DATASET); `produces`: an output kind, or a function of the kinds the
    stage's references resolve to and its settings (merge produces what its adapter was); `compute(config)`: the device type and
    precision the results depend on (rtune.models.precision.compute_identity), None for a stage that runs no
    model; `positional`: CLI arguments instead of options;
    `panels`: --help groups {title: field names} ("*encoder": every shared encoder option); `summary`: what the CLI
    prints after the run; `pipeline`: whether a pipeline may declare it."""

    name: str
    config: type[BaseModel]
    run: Callable[[Any], Any]
    produces: str | Callable[[Mapping[str, str], Mapping[str, Any]], str]
    help: str
    refs: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    defaults: Callable[[Mapping[str, Any]], Mapping[str, str]] = lambda settings: {}
    compute: Callable[[Any], str | None] = lambda config: None
    positional: tuple[str, ...] = ()
    panels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    summary: Summary | None = None
    pipeline: bool = True

    def neutral(self) -> frozenset[str]:
        return neutral_fields(self.config)

    def ref_kinds(self, field_name: str) -> tuple[str, ...]:
        """The output kinds field `field_name` may name, in order of preference (`previous` takes the first found)."""
        kinds = self.refs.get(field_name, ())
        return (kinds,) if isinstance(kinds, str) else tuple(kinds)

    def output_kind(self, ref_kinds: Mapping[str, str] | None = None, settings: Mapping[str, Any] | None = None) -> str:
        """What the stage produces, given the kinds its references resolved to and its plain settings."""
        return self.produces(ref_kinds or {}, settings or {}) if callable(self.produces) else self.produces
