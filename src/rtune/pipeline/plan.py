"""From the pipeline file to a validated plan: rounds expanded, references resolved to stage names, every
stage's settings checked against its config class before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rtune.errors import InputError
from rtune.pipeline.kinds import DATASET, GROUPS, MODEL, REF_FIELDS, RERANKER, StageKind, default_refs, stage_kind
from rtune.pipeline.overrides import apply_overrides
from rtune.pipeline.schema import RESERVED_NAMES, PipelineConfig, RoundsBlock

BASE = "base"          # reference to the pipeline's base model
ROOT_DATASET = "dataset"  # reference to the pipeline's `dataset`
PREVIOUS = "previous"  # the latest earlier output of the field's type
_FIELD_TYPE = {"dataset": DATASET, "groups": GROUPS, "previous_groups": GROUPS, "model": MODEL, "rerank": RERANKER,
               "input": DATASET, "first_stage": MODEL}
_ENTRY_KEYS = ("name", "stage", "keep_if_better")


@dataclass
class PlannedStage:
    """One stage to run: its own settings (no references), and field -> referenced stage name / BASE / ROOT_DATASET."""

    name: str
    kind: StageKind
    settings: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    keep_if_better: bool = False

    @property
    def produces(self) -> str:
        return self.kind.produces


@dataclass
class Plan:
    pipeline: PipelineConfig
    stages: list[PlannedStage]
    source: Path | None = None

    def stage(self, name: str) -> PlannedStage:
        return next(s for s in self.stages if s.name == name)

    def run_dir(self) -> Path:
        if self.pipeline.output is not None:
            return self.pipeline.output
        stem = self.source.stem if self.source else "pipeline"
        return Path("runs") / stem


def read_pipeline_file(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("pipeline file not found", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"cannot read the pipeline: {err}", path) from None
    if not isinstance(raw, dict):
        raise InputError("a pipeline is a mapping with dataset, base_model, seed and stages", path)
    return raw


def _where(loc) -> str:
    return ".".join(str(p) for p in loc)


def _pipeline(raw: dict, path: Path | None) -> PipelineConfig:
    try:
        return PipelineConfig(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        what = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(f"pipeline field '{_where(first['loc'])}': {what}", path) from None
    except InputError as err:
        raise InputError(f"pipeline eval settings: {err.message}", path) from None


def expand_rounds(entries: list[dict[str, Any]], path: Path | None) -> list[dict[str, Any]]:
    """`{rounds: {name, count, mine, train}}` -> mine_<name>_1, train_<name>_1, mine_<name>_2, ... Each round mines
    with the latest model (dense by default) and trains from it, unless its settings say otherwise."""
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"stage {index + 1}: expected a mapping with name and stage", path)
        if "rounds" not in entry:
            out.append(dict(entry))
            continue
        if set(entry) != {"rounds"}:
            raise InputError(f"stage {index + 1}: a rounds entry holds only 'rounds' (unknown: "
                             f"{', '.join(sorted(set(entry) - {'rounds'}))})", path)
        try:
            block = RoundsBlock(**(entry["rounds"] or {}))
        except ValidationError as err:
            first = err.errors()[0]
            what = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
            raise InputError(f"rounds block {index + 1}: field '{_where(first['loc'])}': {what}", path) from None
        for i in range(1, block.count + 1):
            mine_name, train_name = f"mine_{block.name}_{i}", f"train_{block.name}_{i}"
            out.append({"method": "dense", "model": PREVIOUS, **block.mine, "name": mine_name, "stage": "mine"})
            out.append({"model": PREVIOUS, **block.train, "groups": mine_name, "name": train_name, "stage": "train",
                        "keep_if_better": block.keep_if_better})
    return out


def _check_settings(stage: PlannedStage, path: Path | None) -> None:
    """Validate the settings against the stage's config class (references stand in as placeholders)."""
    cls: type[BaseModel] = stage.kind.config_class()
    fields = cls.model_fields
    unknown = [k for k in stage.settings if k not in fields]
    if unknown:
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): unknown field '{unknown[0]}'; valid: "
                         f"{', '.join(f for f in fields if f not in ('output', 'overwrite'))}", path)
    for owned in ("output", "overwrite"):
        if owned in stage.settings:
            raise InputError(f"stage '{stage.name}' ({stage.kind.name}): field '{owned}' is set by the pipeline "
                             "(each stage writes into its own folder of the run)", path)
    values = {**stage.settings, **{f: f"<{r}>" for f, r in stage.refs.items() if f in fields}, "output": "<output>"}
    try:
        cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        reason = first["msg"]
        if first["type"] in ("value_error", "assertion_error") and "error" in first.get("ctx", {}):
            reason = str(first["ctx"]["error"])
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): field '{_where(first['loc'])}': {reason}", path) from None
    except InputError as err:
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): {err.message}", path) from None


def _resolve_refs(entry: dict[str, Any], kind: StageKind, earlier: list[PlannedStage], names: set[str],
                  path: Path | None) -> tuple[dict, dict]:
    """Split an entry's settings into plain values and references; fill defaulted references."""
    name = entry["name"]
    settings = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    refs: dict[str, str] = {}
    latest = {t: next((s.name for s in reversed(earlier) if s.produces == t), None) for t in (DATASET, GROUPS, MODEL, RERANKER)}
    fallback = {DATASET: ROOT_DATASET, MODEL: BASE}
    for field_name in REF_FIELDS:
        value = settings.get(field_name)
        if not isinstance(value, str):
            continue
        if value == PREVIOUS:
            target = latest[_FIELD_TYPE[field_name]] or fallback.get(_FIELD_TYPE[field_name])
            if target is None:
                raise InputError(f"stage '{name}' ({kind.name}): field '{field_name}': no earlier stage produces "
                                 f"{_FIELD_TYPE[field_name]}", path)
            refs[field_name] = target
        elif value in {s.name for s in earlier} or (value == BASE and field_name == "model"):
            refs[field_name] = value
        elif value in names:
            raise InputError(f"stage '{name}' ({kind.name}): field '{field_name}' refers to stage '{value}', "
                             "which does not come before it", path)
        else:
            continue
        settings.pop(field_name)
    for field_name, wanted in default_refs(kind.name).items():
        if field_name in refs or field_name in settings:
            continue
        if wanted == BASE:
            refs[field_name] = BASE
        elif wanted == MODEL:  # eval's model, the reranker's first stage: the latest model, else the base model
            refs[field_name] = latest[MODEL] or BASE
        else:
            refs[field_name] = latest[wanted] or fallback.get(wanted) or ""
            if not refs[field_name]:
                raise InputError(f"stage '{name}' ({kind.name}): field '{field_name}' is not set and no earlier stage "
                                 f"produces {wanted}", path)
    if kind.name == "prepare" and "input" not in settings and "input" not in refs:
        refs["input"] = ROOT_DATASET
    if kind.name == "mine" and settings.get("method") == "dense" and "model" not in settings and "model" not in refs:
        refs["model"] = latest[MODEL] or BASE
    return settings, refs


def build_plan(raw: dict, overrides: list[str] | None = None, source: Path | None = None) -> Plan:
    """Validate everything up front; an error names the stage and the field (and the file)."""
    raw = apply_overrides(raw, list(overrides or []))
    pipeline = _pipeline(raw, source)
    entries = expand_rounds(pipeline.stages, source)
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name, kind = entry.get("name"), entry.get("stage")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"stage {index + 1}: field 'name' is required (a unique text)", source)
        if not isinstance(kind, str):
            raise InputError(f"stage '{name}': field 'stage' is required (prepare, mine, train, train-reranker, score, eval)", source)
        if name in seen or name in RESERVED_NAMES or "/" in name or name.startswith("."):
            why = "is used twice" if name in seen else "is reserved or not a folder name"
            raise InputError(f"stage '{name}': field 'name': the name {why}", source)
        seen.add(name)
    stages: list[PlannedStage] = []
    for entry in entries:
        try:
            kind = stage_kind(entry["stage"])
        except InputError as err:
            raise InputError(f"stage '{entry['name']}': field 'stage': {err.message}", source) from None
        keep = entry.get("keep_if_better", False)
        if not isinstance(keep, bool):
            raise InputError(f"stage '{entry['name']}' ({kind.name}): field 'keep_if_better': expected true or false", source)
        if keep and kind.produces != MODEL:
            raise InputError(f"stage '{entry['name']}' ({kind.name}): field 'keep_if_better' applies to model stages (train)", source)
        settings, refs = _resolve_refs(entry, kind, stages, seen, source)
        stage = PlannedStage(entry["name"], kind, settings, refs, keep)
        _check_settings(stage, source)
        stages.append(stage)
    _check_dataset(pipeline, stages, source)
    return Plan(pipeline, stages, source)


def _check_dataset(pipeline: PipelineConfig, stages: list[PlannedStage], source: Path | None) -> None:
    """The root dataset must exist; without a first prepare stage it must already be a BEIR folder."""
    if not pipeline.dataset.exists():
        raise InputError(f"pipeline field 'dataset': not found: {pipeline.dataset}", source)
    if not any(s.kind.name == "prepare" for s in stages) and not (pipeline.dataset / "corpus.jsonl").is_file():
        raise InputError("pipeline field 'dataset': without a 'prepare' stage it must be a prepared BEIR folder "
                         f"(corpus.jsonl, queries.jsonl, qrels/): {pipeline.dataset}", source)


def load_plan(path: str | Path, overrides: list[str] | None = None) -> Plan:
    return build_plan(read_pipeline_file(path), overrides, Path(path))
