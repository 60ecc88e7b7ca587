"""`rtune run pipeline.yaml`: run the plan's stages in order inside one run folder, skipping fresh steps,
re-running stale ones (and, through the input hashes, everything downstream), gating model stages on dev, then
measuring every model and the baselines on test (rtune.pipeline.recipe) and writing the report after every step."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rtune.eval.evaluate import BM25, EVAL_STAGE, EvalConfig, evaluate
from rtune.pipeline import recipe
from rtune.pipeline.controls import CONTROL_FOLDER, control_config, control_ref, label_of, uses_negatives
from rtune.pipeline.engine import Input, Outcome, StepEngine
from rtune.pipeline.gate import decide
from rtune.pipeline.lock import run_lock
from rtune.pipeline.logs import quiet_console, run_log
from rtune.pipeline.plan import Plan, PlannedStage, load_plan
from rtune.pipeline.report import stage_table, write_report
from rtune.pipeline.run_folder import check_run_folder, mark_run_folder
from rtune.pipeline.steps import value_hash
from rtune.pipeline.systems import System, write_plan, write_systems
from rtune.stage import BASE, DATASET, MODEL, RERANKER, ROOT_DATASET
from rtune.train import checkpointing

log = logging.getLogger("rtune.pipeline")
CHECKPOINTS = "checkpoints"  # a training stage's resumable checkpoints, in its stage folder until it finishes
SAVE_STEPS = 200  # a training stage saves a checkpoint every this many optimiser steps unless its save_steps says


class Runner:
    """Runs one plan in its run folder: the declared stages, the gate, and (through rtune.pipeline.recipe) the
    baselines, hybrids and final measurements."""

    def __init__(self, plan: Plan, dry_run: bool = False, echo=print) -> None:
        self.plan, self.pipeline, self.dry_run, self.echo = plan, plan.pipeline, dry_run, echo
        self.engine = StepEngine(plan.pipeline.seed, dry_run, echo)
        self.run_dir = plan.run_dir()
        self.effective: dict[str, str] = {}   # stage -> path later stages get (the previous model when refused)
        self.sha: dict[str, str | None] = {}  # stage -> content identity of that path (None: not built yet, dry run)
        self.own: dict[str, tuple[str, str | None]] = {}  # stage -> its own output and identity, refused or not
        self.dataset_ref = ROOT_DATASET
        self.kept: tuple[str, float | None] = (BASE, None)  # latest kept model and its dev metric
        self.systems: list[System] = []
        self.baselines_done = False

    @property
    def outcomes(self) -> list[Outcome]:
        return self.engine.outcomes

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

    def input_of(self, ref: str) -> Input:
        sha = self.ref_sha(ref)
        return Input(ref, self.resolve(ref) if sha is not None else None, sha)

    def dataset_path(self) -> str:
        """The dataset every evaluation reads (a placeholder while it is not built, in a dry run)."""
        return self.resolve(self.dataset_ref) if self.ref_sha(self.dataset_ref) else f"<{self.dataset_ref}>"

    # stages -----------------------------------------------------------------------------------------------
    def stage_config(self, stage: PlannedStage) -> BaseModel:
        cls = stage.kind.config
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
            recipe.baselines_dev(self)
        folder = self.run_dir / stage.name
        config = self.stage_config(stage)
        inputs = {f: self.input_of(r) for f, r in stage.refs.items()}
        for field_name in stage.kind.refs:
            value = stage.settings.get(field_name)
            if isinstance(value, str | Path):
                inputs[field_name] = Input(None, str(value), value_hash(str(value)))
        output = folder / "output"

        def work() -> dict:
            return {"result": stage.kind.run(config.model_copy(update=resume_values(config)))}

        outcome = self.engine.step(stage.name, folder, stage.kind.name, config, set(stage.kind.refs), inputs,
                                   {"output": output}, work, compute=stage.kind.compute(config))
        if outcome.status in ("ran", "skipped"):  # published (or fresh): its checkpoints are no longer needed
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
        self.effective[stage.name] = str(output)
        self.sha[stage.name] = outcome.record["outputs"]["output"] if outcome.built else None
        self.own[stage.name] = (self.effective[stage.name], self.sha[stage.name])  # kept even when the gate refuses it
        if stage.produces == DATASET:
            self.dataset_ref = stage.name
        if stage.produces == MODEL:
            control = self.control(stage, config, inputs, folder) if self.pipeline.eval.controls else None
            self.after_model(stage, folder, control)
        elif stage.produces == RERANKER:
            self.systems.append(System(f"{label_of(self.kept[0])}+{stage.name}", "reranked", stage.name))

    def control(self, stage: PlannedStage, config: BaseModel, inputs: dict[str, Input], folder: Path) -> tuple[str, float | None] | None:
        """Train and evaluate on dev the stage's equal-budget control (rtune.pipeline.controls), when it has one;
        returns (its label, its dev metric)."""
        if not uses_negatives(stage.kind.name, stage.settings):
            return None
        control_folder = folder / CONTROL_FOLDER
        control = control_config(config, control_folder)
        label, ref = f"{stage.name} control", control_ref(stage.name)

        def work() -> dict:
            return {"result": stage.kind.run(control.model_copy(update=resume_values(control)))}

        outcome = self.engine.step(f"{stage.name}: control", control_folder, "train-control", control, set(stage.kind.refs),
                                   inputs, {"output": control_folder / "output"}, work, compute=stage.kind.compute(control))
        if outcome.status in ("ran", "skipped"):
            shutil.rmtree(control_folder / CHECKPOINTS, ignore_errors=True)
        self.own[ref] = (str(control_folder / "output"), outcome.record["outputs"]["output"] if outcome.built else None)
        self.effective[ref], self.sha[ref] = self.own[ref]  # a later stage may be handed the control (see after_model)
        dev = self.eval_step(f"{label}: dev", control_folder / "eval-dev", ref, self.pipeline.eval.dev_split, own=True)
        self.systems.append(System(label, "control", stage.name))
        return label, (dev.record.get("metrics") or {}).get(self.pipeline.eval.metric)

    def after_model(self, stage: PlannedStage, folder: Path, control: tuple[str, float | None] | None = None) -> None:
        """Dev evaluation of the new model, then the keep_if_better gate (against the latest kept model and/or the
        stage's control)."""
        dev = self.eval_step(f"{stage.name}: dev", folder / "eval-dev", stage.name, self.pipeline.eval.dev_split, own=True)
        value = (dev.record.get("metrics") or {}).get(self.pipeline.eval.metric)
        decision = decide(stage.name, stage.keep_if_better, self.pipeline.eval.metric, value, *self.kept, *(control or ()))
        system = System(stage.name, "stage", stage.name, kept=decision["kept"], gate=decision)
        if decision["kept"]:
            self.kept = (stage.name, value)
        else:
            previous = self.kept[0]
            if decision.get("refused_by") == decision.get("control") and control is not None and (
                    self.kept[1] is None or control[1] > self.kept[1]):
                # the plain fine-tune beat the stage and the latest kept model: it is what helps, it goes on
                previous = control_ref(stage.name)
                self.kept = (previous, control[1])
            self.effective[stage.name] = self.resolve(previous)
            self.sha[stage.name] = self.ref_sha(previous)
            message = f"REFUSED {stage.name} by keep_if_better: {decision['reason']}; later stages get {label_of(previous)}'s model"
            self.echo(f"{'!' * 3} {message}")
            log.warning(message)
        self.systems.append(system)
        self.write_report()

    # evaluations ------------------------------------------------------------------------------------------
    def eval_step(self, name: str, folder: Path, model_ref: str, split: str, rerank_ref: str | None = None,
                  own: bool = False) -> Outcome:
        """Evaluate `model_ref` ('bm25', BASE or a stage: what later stages get from it, or with `own` the stage's
        own output even when the gate refused it) on `split`."""
        settings = self.pipeline.eval
        inputs = {"dataset": self.input_of(self.dataset_ref)}
        model = BM25
        if model_ref != BM25:
            path, sha = self.own[model_ref] if own else (None, self.ref_sha(model_ref))
            path = path if own else (self.resolve(model_ref) if sha is not None else None)
            inputs["model"] = Input(model_ref, path, sha)
            model = path if sha is not None else f"<{model_ref}>"
        if rerank_ref is not None:
            inputs["rerank"] = self.input_of(rerank_ref)
        config = EvalConfig(dataset=self.dataset_path(), model=model, split=split, metrics=settings.eval_metrics(),
                            ks=settings.eval_ks(), language=settings.language, encode_batch_size=settings.encode_batch_size,
                            output=folder / "output", overwrite=True, rerank=inputs["rerank"].path if rerank_ref else None,
                            rerank_top=settings.rerank_top)
        return self.engine.step(name, folder, "eval", config, {"dataset", "model", "rerank"}, inputs,
                                {"output": folder / "output"}, lambda: {"metrics": evaluate(config)},
                                compute=EVAL_STAGE.compute(config) if not model.startswith("<") else None)

    def write_report(self) -> None:
        if self.dry_run:
            return
        write_systems(self.run_dir, self.systems, self.plan, label_of(self.kept[0]))
        write_report(self.run_dir)


def resume_values(config: BaseModel) -> dict[str, Any]:
    """Trainer resumption, where the stage's config offers it: `resume_from_checkpoint` = the latest complete
    `checkpoint-N` in the stage's `checkpoints/` folder (outside the atomic output) when that folder belongs to
    this same training (options, groups, start model, device and precision); checkpoints of another training (a
    setting changed since the run that wrote them) are removed, and the stage starts from the beginning."""
    if "resume_from_checkpoint" not in type(config).model_fields or getattr(config, "checkpoint_dir", None) is None:
        return {}
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
    check_run_folder(runner.run_dir, plan)
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_console())
        if not dry_run:
            stack.enter_context(run_lock(runner.run_dir))
            mark_run_folder(runner.run_dir)
            stack.enter_context(run_log(runner.run_dir))
            write_plan(runner.run_dir, plan)
        for stage in plan.stages:
            runner.run_stage(stage)
        recipe.finish(runner)
    if not dry_run:
        echo(stage_table(runner.run_dir))
    return runner.outcomes

