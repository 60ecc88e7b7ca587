"""rtune run end to end on toy data with a tiny model: skipping, staleness, corruption, gating, the report,
and real SIGKILLs in the middle of mining and of training followed by a run that ends equal to an
uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_beir
from rtune.errors import InputError
from rtune.pipeline.report import against_controls
from rtune.pipeline.runner import run_pipeline
from rtune.pipeline.systems import read_systems

HERE = Path(__file__).resolve().parent


def pipeline_dict(dataset: Path, model: Path, output: Path, hybrid: bool = False) -> dict:
    return {
        "dataset": str(dataset), "base_model": str(model), "seed": 7, "output": str(output),
        "eval": {"ks": [1, 5], "metric": "ndcg@5", "hybrid": hybrid, "fusion_weights": [0.3, 0.7]},
        "stages": [
            {"name": "mine_bm25", "stage": "mine", "range": "2-8", "negatives": 1, "backfill": "random"},
            {"name": "train_1", "stage": "train", "group_size": 2, "batch_size": 2, "epochs": 2, "learning_rate": 1e-3},
            {"rounds": {"count": 1, "keep_if_better": True, "mine": {"range": "2-8", "negatives": 1, "backfill": "random"},
                        "train": {"group_size": 2, "batch_size": 2, "epochs": 1, "learning_rate": 1e-3}}},
        ],
    }


def write_pipeline(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(data['output']).name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def statuses(outcomes) -> dict[str, str]:
    return {o.name: o.status for o in outcomes}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_beir(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy, tiny_model) -> tuple[Path, list]:
    """An uninterrupted run (hybrid baselines on), and its outcomes."""
    folder = tmp_path_factory.mktemp("reference")
    path = write_pipeline(folder, pipeline_dict(toy, tiny_model, folder / "run", hybrid=True))
    return folder / "run", run_pipeline(path, echo=lambda line: None)


def copy_run(reference: Path, target: Path) -> Path:
    shutil.copytree(reference, target)
    return target


def results(run: Path) -> dict[str, dict]:
    rows = json.loads((run / "systems.json").read_text())["systems"]
    out = {}
    for row in rows:
        from rtune.pipeline.rows import metrics_of
        from rtune.pipeline.systems import System

        system = System(**row)
        out[system.label] = {"dev": metrics_of(system, run, "dev"), "test": metrics_of(system, run, "test")}
    return out


def assert_same_results(a: Path, b: Path) -> None:
    ra, rb = results(a), results(b)
    assert ra.keys() == rb.keys()
    for label in ra:
        for split in ("dev", "test"):
            assert ra[label][split].keys() == rb[label][split].keys()
            for metric, value in ra[label][split].items():
                assert rb[label][split][metric] == pytest.approx(value, abs=1e-6), (label, split, metric)
    for stage in ("mine_bm25", "mine_dense_1"):
        assert (a / stage / "output" / "groups.jsonl").read_bytes() == (b / stage / "output" / "groups.jsonl").read_bytes()
    from safetensors.numpy import load_file

    for stage in ("train_1", "train_dense_1"):
        wa, wb = load_file(a / stage / "output" / "model.safetensors"), load_file(b / stage / "output" / "model.safetensors")
        assert wa.keys() == wb.keys()
        for key in wa:
            assert abs(wa[key] - wb[key]).max() < 1e-5, (stage, key)


def test_reference_run_writes_every_stage_manifest_and_the_report(reference):
    run, outcomes = reference
    assert set(statuses(outcomes).values()) == {"ran"}
    for stage in ("mine_bm25", "train_1", "mine_dense_1", "train_dense_1"):
        manifest = json.loads((run / stage / "stage_manifest.json").read_text())
        stats = manifest["stats"]
        assert {"key", "outputs", "seed", "peak_memory_mb", "ended", "result"} <= set(stats)
        assert manifest["started"] and manifest["versions"]["torch"] and stats["seed"] == 7
        assert manifest["inputs"], stage  # hashes of what it read, the start model included for training
    train_inputs = json.loads((run / "train_dense_1" / "stage_manifest.json").read_text())["stats"]["key_parts"]["inputs"]
    assert train_inputs["model"]["ref"] == "train_1" and train_inputs["groups"]["ref"] == "mine_dense_1"
    labels = [r["label"] for r in json.loads((run / "systems.json").read_text())["systems"]]
    assert labels[:2] == ["bm25", "base"] and "train_1" in labels and "hybrid-base" in labels
    fusion = json.loads((run / "baselines" / "hybrid-base" / "eval-dev" / "output" / "fusion.json").read_text())
    assert fusion["metric"] == "ndcg@5" and len(fusion["grid"]) == 4
    test_fusion = json.loads((run / "baselines" / "hybrid-base" / "eval-test" / "output" / "fusion.json").read_text())
    assert {k: test_fusion[k] for k in ("method", "dense_weight")} == {k: fusion[k] for k in ("method", "dense_weight")}
    report = (run / "report.md").read_text()
    assert "Metrics on test" in report and "Per-query wins and losses" in report and "Mining:" in report
    html = (run / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    for stage in ("train_1", "train_dense_1"):  # the loss history, in the model's manifest and the step's record
        history = json.loads((run / stage / "output" / "rtune_manifest.json").read_text())["stats"]["loss_history"]
        assert history and all(math.isfinite(h["loss"]) for h in history) and [h["step"] for h in history] == list(range(1, len(history) + 1))
        assert json.loads((run / stage / "stage_manifest.json").read_text())["stats"]["result"]["loss_history"] == history
        assert not (run / stage / "checkpoints").exists()
    training = report[report.index("## Training loss"):].split("\n## ")[0]
    assert "| train_1 | train | mnrl | 6 |" in training and "| train_dense_1 | train | mnrl |" in training
    from rtune.pipeline import plots

    if plots.available():
        assert "<img alt='Training loss per training stage' src='data:image/png;base64," in html
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"system", "settings.learning_rate", "dev.ndcg@5", "test.recall@5"} <= set(header)


def test_rerun_skips_every_fresh_step(reference, tmp_path):
    run = copy_run(reference[0], tmp_path / "run")
    data = yaml.safe_load(next(reference[0].parent.glob("*.yaml")).read_text())
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    lines: list[str] = []
    outcomes = run_pipeline(path, ["stages.mine_bm25.batch_size=3", "eval.encode_batch_size=5"], echo=lines.append)
    assert set(statuses(outcomes).values()) == {"skipped"}  # volatile fields do not make a step stale
    assert any(line.startswith("mine_bm25") and "fresh" in line for line in lines)
    table = lines[-1]  # the run ends with the stage table
    assert "test split (final model:" in table and "hybrid-base" in table and "train_dense_1" in table and "ndcg@5" in table


def test_changing_one_setting_reruns_that_stage_and_downstream_only(reference, tmp_path):
    run = copy_run(reference[0], tmp_path / "run")
    data = yaml.safe_load(next(reference[0].parent.glob("*.yaml")).read_text())
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    dry = statuses(run_pipeline(path, ["stages.dense.mine.negatives=2"], dry_run=True, echo=lambda line: None))
    assert dry["mine_bm25"] == "would skip" and dry["train_1"] == "would skip" and dry["mine_dense_1"] == "would run"
    assert dry["train_dense_1"] == "would run"
    outcomes = run_pipeline(path, ["stages.dense.mine.negatives=2"], echo=lambda line: None)
    status = statuses(outcomes)
    assert status["mine_bm25"] == status["train_1"] == status["train_1: dev"] == status["base: test"] == "skipped"
    assert status["mine_dense_1"] == status["train_dense_1"] == status["train_dense_1: dev"] == "ran"
    reason = next(o.reason for o in outcomes if o.name == "mine_dense_1")
    assert "config changed: negatives 1 -> 2" in reason


def test_another_device_or_precision_makes_model_stages_stale(reference, tmp_path, monkeypatch):
    """A stage run in fp32 on a CPU is not fresh on a bf16 GPU: the compute identity is in every model stage's key
    (BM25 mining, which runs no model, stays fresh)."""
    import rtune.train.bi_encoder as bi_encoder

    run = copy_run(reference[0], tmp_path / "run")
    data = yaml.safe_load(next(reference[0].parent.glob("*.yaml")).read_text())
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    monkeypatch.setattr(bi_encoder, "compute_identity", lambda device, precision: "cuda:bf16")
    outcomes = run_pipeline(path, dry_run=True, echo=lambda line: None)
    dry = statuses(outcomes)
    assert dry["mine_bm25"] == "would skip" and dry["train_1"] == "would run"
    reason = next(o.reason for o in outcomes if o.name == "train_1")
    assert reason == "device or precision changed: cpu:fp32 -> cuda:bf16"


def test_pipeline_hybrids_fuse_exactly_what_eval_hybrid_fuses(reference, toy):
    """The hybrid baselines fuse the runs read back from the eval folders' run files: written exactly, they give
    `rtune eval --hybrid`'s metrics with the fusion chosen on dev."""
    from rtune.eval.evaluate import EvalConfig, evaluate

    run = reference[0]
    final = json.loads((run / "systems.json").read_text())["final"]
    folder = run / "baselines" / f"hybrid-{final}" / "eval-test" / "output"
    choice = json.loads((run / "baselines" / f"hybrid-{final}" / "eval-dev" / "output" / "fusion.json").read_text())
    pipeline_means = json.loads((folder / "metrics.json").read_text())
    direct = evaluate(EvalConfig(dataset=toy, model=str(run / final / "output"), split="test", ks=[1, 5], hybrid="bm25",
                                 fusion=choice["method"], dense_weight=choice["dense_weight"],
                                 metrics=["ndcg", "map", "mrr", "recall", "hit"]))
    for name, value in direct.items():
        assert pipeline_means[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_corrupted_artifact_is_detected_and_rebuilt(reference, tmp_path):
    run = copy_run(reference[0], tmp_path / "run")
    data = yaml.safe_load(next(reference[0].parent.glob("*.yaml")).read_text())
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    groups = run / "mine_bm25" / "output" / "groups.jsonl"
    groups.write_bytes(groups.read_bytes()[:-40])  # a partial write
    outcomes = run_pipeline(path, echo=lambda line: None)
    first = next(o for o in outcomes if o.name == "mine_bm25")
    assert first.status == "ran" and "corrupted or partial" in first.reason
    assert statuses(outcomes)["train_1"] == "skipped"  # rebuilt byte-identical: downstream stays fresh
    assert_same_results(reference[0], run)


def test_refused_stage_carries_the_previous_model_forward(reference, tmp_path, monkeypatch):
    import rtune.pipeline.gate as gate
    import rtune.pipeline.runner as runner

    original = gate.decide

    def worse(name, keep, metric, value, previous, previous_value):
        return original(name, keep, metric, -1.0 if name == "train_dense_1" else value, previous, previous_value)

    monkeypatch.setattr(runner, "decide", worse)
    run = copy_run(reference[0], tmp_path / "run")
    data = yaml.safe_load(next(reference[0].parent.glob("*.yaml")).read_text())
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    lines: list[str] = []
    run_pipeline(path, echo=lines.append)
    assert any("REFUSED train_dense_1 by keep_if_better" in line for line in lines)
    systems = json.loads((run / "systems.json").read_text())
    assert systems["final"] == "train_1"
    assert "REFUSED: stage train_dense_1" in (run / "report.md").read_text()
    assert (run / "baselines" / "hybrid-train_1").is_dir()
    # the refused stage is still measured on test with its own model, not the one carried forward
    own = json.loads((run / "train_dense_1" / "stage_manifest.json").read_text())["stats"]["outputs"]["output"]
    tested = json.loads((run / "train_dense_1" / "eval-test" / "stage_manifest.json").read_text())["stats"]["key_parts"]
    assert tested["inputs"]["model"]["sha"] == own
    assert results(run)["train_dense_1"]["test"] == pytest.approx(results(reference[0])["train_dense_1"]["test"])


def _kill_during(where: str, reference: Path, tmp_path: Path, save_steps: int | None = None) -> Path:
    data = yaml.safe_load(next(reference.parent.glob("*.yaml")).read_text())
    if save_steps is not None:  # a checkpoint every `save_steps` optimiser steps in each training stage
        for stage in data["stages"]:
            train = stage["rounds"]["train"] if "rounds" in stage else stage if stage.get("stage") == "train" else {}
            train["save_steps"] = save_steps
    run = tmp_path / "run"
    path = write_pipeline(tmp_path, {**data, "output": str(run)})
    marker = tmp_path / "paused"
    child = subprocess.Popen([sys.executable, str(HERE / "pipeline_child.py"), str(path), str(marker), where],
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"child ended before pausing: {child.stderr.read().decode()[-2000:]}")
            assert time.time() < deadline, "child never reached the pause point"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert (run / ".rtune-run.owner").exists()  # the killed run cleaned nothing up; the kernel released its lock
    return path


def test_sigkill_in_the_middle_of_mining_then_rerun_equals_uninterrupted(reference, tmp_path, caplog):
    path = _kill_during("mine", reference[0], tmp_path)
    run = tmp_path / "run"
    assert not (run / "mine_bm25" / "stage_manifest.json").exists()
    outcomes = run_pipeline(path, echo=lambda line: None)  # the dead run's lock does not stand in the way
    assert "stopped before finishing" in next(o.reason for o in outcomes if o.name == "mine_bm25")
    assert_same_results(reference[0], run)


def test_sigkill_in_the_middle_of_training_then_rerun_resumes_and_equals_uninterrupted(reference, tmp_path):
    """Killed once train_1 (3 steps per epoch, 2 epochs) has saved its step-4 checkpoint: the rerun resumes there,
    runs only steps 5 and 6, removes the checkpoints once the model is published, and ends equal to the reference
    run (which saved no step checkpoints)."""
    path = _kill_during("train", reference[0], tmp_path, save_steps=1)
    run = tmp_path / "run"
    assert (run / "mine_bm25" / "stage_manifest.json").exists() and not (run / "train_1" / "stage_manifest.json").exists()
    assert (run / "train_1" / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file()
    outcomes = run_pipeline(path, echo=lambda line: None)
    status = statuses(outcomes)
    assert status["mine_bm25"] == "skipped" and status["train_1"] == "ran"
    result = json.loads((run / "train_1" / "stage_manifest.json").read_text())["stats"]["result"]
    assert result["resumed_from"]["checkpoint"] == "checkpoint-4" and result["resumed_from"]["step"] == 4
    assert result["optimizer_steps"] == 6 and result["steps_run"] == 2  # steps 1-4 were not trained again
    reference_result = json.loads((reference[0] / "train_1" / "stage_manifest.json").read_text())["stats"]["result"]
    assert reference_result["resumed_from"] is None and reference_result["steps_run"] == 6
    assert [h["epoch"] for h in result["dev_history"]] == [h["epoch"] for h in reference_result["dev_history"]]
    assert [h["loss"] for h in result["loss_history"]] == pytest.approx([h["loss"] for h in reference_result["loss_history"]], abs=1e-5)
    assert "resuming from" in (run / "run.log").read_text()
    assert not (run / "train_1" / "checkpoints").exists() and not (run / "train_dense_1" / "checkpoints").exists()
    assert_same_results(reference[0], run)


def test_reranker_stage_adds_the_final_model_with_its_reranker(toy, tiny_model, tmp_path):
    data = pipeline_dict(toy, tiny_model, tmp_path / "run")
    data["stages"] = [data["stages"][0], data["stages"][1],
                      {"name": "reranker", "stage": "train-reranker", "model": str(tiny_model), "group_size": 2,
                       "batch_size": 2, "epochs": 1, "dataset": None, "allow_collapsed": True}]
    data["eval"]["rerank_top"] = 3  # fewer than the run's documents: the fusion must keep the tail below
    path = write_pipeline(tmp_path, data)
    run_pipeline(path, echo=lambda line: None)
    rows = {r["label"]: r for r in json.loads((tmp_path / "run" / "systems.json").read_text())["systems"]}
    assert rows["train_1+reranker"]["kind"] == "reranked"
    metrics = json.loads((tmp_path / "run" / "reranker" / "eval-final-test" / "output" / "metrics.json").read_text())
    assert "reranked.ndcg@5" in metrics and "ndcg@5" in metrics
    assert "train_1+reranker" in (tmp_path / "run" / "results.csv").read_text()
    assert "| reranker | train-reranker | " in (tmp_path / "run" / "report.md").read_text()  # its loss history too
    # the reranked top fused with the first stage: method and weight chosen on dev, test recomputed here
    assert rows["train_1+reranker fused"]["kind"] == "reranked_fused"
    from rtune.data.beir import read_beir
    from rtune.data.run_file import read_run
    from rtune.eval.metrics import compute_metrics
    from rtune.index.rerank import fuse_with_first_stage

    stage = tmp_path / "run" / "reranker"
    dataset = read_beir(toy)
    for tag in ("dev", "test"):
        source = stage / f"eval-final-{tag}" / "output"
        choice = json.loads((stage / "fused-dev" / "output" / "fusion.json").read_text())
        fused = fuse_with_first_stage(read_run(source / "run.trec"), read_run(source / "run.reranked.trec"), 3,
                                      choice["method"], choice["dense_weight"])
        means, _ = compute_metrics(dataset.require_split(tag), fused, ["ndcg@5"])
        written = json.loads((stage / f"fused-{tag}" / "output" / "metrics.json").read_text())
        assert written["ndcg@5"] == pytest.approx(means["ndcg@5"], abs=1e-6)
        run = read_run(stage / f"fused-{tag}" / "output" / "run.trec")
        for qid, docs in fused.items():
            assert sorted(run[qid], key=lambda d: (-run[qid][d], d)) == sorted(docs, key=lambda d: (-docs[d], d))[:5]
            assert run[qid] == pytest.approx({d: docs[d] for d in run[qid]}, abs=1e-5)
    assert {(g["method"], g["dense_weight"]) for g in choice["grid"]} == {(m, w) for m in ("rrf", "minmax") for w in (0.3, 0.7)}
    assert max(g["ndcg@5"] for g in choice["grid"]) == pytest.approx(
        next(g["ndcg@5"] for g in choice["grid"] if (g["method"], g["dense_weight"]) == (choice["method"], choice["dense_weight"])))
    assert "train_1+reranker fused" in (tmp_path / "run" / "report.md").read_text()


def test_checkpoints_of_another_training_are_not_resumed(toy, tiny_model, tmp_path, caplog):
    """A stage changed since the killed run that left its checkpoints starts over (they are removed); the same
    stage resumes from its latest complete checkpoint."""
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine
    from rtune.pipeline.runner import resume_values
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    mine(MineConfig(dataset=toy, output=tmp_path / "mined", range="2-8", negatives=1, backfill="random"))
    checkpoints = tmp_path / "stage" / "checkpoints"
    config = TrainConfig(groups=tmp_path / "mined", output=tmp_path / "stage" / "output", model=str(tiny_model), batch_size=2,
                         learning_rate=1e-3, save_steps=1, checkpoint_dir=checkpoints)
    train_bi_encoder(config)
    assert resume_values(config) == {"resume_from_checkpoint": checkpoints / "checkpoint-3"}
    with caplog.at_level("WARNING"):
        assert resume_values(config.model_copy(update={"learning_rate": 1e-2})) == {}
    assert "belong to another training (learning_rate: 0.001 -> 0.01)" in caplog.text and not checkpoints.exists()


def test_a_checkpoint_does_not_resume_under_another_precision(toy, tiny_model, tmp_path, monkeypatch):
    """Checkpoints written in fp32 on a CPU belong to another training than one in bf16 on a GPU."""
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine
    from rtune.pipeline.runner import resume_values
    from rtune.train import checkpointing
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    mine(MineConfig(dataset=toy, output=tmp_path / "mined", range="2-8", negatives=1, backfill="random"))
    checkpoints = tmp_path / "stage" / "checkpoints"
    config = TrainConfig(groups=tmp_path / "mined", output=tmp_path / "stage" / "output", model=str(tiny_model), batch_size=2,
                         learning_rate=1e-3, save_steps=1, checkpoint_dir=checkpoints)
    train_bi_encoder(config)
    assert json.loads((checkpoints / checkpointing.IDENTITY_FILE).read_text())["compute"] == "cpu:fp32"
    monkeypatch.setattr(checkpointing, "compute_identity", lambda device, precision: "cuda:bf16")
    assert resume_values(config) == {} and not checkpoints.exists()


def test_the_whole_recipe_reranker_teacher_scores_and_distillation(toy, tiny_model, tmp_path):
    """BM25 negatives -> train -> cross-encoder -> its scores in the groups -> a KL student from the kept model,
    gated on dev: every stage's artifact is what the next one reads, and the report lists them all."""
    from rtune.data.groups import read_groups

    data = pipeline_dict(toy, tiny_model, tmp_path / "run")
    data["stages"] = [data["stages"][0], data["stages"][1],
                      {"name": "reranker", "stage": "train-reranker", "groups": "mine_bm25", "model": str(tiny_model),
                       "group_size": 2, "batch_size": 2, "epochs": 1, "dataset": None, "allow_collapsed": True},
                      {"name": "teacher", "stage": "score", "groups": "mine_bm25", "model": "reranker", "teacher": "cross_encoder"},
                      {"name": "distil", "stage": "train", "groups": "teacher", "model": "previous", "loss": "kl",
                       "group_size": 2, "batch_size": 2, "epochs": 1, "learning_rate": 1e-3, "keep_if_better": True}]
    path = write_pipeline(tmp_path, data)
    outcomes = run_pipeline(path, echo=lambda line: None)
    assert {"reranker", "teacher", "distil"} <= set(statuses(outcomes))
    run = tmp_path / "run"
    scored = list(read_groups(run / "teacher" / "output" / "groups.jsonl"))
    mined = list(read_groups(run / "mine_bm25" / "output" / "groups.jsonl"))
    assert [g.query for g in scored] == [g.query for g in mined]
    assert all(len(g.pos_scores) == len(g.pos) and len(g.neg_scores) == len(g.neg) for g in scored)
    assert all(math.isfinite(s) for g in scored for s in (*g.pos_scores, *g.neg_scores))
    teacher_manifest = json.loads((run / "teacher" / "output" / "manifest.json").read_text())
    assert str(run / "reranker" / "output") in json.dumps(teacher_manifest)  # the reranker stage's model scored them
    distil = json.loads((run / "distil" / "output" / "rtune_manifest.json").read_text())
    assert distil["config"]["loss"] == "kl" and distil["config"]["model"] == str(run / "train_1" / "output")
    rows = {r["label"]: r for r in json.loads((run / "systems.json").read_text())["systems"]}
    assert rows["distil"]["kind"] == "stage" and rows["distil"]["stage"] == "distil"
    final = "distil" if rows["distil"]["kept"] else "train_1"
    assert rows[f"{final}+reranker"]["kind"] == "reranked"  # the final kept model with the trained reranker
    report = (run / "report.md").read_text()
    assert "distil" in report and "teacher" in report and "reranker" in report
    # a rerun skips every stage: the chain's hashes are stable
    again = run_pipeline(path, echo=lambda line: None)
    assert all(o.status == "skipped" for o in again if o.name in ("reranker", "teacher", "distil"))


def test_controls_train_the_same_rows_in_batch_only_are_reported_and_can_gate(toy, tiny_model, tmp_path, monkeypatch):
    """eval.controls: each stage that trains on mined negatives gets an equal-budget control (same queries, rows,
    epochs, seed and start model; MNRL, group size 1), evaluated like a stage, in the report with its p-value; a
    `keep_if_better: control` stage no better than its control on dev is refused."""
    import rtune.pipeline.gate as gate
    import rtune.pipeline.runner as runner

    data = pipeline_dict(toy, tiny_model, tmp_path / "run")
    data["eval"]["controls"] = True
    data["eval"]["hybrid"] = True
    data["stages"][1]["keep_if_better"] = "control"
    original = gate.decide

    def control_wins(name, keep, metric, value, previous, previous_value, control=None, control_value=None):
        if name == "train_1":
            control_value = value + 0.5  # the control is better on dev
        return original(name, keep, metric, value, previous, previous_value, control, control_value)

    monkeypatch.setattr(runner, "decide", control_wins)
    lines: list[str] = []
    run_pipeline(write_pipeline(tmp_path, data), echo=lines.append)
    run = tmp_path / "run"
    for stage in ("train_1", "train_dense_1"):
        manifest = json.loads((run / stage / "control" / "output" / "rtune_manifest.json").read_text())
        stats, config = manifest["stats"], manifest["config"]
        assert config["loss"] == "mnrl" and config["group_size"] == 1 and config["rows_like_group_size"] == 2
        trained = json.loads((run / stage / "output" / "rtune_manifest.json").read_text())
        assert stats["rows"]["rows"] == trained["stats"]["rows"]["rows"]  # the same rows
        assert stats["optimizer_steps"] == trained["stats"]["optimizer_steps"]  # the same budget
        assert config["seed"] == trained["config"]["seed"] and config["model"] == trained["config"]["model"]
    systems = json.loads((run / "systems.json").read_text())["systems"]
    assert {s["label"] for s in systems if s["kind"] == "control"} == {"train_1 control", "train_dense_1 control"}
    assert any("REFUSED train_1 by keep_if_better" in line and "of train_1 control" in line
               and "later stages get train_1 control's model" in line for line in lines)
    # the plain fine-tune won: it is carried forward (the next round mines with it and trains from it)
    mined_with = json.loads((run / "mine_dense_1" / "output" / "manifest.json").read_text())["config"]["model"]
    assert Path(mined_with) == run / "train_1" / "control" / "output"
    report = (run / "report.md").read_text()
    assert "Each stage against its equal-budget control" in report and "| train_dense_1 | test |" in report
    systems_read, meta = read_systems(run)
    compared = against_controls(run, systems_read, meta["metric"])
    assert {(c["stage"], c["split"]) for c in compared} == {(s, split) for s in ("train_1", "train_dense_1") for split in ("dev", "test")}
    for c in compared:  # the report's rows are these
        assert f"| {c['stage']} | {c['split']} | {c['mean_difference']:.4f} |" in report
    final = json.loads((run / "systems.json").read_text())["final"]
    if final == "train_1 control":  # a hybrid of the final model, wherever it lives
        assert (run / "baselines" / "hybrid-train_1-control" / "eval-test" / "output" / "metrics.json").is_file()
    with pytest.raises(InputError, match="keep_if_better': control gates on the stage's control, but eval.controls is off"):
        data["eval"]["controls"] = False
        data["output"] = str(tmp_path / "other")
        run_pipeline(write_pipeline(tmp_path / "x", data), dry_run=True, echo=lambda line: None)
