"""`rtune run pipeline.yaml`: run the plan's stages in order inside one run folder, skipping fresh steps,
re-running stale ones (and, through the input hashes, everything downstream), gating model stages on dev,
then evaluating every model and the baselines on test and writing the report after every step."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rtune.errors import InputError
from rtune.pipeline.kinds import DATASET, MODEL, REF_FIELDS, RERANKER
from rtune.pipeline.lock import run_lock
from rtune.pipeline.logs import quiet_console, run_log
from rtune.pipeline.memory import peak_mb, reset_peak
from rtune.pipeline.plan import BASE, ROOT_DATASET, Plan, PlannedStage, load_plan
from rtune.pipeline.steps import check, content_hash, forget, read_record, record, step_key, value_hash
from rtune.pipeline.systems import System, write_systems

log = logging.getLogger("rtune.pipeline")
CHECKPOINTS = "checkpoints"  # a training stage's resumable checkpoints, in its stage folder until it finishes
SAVE_STEPS = 200  # a training stage saves a checkpoint every this many optimiser steps unless its save_steps says



class RunConfig(BaseModel):
    """What `rtune run` takes: the pipeline file, `--set` overrides, and whether to only print the plan."""

    model_config = ConfigDict(extra="forbid")

    pipeline: Path
    set: list[str] = Field(default_factory=list, description="override, e.g. stages.train.epochs=2 (repeatable)")
    dry_run: bool = Field(False, description="print the plan, what would run and what would be skipped and why")


@dataclass
class Outcome:
    """What happened to one step: ran / skipped / would run / would skip, why, and how long it took."""

    name: str
    status: str
    reason: str
    seconds: float = 0.0
    record: dict = field(default_factory=dict)


class Runner:
    def __init__(self, plan: Plan, dry_run: bool = False, echo=print) -> None:
        self.plan, self.pipeline, self.dry_run, self.echo = plan, plan.pipeline, dry_run, echo
        self.run_dir = plan.run_dir()
        self.effective: dict[str, str] = {}   # stage -> path later stages get (the previous model when refused)
        self.sha: dict[str, str | None] = {}  # stage -> content hash of that path (None: not built yet, dry run)
        self.own: dict[str, tuple[str, str | None]] = {}  # stage -> its own output and hash, refused or not
        self.dataset_ref = ROOT_DATASET
        self.kept: tuple[str, float | None] = (BASE, None)  # latest kept model and its dev metric
        self.systems: list[System] = []
        self.outcomes: list[Outcome] = []
        self.baselines_done = False

    # references -----------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        if ref == BASE:
            return self.pipeline.base_model
        if ref == ROOT_DATASET:
            return str(self.pipeline.dataset)
        return self.effective[ref]

    def ref_sha(self, ref: str) -> str | None:
        if ref in (BASE, ROOT_DATASET):
            return value_hash(self.resolve(ref))
        return self.sha.get(ref)

    # one step ---------------------------------------------------------------------------------------------
    def step(self, name: str, folder: Path, kind: str, config: BaseModel, ignored: set[str], inputs: dict[str, dict],
             outputs: dict[str, Path], work, extra_key: dict | None = None) -> Outcome:
        """Skip `work` when fresh, else run it and write the manifest last. `inputs`: field -> {'ref', 'sha'}."""
        parts = {"kind": kind, "config": {**config.model_dump(mode="json", exclude=ignored), **(extra_key or {})},
                 "inputs": {f: {"ref": i.get("ref"), "sha": i["sha"]} for f, i in inputs.items()}}  # no paths: a moved run stays fresh
        pending = [i.get("ref") or f for f, i in inputs.items() if i["sha"] is None]
        if pending:
            outcome = Outcome(name, "would run", f"after {', '.join(dict.fromkeys(pending))} (re)runs")
            return self._report(outcome)
        state = check(folder, parts, outputs)
        if state.fresh:
            return self._report(Outcome(name, "would skip" if self.dry_run else "skipped", state.reason, 0.0, state.record))
        if self.dry_run:
            return self._report(Outcome(name, "would run", state.reason))
        log.info("%s: running (%s)", name, state.reason)
        forget(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        reset_peak()
        try:
            extra = work()
        except InputError as err:  # name the step; no manifest is written, so the next run retries it
            raise InputError(f"step '{name}': {err.message}", err.path, err.line) from err
        paths = [i["value"] if i.get("value") else self.resolve(i["ref"]) for i in inputs.values()]
        stats = record(folder, kind, config.model_dump(mode="json"), paths, started, parts, outputs,
                       {"seed": self.pipeline.seed, "peak_memory_mb": peak_mb(), "seconds": round(time.time() - started, 2),
                        **extra})
        return self._report(Outcome(name, "ran", state.reason, time.time() - started, stats))

    def _report(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        took = f" ({outcome.seconds:.1f}s)" if outcome.status == "ran" else ""
        self.echo(f"{outcome.name:<28} {outcome.status:<10} {outcome.reason}{took}")
        log.info("%s: %s: %s%s", outcome.name, outcome.status, outcome.reason, took)
        return outcome

    # stages -----------------------------------------------------------------------------------------------
    def stage_config(self, stage: PlannedStage) -> BaseModel:
        cls = stage.kind.config_class()
        values: dict[str, Any] = dict(stage.settings)
        for field_name, ref in stage.refs.items():
            if field_name in cls.model_fields:
                values[field_name] = self.resolve(ref) if self.sha.get(ref, "x") is not None else f"<{ref}>"
        values.update(output=self.run_dir / stage.name / "output", overwrite=True)
        if "seed" in cls.model_fields and "seed" not in stage.settings:
            values["seed"] = self.pipeline.seed
        if "save_steps" in cls.model_fields and stage.settings.get("save_steps") is None:
            values["save_steps"] = SAVE_STEPS
        if "checkpoint_dir" in cls.model_fields:
            values["checkpoint_dir"] = self.run_dir / stage.name / CHECKPOINTS
        return cls(**values)

    def run_stage(self, stage: PlannedStage) -> None:
        if stage.produces in (MODEL, RERANKER) and not self.baselines_done:
            self.baselines_dev()
        folder = self.run_dir / stage.name
        config = self.stage_config(stage)
        inputs = {f: {"ref": r, "sha": self.ref_sha(r)} for f, r in stage.refs.items()}
        for field_name in REF_FIELDS:
            value = stage.settings.get(field_name)
            if isinstance(value, str | Path):
                inputs[field_name] = {"ref": None, "value": str(value), "sha": value_hash(str(value))}
        ignored = set(stage.kind.ignored()) | set(REF_FIELDS)
        output = folder / "output"

        def work() -> dict:
            return {"result": stage.kind.run(config.model_copy(update=resume_values(config)))}

        outcome = self.step(stage.name, folder, stage.kind.name, config, ignored, inputs, {"output": output}, work)
        if outcome.status in ("ran", "skipped"):  # published (or fresh): its checkpoints are no longer needed
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
        built = outcome.status in ("ran", "skipped", "would skip")
        self.effective[stage.name] = str(output)
        self.sha[stage.name] = (outcome.record.get("identity") or outcome.record["outputs"])["output"] if built else None
        self.own[stage.name] = (self.effective[stage.name], self.sha[stage.name])  # kept even when the gate refuses it
        if stage.produces == DATASET:
            self.dataset_ref = stage.name
        if stage.produces == MODEL:
            self.after_model(stage, folder)
        elif stage.produces == RERANKER:
            self.systems.append(System(f"{self.kept[0]}+{stage.name}", "reranked", stage.name))

    def after_model(self, stage: PlannedStage, folder: Path) -> None:
        """Dev evaluation of the new model, then the keep_if_better gate."""
        from rtune.pipeline.gate import decide

        dev = self.eval_step(f"{stage.name}: dev", folder / "eval-dev", stage.name, self.pipeline.eval.dev_split, own=True)
        value = (dev.record.get("metrics") or {}).get(self.pipeline.eval.metric)
        decision = decide(stage.name, stage.keep_if_better, self.pipeline.eval.metric, value, *self.kept)
        system = System(stage.name, "stage", stage.name, kept=decision["kept"], gate=decision)
        if decision["kept"]:
            self.kept = (stage.name, value)
        else:
            previous = self.kept[0]
            self.effective[stage.name] = self.resolve(previous)
            self.sha[stage.name] = self.ref_sha(previous)
            message = (f"REFUSED {stage.name} by keep_if_better: dev {decision['metric']} {value:.4f} < {self.kept[1]:.4f} "
                       f"of {previous}; later stages get {previous}'s model")
            self.echo(f"{'!' * 3} {message}")
            log.warning(message)
        self.systems.append(system)
        self.write_report()

    # evaluations ------------------------------------------------------------------------------------------
    def eval_step(self, name: str, folder: Path, model_ref: str, split: str, rerank_ref: str | None = None,
                  own: bool = False) -> Outcome:
        """Evaluate `model_ref` ('bm25', BASE or a stage: what later stages get from it, or with `own` the stage's
        own output even when the gate refused it) on `split`."""
        from rtune.eval.evaluate import EvalConfig, evaluate

        settings = self.pipeline.eval
        model_path, model_sha = self.own[model_ref] if own else (None, None)
        if not own and model_ref != "bm25":
            model_sha = self.ref_sha(model_ref)
            model_path = self.resolve(model_ref) if model_sha is not None else None
        pending = model_ref != "bm25" and model_sha is None
        model = "bm25" if model_ref == "bm25" else (f"<{model_ref}>" if pending else model_path)
        config = EvalConfig(dataset=self.resolve(self.dataset_ref) if self.ref_sha(self.dataset_ref) else f"<{self.dataset_ref}>",
                            model=model, split=split, metrics=settings.eval_metrics(), ks=settings.eval_ks(), language=settings.language,
                            encode_batch_size=settings.encode_batch_size, output=folder / "output", overwrite=True,
                            rerank=None if rerank_ref is None else self.resolve(rerank_ref), rerank_top=settings.rerank_top)
        inputs = {"dataset": {"ref": self.dataset_ref, "sha": self.ref_sha(self.dataset_ref)}}
        if model_ref != "bm25":
            inputs["model"] = {"ref": model_ref, "sha": model_sha, "value": model_path}
        if rerank_ref is not None:
            inputs["rerank"] = {"ref": rerank_ref, "sha": self.ref_sha(rerank_ref)}
        from rtune.pipeline.kinds import KINDS

        ignored = set(KINDS["eval"].ignored()) | {"dataset", "model", "rerank"}
        return self.step(name, folder, "eval", config, ignored, inputs, {"output": folder / "output"},
                         lambda: {"metrics": evaluate(config)})

    def baselines_dev(self) -> None:
        self.baselines_done = True
        base = self.run_dir / "baselines"
        self.eval_step("bm25: dev", base / "bm25" / "eval-dev", "bm25", self.pipeline.eval.dev_split)
        dev = self.eval_step("base: dev", base / "base" / "eval-dev", BASE, self.pipeline.eval.dev_split)
        self.kept = (BASE, (dev.record.get("metrics") or {}).get(self.pipeline.eval.metric))
        self.systems[:0] = [System("bm25", "baseline", None), System("base", "baseline", None)]
        self.write_report()

    def hybrid(self, label: str, dense_ref: str, dense_folder: Path) -> None:
        """Fusion of BM25 with a dense model: chosen on dev, then applied unchanged to test."""
        bm25 = self.run_dir / "baselines" / "bm25"
        self._fused(label, lambda tag: self.run_dir / "baselines" / label / f"eval-{tag}",
                    lambda tag: {"bm25": bm25 / f"eval-{tag}" / "output", "dense": dense_folder / f"eval-{tag}" / "output"})
        self.systems.append(System(label, "hybrid", dense_ref))
        self.write_report()

    def rerank_fusion(self, system: System) -> None:
        """The final model + reranker with the reranked top fused with the first stage's scores: method and
        reranker weight chosen on dev (from the reranked dev evaluation's two runs), then applied to test."""
        from rtune.pipeline.hybrid import reranker_fusion

        stage_dir = self.run_dir / str(system.stage)
        self._fused(f"{system.label} fused", lambda tag: stage_dir / f"fused-{tag}",
                    lambda tag: {"reranked": stage_dir / f"eval-final-{tag}" / "output"},
                    dense_file="run.reranked.trec", fuse=reranker_fusion(self.pipeline.eval.rerank_top))
        self.systems.append(System(f"{system.label} fused", "reranked_fused", system.stage))
        self.write_report()

    def _fused(self, label: str, folder_of, sources_of, dense_file: str = "run.trec", fuse=None) -> None:
        """Two steps (dev, then test) that fuse two eval outputs' runs: `sources_of(tag)` names the eval output
        folders (the first holds the lexical / first-stage run.trec, the last the other run as `dense_file`);
        the dev step chooses the method and weight, the test step applies that choice."""
        from rtune.pipeline.hybrid import fuse_runs, fused_eval

        settings = self.pipeline.eval
        names = settings.names()
        dataset = None
        for split, tag in ((settings.dev_split, "dev"), (settings.test_split, "test")):
            step_folder, sources = folder_of(tag), dict(sources_of(tag))
            lexical_dir, dense_dir = next(iter(sources.values())), list(sources.values())[-1]
            choice_from = folder_of("dev") if tag == "test" else None
            if choice_from is not None:
                sources["choice"] = choice_from / "output"
            inputs = {k: {"ref": None, "value": str(p), "sha": content_hash(p, identity=True) if p.exists() else None}
                      for k, p in sources.items()}
            config = _HybridKey(split=split, metric=settings.metric, weights=settings.fusion_weights, names=names,
                                depth=max(settings.ks))

            def work(split=split, step_folder=step_folder, choice_from=choice_from, lexical_dir=lexical_dir,
                     dense_dir=dense_dir) -> dict:
                nonlocal dataset
                from rtune.data.beir import read_beir
                from rtune.pipeline.hybrid import FUSION_FILE
                import json

                dataset = dataset or read_beir(self.resolve(self.dataset_ref))
                choice = json.loads((choice_from / "output" / FUSION_FILE).read_text()) if choice_from else None
                return fused_eval(step_folder / "output", lexical_dir, dense_dir, dataset.require_split(split), names,
                                  max(settings.ks), choice, settings.metric, settings.fusion_weights, dense_file,
                                  fuse or fuse_runs)

            self.step(f"{label}: {tag}", step_folder, "hybrid", config, set(), inputs, {"output": step_folder / "output"}, work)

    def finish(self) -> None:
        """Test evaluations of everything, the hybrids, the final model with its reranker."""
        if not self.baselines_done:
            self.baselines_dev()
        settings = self.pipeline.eval
        base = self.run_dir / "baselines"
        self.eval_step("bm25: test", base / "bm25" / "eval-test", "bm25", settings.test_split)
        self.eval_step("base: test", base / "base" / "eval-test", BASE, settings.test_split)
        self.write_report()
        for system in self.systems:
            if system.kind == "stage":
                self.eval_step(f"{system.label}: test", self.run_dir / system.label / "eval-test", system.label,
                               settings.test_split, own=True)
                self.write_report()
        final = self.kept[0]
        final_folder = base / "base" if final == BASE else self.run_dir / final
        if settings.hybrid:
            self.hybrid("hybrid-base", BASE, base / "base")
            if final != BASE:
                self.hybrid(f"hybrid-{final}", final, final_folder)
        for system in [s for s in self.systems if s.kind == "reranked"]:
            system.label = f"{final}+{system.stage}"
            for split, tag in ((settings.dev_split, "dev"), (settings.test_split, "test")):
                self.eval_step(f"{system.label}: {tag}", self.run_dir / system.stage / f"eval-final-{tag}", final, split,
                               rerank_ref=system.stage)
            if settings.rerank_fusion:
                self.rerank_fusion(system)
        self.write_report()

    def write_report(self) -> None:
        if self.dry_run:
            return
        from rtune.pipeline.report import write_report

        write_systems(self.run_dir, self.systems, self.plan, self.kept[0])
        write_report(self.run_dir)


class _HybridKey(BaseModel):
    split: str
    metric: str
    weights: list[float]
    names: list[str]
    depth: int


def resume_values(config: BaseModel) -> dict[str, Any]:
    """Trainer resumption, where the stage's config offers it: `resume_from_checkpoint` = the latest complete
    `checkpoint-N` in the stage's `checkpoints/` folder (outside the atomic output) when that folder belongs to
    this same training (options, groups, start model); checkpoints of another training (a setting changed since
    the run that wrote them) are removed, and the stage starts from the beginning."""
    if "resume_from_checkpoint" not in type(config).model_fields or getattr(config, "checkpoint_dir", None) is None:
        return {}
    from rtune.train import checkpointing

    checkpoints = Path(config.checkpoint_dir)
    if not checkpoints.is_dir():
        return {}
    changes = checkpointing.identity_changes(checkpoints, checkpointing.run_identity(config))
    if changes:
        log.warning("removing the checkpoints in %s: they belong to another training (%s)", checkpoints, "; ".join(changes))
        shutil.rmtree(checkpoints, ignore_errors=True)
        return {}
    latest = checkpointing.latest_checkpoint(checkpoints)
    if latest is None:
        return {}
    log.info("resuming from %s", latest)
    return {"resume_from_checkpoint": latest}


def run_pipeline(path: str | Path, overrides: list[str] | None = None, dry_run: bool = False, echo=print) -> list[Outcome]:
    """Validate the pipeline, then run it (or, with `dry_run`, print what would run and why). Returns the outcomes."""
    plan = load_plan(path, overrides)
    runner = Runner(plan, dry_run, echo)
    echo(f"run folder: {runner.run_dir}  ({len(plan.stages)} stages{', dry run' if dry_run else ''})")
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_console())
        if not dry_run:
            from rtune.pipeline.systems import write_plan

            stack.enter_context(run_lock(runner.run_dir))
            stack.enter_context(run_log(runner.run_dir))
            write_plan(runner.run_dir, plan)
        for stage in plan.stages:
            runner.run_stage(stage)
        runner.finish()
    if dry_run:
        return runner.outcomes
    from rtune.pipeline.report import stage_table

    echo(stage_table(runner.run_dir))
    return runner.outcomes


__all__ = ["RunConfig", "Runner", "run_pipeline", "step_key"]
