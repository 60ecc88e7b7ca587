"""The recipe's measurements around the declared stages: BM25 and the base model on dev before the first model
stage; at the end every model on test, BM25 + dense hybrids (fusion chosen on dev, applied to test) and the final
model with each reranker, alone and fused with its first stage. Each is a step of the engine, skipped when fresh."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from rtune.data.beir import read_beir
from rtune.data.identity import content_identity
from rtune.eval.evaluate import BM25
from rtune.eval.fused import FUSION_FILE, fused_eval, reranker_fusion
from rtune.index.fusion import fuse_runs
from rtune.pipeline.controls import CONTROL_FOLDER, control_ref, folder_of, label_of
from rtune.pipeline.engine import Input
from rtune.pipeline.systems import System
from rtune.stage import BASE


class FusionKey(BaseModel):
    """What a fusion step's result depends on besides its input runs."""

    split: str
    metric: str
    weights: list[float]
    names: list[str]
    depth: int


def baselines_dev(runner) -> None:
    """BM25 and the base model on dev: the gate's first reference, and the report's first rows."""
    runner.baselines_done = True
    base = runner.run_dir / "baselines"
    runner.eval_step("bm25: dev", base / "bm25" / "eval-dev", BM25, runner.pipeline.eval.dev_split)
    dev = runner.eval_step("base: dev", base / "base" / "eval-dev", BASE, runner.pipeline.eval.dev_split)
    runner.kept = (BASE, (dev.record.get("metrics") or {}).get(runner.pipeline.eval.metric))
    runner.systems[:0] = [System("bm25", "baseline", None), System("base", "baseline", None)]
    runner.write_report()


def hybrid(runner, label: str, dense_ref: str, dense_folder: Path) -> None:
    """Fusion of BM25 with a dense model: chosen on dev, then applied unchanged to test."""
    bm25 = runner.run_dir / "baselines" / "bm25"
    fused_steps(runner, label, lambda tag: runner.run_dir / "baselines" / label / f"eval-{tag}",
                lambda tag: {"bm25": bm25 / f"eval-{tag}" / "output", "dense": dense_folder / f"eval-{tag}" / "output"})
    runner.systems.append(System(label, "hybrid", dense_ref))
    runner.write_report()


def rerank_fusion(runner, system: System) -> None:
    """The final model + reranker with the reranked top fused with the first stage's scores: method and reranker
    weight chosen on dev (from the reranked dev evaluation's two runs), then applied to test."""
    stage_dir = runner.run_dir / str(system.stage)
    fused_steps(runner, f"{system.label} fused", lambda tag: stage_dir / f"fused-{tag}",
                lambda tag: {"reranked": stage_dir / f"eval-final-{tag}" / "output"},
                dense_file="run.reranked.trec", fuse=reranker_fusion(runner.pipeline.eval.rerank_top))
    runner.systems.append(System(f"{system.label} fused", "reranked_fused", system.stage))
    runner.write_report()


def fused_steps(runner, label: str, folder_of: Callable[[str], Path], sources_of: Callable[[str], dict[str, Path]],
                dense_file: str = "run.trec", fuse=fuse_runs) -> None:
    """Two steps (dev, then test) that fuse two eval outputs' runs: `sources_of(tag)` names the eval output folders
    (the first holds the lexical / first-stage run.trec, the last the other run as `dense_file`); the dev step
    chooses the method and weight, the test step applies that choice."""
    settings = runner.pipeline.eval
    names = settings.names()
    for split, tag in ((settings.dev_split, "dev"), (settings.test_split, "test")):
        step_folder, sources = folder_of(tag), dict(sources_of(tag))
        lexical_dir, dense_dir = next(iter(sources.values())), list(sources.values())[-1]
        choice_from = folder_of("dev") / "output" if tag == "test" else None
        if choice_from is not None:
            sources["choice"] = choice_from
        inputs = {k: Input(None, str(p), content_identity(p) if p.exists() else None) for k, p in sources.items()}
        key = FusionKey(split=split, metric=settings.metric, weights=settings.fusion_weights, names=names,
                        depth=max(settings.ks))

        def work(split=split, step_folder=step_folder, choice_from=choice_from, lexical_dir=lexical_dir,
                 dense_dir=dense_dir) -> dict:
            qrels = read_beir(runner.resolve(runner.dataset_ref)).require_split(split)
            choice = json.loads((choice_from / FUSION_FILE).read_text(encoding="utf-8")) if choice_from else None
            return fused_eval(step_folder / "output", lexical_dir, dense_dir, qrels, names, max(settings.ks), choice,
                              settings.metric, settings.fusion_weights, dense_file, fuse)

        runner.engine.step(f"{label}: {tag}", step_folder, "hybrid", key, set(), inputs, {"output": step_folder / "output"}, work)


def finish(runner) -> None:
    """Test evaluations of everything, the hybrids, the final model with its reranker."""
    if not runner.baselines_done:
        baselines_dev(runner)
    settings = runner.pipeline.eval
    base = runner.run_dir / "baselines"
    runner.eval_step("bm25: test", base / "bm25" / "eval-test", BM25, settings.test_split)
    runner.eval_step("base: test", base / "base" / "eval-test", BASE, settings.test_split)
    runner.write_report()
    for system in runner.systems:
        if system.kind == "stage":
            runner.eval_step(f"{system.label}: test", runner.run_dir / system.label / "eval-test", system.label,
                             settings.test_split, own=True)
            runner.write_report()
        elif system.kind == "control":
            runner.eval_step(f"{system.label}: test", runner.run_dir / str(system.stage) / CONTROL_FOLDER / "eval-test",
                             control_ref(str(system.stage)), settings.test_split, own=True)
            runner.write_report()
    final = runner.kept[0]
    final_folder = base / "base" if final == BASE else folder_of(runner.run_dir, final)
    if settings.hybrid:
        hybrid(runner, "hybrid-base", BASE, base / "base")
        if final != BASE:
            hybrid(runner, f"hybrid-{label_of(final).replace(' ', '-')}", final, final_folder)
    for system in [s for s in runner.systems if s.kind == "reranked"]:
        system.label = f"{label_of(final)}+{system.stage}"
        for split, tag in ((settings.dev_split, "dev"), (settings.test_split, "test")):
            runner.eval_step(f"{system.label}: {tag}", runner.run_dir / system.stage / f"eval-final-{tag}", final, split,
                             rerank_ref=system.stage)
        if settings.rerank_fusion:
            rerank_fusion(runner, system)
    runner.write_report()
