"""From the pipeline file to a validated plan: rounds expanded, references resolved to stage names, every stage's
settings checked against its config class before any work starts. An error names the file, the stage and the
field."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rtune.data.yaml_file import read_yaml_mapping
from rtune.errors import InputError
from rtune.models.names import looks_like_path, resolve_model
from rtune.pipeline.controls import uses_negatives
from rtune.pipeline.gate import CONTROL_MODES, GateMode
from rtune.pipeline.overrides import apply_overrides
from rtune.pipeline.registry import pipeline_kinds, stage_kind
from rtune.pipeline.schema import NAME_PATTERN, PIPELINE_OWNED, RESERVED_NAMES, PipelineConfig, RoundsBlock
from rtune.stage import BASE, DATASET, MODEL, PIPELINE_DATASET, RERANKER, ROOT_DATASET, StageSpec

PREVIOUS = "previous"  # the latest earlier output of the field's kind
_ENTRY_KEYS = ("name", "stage", "keep_if_better")
_FALLBACK = {DATASET: ROOT_DATASET, MODEL: BASE}  # what a reference falls back to when no earlier stage produces it
_NAMED = {BASE: MODEL, ROOT_DATASET: DATASET}  # reserved names a reference may use, and the kind each stands for


@dataclass
class PlannedStage:
    """One stage to run: its own settings (no references), field -> referenced stage name / BASE / ROOT_DATASET,
    and the kind of output it produces."""

    name: str
    kind: StageSpec
    settings: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    keep_if_better: GateMode = False
    produces: str = ""


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
    if not Path(path).is_file():
        raise InputError("pipeline file not found", path)
    return read_yaml_mapping(path, "a pipeline is a mapping with dataset, base_model, seed and stages")


def _where(loc) -> str:
    return ".".join(str(p) for p in loc)


def _reason(error: dict) -> str:
    """pydantic's message in rtune's words: unknown fields and choices say what is valid."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":  # as rtune.errors.check_choice words it
        what = str(error["loc"][-1]).replace("_", " ") if error["loc"] else "value"
        valid = ctx.get("expected", "").replace(" or ", ", ").replace("'", "")
        return f"unknown {what} '{error['input']}'; valid: {valid}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    return error["msg"]


def _pipeline_error(err: ValidationError, raw: dict, path: Path | None) -> InputError:
    """The first validation error, named by stage and field when it is inside a stage entry."""
    first = err.errors()[0]
    loc = list(first["loc"])
    if loc[:1] == ["stages"] and len(loc) >= 2 and isinstance(loc[1], int):
        entries = raw.get("stages") or []
        entry = entries[loc[1]] if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else {}
        if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
            if not isinstance(entry.get("name"), str):
                return InputError(f"stage {loc[1] + 1}: field 'name' is required (a unique text)", path)
            if not isinstance(entry.get("stage"), str):
                return InputError(f"stage '{entry['name']}': field 'stage' is required ({', '.join(pipeline_kinds())})", path)
            return InputError(f"stage '{entry['name']}': field 'stage': unknown stage kind '{entry['stage']}'; valid: "
                              f"{', '.join(pipeline_kinds())}", path)
        if "rounds" in entry:
            return InputError(f"rounds block {loc[1] + 1}: field '{_where(loc[4:]) or 'rounds'}': {_reason(first)}", path)
        name = entry.get("name", f"#{loc[1] + 1}")
        where = _where(loc[3:])
        if first["type"] == "extra_forbidden" and len(loc) == 4 and entry.get("stage") in pipeline_kinds():
            valid = [f for f in stage_kind(entry["stage"]).config.model_fields if f not in PIPELINE_OWNED]
            return InputError(f"stage '{name}' ({entry['stage']}): unknown field '{where}'; valid: {', '.join(valid)}", path)
        return InputError(f"stage '{name}' ({entry.get('stage')}): field '{where}': {_reason(first)}", path)
    return InputError(f"pipeline field '{_where(loc)}': {_reason(first)}", path)


def _pipeline(raw: dict, path: Path | None) -> PipelineConfig:
    _check_entries(raw.get("stages"), path)
    try:
        return PipelineConfig(**raw)
    except ValidationError as err:
        raise _pipeline_error(err, raw, path) from None
    except InputError as err:
        raise InputError(f"pipeline eval settings: {err.message}", path) from None


def _check_entries(entries: Any, path: Path | None) -> None:
    """Names and pipeline-owned fields, before the schema: clearer errors than a union's."""
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            raise InputError(f"stage {index + 1}: expected a mapping with name and stage", path)
        if "rounds" in entry:
            if set(entry) != {"rounds"}:
                raise InputError(f"stage {index + 1}: a rounds entry holds only 'rounds' (unknown: "
                                 f"{', '.join(sorted(set(entry) - {'rounds'}))})", path)
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"stage {index + 1}: field 'name' is required (a unique text)", path)
        for owned in PIPELINE_OWNED:
            if owned in entry:
                raise InputError(f"stage '{name}' ({entry.get('stage')}): field '{owned}' is set by the pipeline (each stage "
                                 "writes into its own folder of the run)", path)


def expand_rounds(entries: list[dict[str, Any]], path: Path | None) -> list[dict[str, Any]]:
    """`{rounds: {name, count, mine, train}}` -> mine_<name>_1, train_<name>_1, mine_<name>_2, ... Each round mines
    with the latest model (dense by default) and trains from it, unless its settings say otherwise."""
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if "rounds" not in entry:
            out.append(dict(entry))
            continue
        try:
            block = RoundsBlock(**(entry["rounds"] or {}))
        except ValidationError as err:
            first = err.errors()[0]
            raise InputError(f"rounds block {index + 1}: field '{_where(first['loc'])}': {_reason(first)}", path) from None
        for i in range(1, block.count + 1):
            mine_name, train_name = f"mine_{block.name}_{i}", f"train_{block.name}_{i}"
            out.append({"method": "dense", "model": PREVIOUS, **block.mine, "name": mine_name, "stage": "mine"})
            out.append({"model": PREVIOUS, **block.train, "groups": mine_name, "name": train_name, "stage": "train",
                        "keep_if_better": block.keep_if_better})
    return out


def _check_names(entries: list[dict[str, Any]], path: Path | None) -> set[str]:
    """Unique names that are folder names of their own: not a reserved word or a run-folder file, not too long."""
    seen: set[str] = set()
    for entry in entries:
        name = entry["name"]
        if name in seen:
            raise InputError(f"stage '{name}': field 'name': the name is used twice", path)
        if name.lower() in RESERVED_NAMES:
            raise InputError(f"stage '{name}': field 'name': '{name}' is reserved (a reference or a file of the run folder: "
                             f"{', '.join(RESERVED_NAMES)})", path)
        if not NAME_PATTERN.fullmatch(name):
            raise InputError(f"stage '{name}': field 'name': use 1-64 letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit (it names the stage's folder)", path)
        seen.add(name)
    return seen


def _check_settings(stage: PlannedStage, path: Path | None) -> None:
    """Validate the settings against the stage's config class, validators included (references stand in as
    placeholders)."""
    cls: type[BaseModel] = stage.kind.config
    unknown = [k for k in stage.settings if k not in cls.model_fields]
    if unknown:
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): unknown field '{unknown[0]}'; valid: "
                         f"{', '.join(f for f in cls.model_fields if f not in PIPELINE_OWNED)}", path)
    values = {**stage.settings, **{f: f"<{r}>" for f, r in stage.refs.items() if f in cls.model_fields}, "output": "<output>"}
    try:
        cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): field '{_where(first['loc'])}': {_reason(first)}", path) from None
    except InputError as err:
        raise InputError(f"stage '{stage.name}' ({stage.kind.name}): {err.message}", path) from None


def _latest(earlier: list[PlannedStage], kinds: tuple[str, ...]) -> str | None:
    """The latest earlier stage producing the first of `kinds` that any earlier stage produces."""
    for kind in kinds:
        found = next((s.name for s in reversed(earlier) if s.produces == kind), None)
        if found is not None:
            return found
    return None


def _plain_value(spec: StageSpec, name: str, field_name: str, value: str, names: set[str], path: Path | None) -> None:
    """A reference value that names no stage must be an existing path, or (for a model) a hub id; a misspelt stage
    name is an error naming the stages it could mean."""
    if Path(value).expanduser().exists():
        return
    close = difflib.get_close_matches(value, sorted(names), n=3, cutoff=0.7)
    hub_id_allowed = bool({MODEL, RERANKER} & set(spec.ref_kinds(field_name))) and not looks_like_path(value)
    if hub_id_allowed and not close:
        return
    meant = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; stages: {', '.join(sorted(names))}"
    what = "an earlier stage, 'previous', an existing path" + (" or a hub id" if hub_id_allowed else "")
    raise InputError(f"stage '{name}' ({spec.name}): field '{field_name}': '{value}' is not {what}{meant}", path)


def _resolve_refs(entry: dict[str, Any], spec: StageSpec, earlier: list[PlannedStage], names: set[str],
                  path: Path | None) -> tuple[dict, dict, dict]:
    """Split an entry's settings into plain values and references (field -> stage name, BASE or ROOT_DATASET), fill
    the defaulted ones; also return field -> the kind each reference resolved to."""
    name = entry["name"]
    settings = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    refs: dict[str, str] = {}
    kind_of = {s.name: s.produces for s in earlier}
    for field_name in spec.refs:
        value = settings.get(field_name)
        if not isinstance(value, str):
            continue
        kinds = spec.ref_kinds(field_name)
        if value == PREVIOUS:
            target = _latest(earlier, kinds) or next((_FALLBACK[k] for k in kinds if k in _FALLBACK), None)
            if target is None:
                raise InputError(f"stage '{name}' ({spec.name}): field '{field_name}': no earlier stage produces "
                                 f"{' or '.join(kinds)} for 'previous'", path)
            refs[field_name] = target
        elif value in _NAMED and _NAMED[value] in kinds:
            refs[field_name] = value
        elif value in kind_of:
            if kind_of[value] not in kinds:
                raise InputError(f"stage '{name}' ({spec.name}): field '{field_name}' refers to stage '{value}', which "
                                 f"produces {kind_of[value]}, not {' or '.join(kinds)}", path)
            refs[field_name] = value
        elif value in names:
            raise InputError(f"stage '{name}' ({spec.name}): field '{field_name}' refers to stage '{value}', which does not "
                             "come before it", path)
        else:
            _plain_value(spec, name, field_name, value, names, path)
            continue
        settings.pop(field_name)
    for field_name, wanted in spec.defaults(settings).items():
        if field_name in refs or field_name in settings:
            continue
        if wanted in (BASE, PIPELINE_DATASET):
            refs[field_name] = BASE if wanted == BASE else ROOT_DATASET
            continue
        target = _latest(earlier, (wanted,)) or _FALLBACK.get(wanted)
        if target is None:
            raise InputError(f"stage '{name}' ({spec.name}): field '{field_name}' is not set and no earlier stage "
                             f"produces {wanted}", path)
        refs[field_name] = target
    resolved = {f: kind_of.get(r, _NAMED.get(r, "")) for f, r in refs.items()}
    return settings, refs, resolved


def build_plan(raw: dict, overrides: list[str] | None = None, source: Path | None = None) -> Plan:
    """Validate everything up front; an error names the stage and the field (and the file)."""
    raw = apply_overrides(raw, list(overrides or []))
    pipeline = _pipeline(raw, source)
    entries = expand_rounds(raw["stages"], source)
    names = _check_names(entries, source)
    stages: list[PlannedStage] = []
    for entry in entries:
        try:
            spec = stage_kind(entry["stage"])
        except InputError as err:
            raise InputError(f"stage '{entry['name']}': field 'stage': {err.message}", source) from None
        settings, refs, ref_kinds = _resolve_refs(entry, spec, stages, names, source)
        produces = spec.output_kind(ref_kinds, settings)
        keep = entry.get("keep_if_better", False)
        if not isinstance(keep, bool) and keep not in ("previous", *CONTROL_MODES):
            raise InputError(f"stage '{entry['name']}' ({spec.name}): field 'keep_if_better': expected true, false, previous, "
                             "control or both", source)
        if keep and produces != MODEL:
            raise InputError(f"stage '{entry['name']}' ({spec.name}): field 'keep_if_better' applies to model stages (train)",
                             source)
        if keep in CONTROL_MODES and not (pipeline.eval.controls and uses_negatives(spec.name, settings)):
            why = ("eval.controls is off" if not pipeline.eval.controls else
                   "this stage trains with in-batch negatives only, so it has no control")
            raise InputError(f"stage '{entry['name']}' ({spec.name}): field 'keep_if_better': {keep} gates on the stage's "
                             f"control, but {why}", source)
        stage = PlannedStage(entry["name"], spec, settings, refs, keep, produces)
        _check_settings(stage, source)
        stages.append(stage)
    _check_paths(pipeline, stages, source)
    return Plan(pipeline, stages, source)


def _check_paths(pipeline: PipelineConfig, stages: list[PlannedStage], source: Path | None) -> None:
    """The root dataset must exist (without a first prepare stage, as a BEIR folder), and a base model given as a
    path must exist."""
    if not pipeline.dataset.exists():
        raise InputError(f"pipeline field 'dataset': not found: {pipeline.dataset}", source)
    if not any(s.kind.name == "prepare" for s in stages) and not (pipeline.dataset / "corpus.jsonl").is_file():
        raise InputError("pipeline field 'dataset': without a 'prepare' stage it must be a prepared BEIR folder "
                         f"(corpus.jsonl, queries.jsonl, qrels/): {pipeline.dataset}", source)
    base = resolve_model(pipeline.base_model)
    if not Path(base).exists() and looks_like_path(base):
        raise InputError(f"pipeline field 'base_model': no such model folder: {pipeline.base_model}", source)


def load_plan(path: str | Path, overrides: list[str] | None = None) -> Plan:
    return build_plan(read_pipeline_file(path), overrides, Path(path))

