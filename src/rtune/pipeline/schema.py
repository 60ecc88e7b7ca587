"""The pipeline YAML: dataset, base model, seed, evaluation settings and an ordered list of stages.

A stage entry is `{name, stage, keep_if_better, <the stage config's own fields>}`, one entry model per registered
stage kind (generated from its config), in a union discriminated by `stage`; a `{rounds: ...}` entry declares
repeated hard-negative rounds once (see plan.expand_rounds). `pipeline_json_schema()` is the JSON Schema of the
whole file (docs/pipeline.schema.json, for editors). A field that may name an earlier stage is a string here;
plan.build_plan resolves the references and checks every stage against its config class, validators included.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, create_model, field_validator

from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, metric_names, parse_metric
from rtune.index.fusion import DEFAULT_WEIGHTS
from rtune.models.names import DEFAULT_MODEL
from rtune.pipeline.gate import GateMode
from rtune.pipeline.registry import STAGES
from rtune.stage import StageSpec

# names a stage cannot take: references with a meaning of their own, and the files and folders of a run folder
RESERVED_NAMES = ("base", "bm25", "previous", "dataset", "baselines", "final", "report.md", "report.html", "run.log",
                  "plan.json", "results.csv", "systems.json", "checkpoints", "rounds")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PIPELINE_OWNED = ("output", "overwrite")  # every stage writes into its own folder of the run


class EvalSettings(BaseModel):
    """How every model is measured: the same metrics on dev (each stage, the gate, fusion) and test (the end)."""

    model_config = ConfigDict(extra="forbid")

    dev_split: str = "dev"
    test_split: str = "test"
    metric: str = Field("ndcg@10", description="the dev metric that gates keep_if_better and picks the fusion")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    ks: list[int] = Field(default_factory=lambda: list(DEFAULT_KS))
    hybrid: bool = Field(True, description="BM25 + dense fusion baselines for the base and the final model")
    fusion_weights: list[float] = Field(default_factory=lambda: list(DEFAULT_WEIGHTS), description="dense weights tried on dev")
    language: str | None = Field(None, description="BM25 language (stemmer, stopwords) [default: the dataset's, recorded "
                                 "by `rtune prepare --language`, else en]")
    encode_batch_size: int = Field(64, ge=1)
    rerank_top: int = Field(50, ge=1, description="candidates reranked per query when a reranker stage exists")
    rerank_fusion: bool = Field(True, description="also report the final model + reranker with the reranked scores fused with "
                                "the first stage's (method and reranker weight from fusion_weights, chosen on dev)")
    controls: bool = Field(False, description="beside each training stage that uses mined negatives or teacher scores, "
                           "train an equal-budget control (the same rows, in-batch negatives only) and report the stage "
                           "against it; keep_if_better: control (or both) then gates on it")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        parse_metric(value)
        return value

    @field_validator("fusion_weights")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= w <= 1 for w in value):
            raise ValueError("fusion weights must be a non-empty list of numbers within 0..1")
        return value

    def eval_ks(self) -> list[int]:
        """The cut-offs every evaluation computes: `ks` plus the gate metric's own."""
        return sorted(set(self.ks) | {int(self.metric.split("@")[1])})

    def names(self) -> list[str]:
        return metric_names(self.eval_metrics(), self.eval_ks())

    def eval_metrics(self) -> list[str]:
        """`metrics` plus the gate metric's family."""
        return list(dict.fromkeys([*self.metrics, self.metric.split("@")[0]]))


class RoundsBlock(BaseModel):
    """`count` hard-negative rounds, each a dense `mine` then a `train`, named mine_<name>_<i> / train_<name>_<i>."""

    model_config = ConfigDict(extra="forbid")

    name: str = "dense"
    count: int = Field(ge=1)
    mine: dict[str, Any] = Field(default_factory=dict, description="settings of each round's mine stage")
    train: dict[str, Any] = Field(default_factory=dict, description="settings of each round's train stage")
    keep_if_better: GateMode = False


class RoundsEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: RoundsBlock


def _entry_field(spec: StageSpec, name: str, info):
    """A stage config field as a pipeline entry field: a reference field takes a stage name, `previous`, a path or a
    hub id and may be left out (the pipeline fills it in); a choice field lists its choices."""
    if name in spec.refs:
        return (str | None, Field(None, description=info.description))
    info = copy.copy(info)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "choices" in extra:
        info.json_schema_extra = {k: v for k, v in extra.items() if k != "choices"}
        return (Literal[tuple(str(c) for c in extra["choices"])] | None if not info.is_required() else
                Literal[tuple(str(c) for c in extra["choices"])], info)
    return (info.annotation, info)


def entry_model(spec: StageSpec) -> type[BaseModel]:
    """The pipeline entry model of one stage kind: name, stage, keep_if_better and the config's own fields."""
    fields: dict[str, Any] = {
        "name": (str, Field(description="the stage's name: its folder in the run, and how later stages refer to it")),
        "stage": (Literal[spec.name], Field(description=spec.help)),
        "keep_if_better": (GateMode, Field(False, description="true (or previous): a model stage worse on dev than the latest "
                                              "kept model is refused and that model carried forward; control: worse than its "
                                              "equal-budget control; both: worse than either")),
    }
    for name, info in spec.config.model_fields.items():
        if name not in PIPELINE_OWNED:
            fields[name] = _entry_field(spec, name, info)
    title = "".join(part.capitalize() for part in re.split(r"[-_]", spec.name)) + "Stage"
    return create_model(title, __config__=ConfigDict(extra="forbid"), __doc__=spec.help, **fields)


def entry_tag(value: Any) -> str | None:
    """The discriminator of a stage entry: its `stage`, or `rounds` for a rounds block."""
    if isinstance(value, dict):
        return "rounds" if "rounds" in value else value.get("stage")
    return "rounds" if isinstance(value, RoundsEntry) else getattr(value, "stage", None)


ENTRY_MODELS: dict[str, type[BaseModel]] = {name: entry_model(spec) for name, spec in STAGES.items() if spec.pipeline}
StageEntry = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in ENTRY_MODELS.items()) + (Annotated[RoundsEntry, Tag("rounds")],)],
    Discriminator(entry_tag),
]


class PipelineConfig(BaseModel):
    """The whole pipeline file. Relative paths are relative to the directory `rtune run` starts in."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="raw input for a first `prepare` stage, or a prepared BEIR folder")
    base_model: str = Field(DEFAULT_MODEL, description="the model training starts from and the 'base' baseline")
    seed: int = 42
    output: Path | None = Field(None, description="run folder [default: runs/<pipeline file name>]")
    eval: EvalSettings = Field(default_factory=EvalSettings)
    stages: list[StageEntry] = Field(min_length=1)


def pipeline_json_schema() -> dict:
    """The JSON Schema of a pipeline file (what docs/pipeline.schema.json holds)."""
    schema = PipelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rtune pipeline"
    return schema
