"""The failure cases a demanding user still hit (issue: nothing lost, nothing silently wrong): each ends in one clear
error before expensive work, with a non-zero exit and nothing half-written or lost, or in a stated safe behaviour."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_runner import one_line, run_cli
from conftest import write_toy_groups
from rtune.data.groups import group_writer, read_groups
from rtune.data.records import TrainingGroup
from rtune.errors import InputError

SPLIT = ["--train", "0.5", "--dev", "0.25", "--test", "0.25"]




# 1. teacher scores beyond float32, NaN training, a NaN model -----------------------------------------------------

@pytest.mark.parametrize("score", [1e39, 1e308, -1e39])
def test_teacher_scores_beyond_float32_are_refused_naming_the_line(tmp_path, score, capsys):
    path = tmp_path / "groups.jsonl"
    with group_writer(path) as write:
        write(TrainingGroup(query="q1", pos=("p",), neg=("n",), pos_scores=(1.0,), neg_scores=(0.5,)))
        write(TrainingGroup(query="q2", pos=("p",), neg=("n",), pos_scores=(score,), neg_scores=(0.5,)))
    with pytest.raises(InputError, match=r"groups.jsonl:2: field 'pos_scores'\[0\] must be a finite number within float32"):
        list(read_groups(path))
    assert run_cli("train", "--groups", str(path), "--output", str(tmp_path / "m"), "--loss", "kl") == 2
    assert "float32" in one_line(capsys.readouterr().err) and not (tmp_path / "m").exists()


def test_a_training_whose_loss_goes_nan_stops_naming_the_step_and_saves_nothing(tiny_model, tmp_path, monkeypatch):
    import torch

    import rtune.train.bi_encoder as bi_encoder
    from rtune.models.finite import NotFinite
    from rtune.train.config import TrainConfig

    class NanLoss(torch.nn.Module):
        """A loss that goes NaN at its third call (the model's weights then go NaN too)."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model, self.calls = model, 0

        def forward(self, features, labels):
            self.calls += 1
            embeddings = self.model(features[0])["sentence_embedding"]
            return embeddings.sum() * (float("nan") if self.calls >= 3 else 0.0)

    monkeypatch.setattr(bi_encoder, "build_loss", lambda model, config: NanLoss(model))
    groups = write_toy_groups(tmp_path / "groups.jsonl", negatives=1)
    config = TrainConfig(groups=groups, output=tmp_path / "model", model=str(tiny_model), batch_size=2, group_size=2)
    with pytest.raises(NotFinite, match=r"the training loss became nan by optimiser step \d+ of \d+"):
        bi_encoder.train_bi_encoder(config)
    assert not (tmp_path / "model").exists()


def test_a_model_with_nan_weights_is_not_evaluated(tiny_model, toy_beir, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    weights = next(broken.rglob("model.safetensors"))
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name][0] = float("nan")
    save_file(tensors, weights)
    assert run_cli("eval", "--dataset", str(toy_beir), "--model", str(broken), "--no-cache") == 2
    err = one_line(capsys.readouterr().err)
    assert "holds NaN or infinite weights" in err and str(broken) in err


# 2-4. run folders, references, stage names ----------------------------------------------------------------------

def _pipeline(tmp_path: Path, dataset: Path, model: Path, output: Path, stages: list[dict], **extra) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dataset": str(dataset), "base_model": str(model), "output": str(output),
                                    "eval": {"ks": [1, 5], "metric": "ndcg@5", "hybrid": False}, "stages": stages, **extra}))
    return path


MINE = {"name": "mine_bm25", "stage": "mine", "range": "2-8", "negatives": 1, "backfill": "random"}


def test_run_refuses_a_folder_of_the_users_files_and_the_dataset_folder(toy_beir, tiny_model, tmp_path, capsys):
    mine_folder = tmp_path / "notes"
    mine_folder.mkdir()
    (mine_folder / "report.md").write_text("my own report")
    (mine_folder / "run.log").write_text("my log\n")
    path = _pipeline(tmp_path, toy_beir, tiny_model, mine_folder, [MINE])
    assert run_cli("run", str(path)) == 2
    assert "is not empty and is not an rtune run folder" in one_line(capsys.readouterr().err)
    assert (mine_folder / "report.md").read_text() == "my own report" and (mine_folder / "run.log").read_text() == "my log\n"
    assert sorted(p.name for p in mine_folder.iterdir()) == ["report.md", "run.log"]
    for output in (toy_beir, toy_beir / "runs"):  # the dataset itself, or a folder inside it
        path = _pipeline(tmp_path, toy_beir, tiny_model, output, [MINE])
        assert run_cli("run", str(path)) == 2
        assert "the input given as pipeline field 'dataset'" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in toy_beir.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]


def test_a_misspelt_reference_is_an_error_at_validation_naming_what_it_could_mean(toy_beir, tiny_model, tmp_path, capsys):
    stages = [MINE, {"name": "train_1", "stage": "train", "groups": "mine_bm52", "batch_size": 2}]
    path = _pipeline(tmp_path, toy_beir, tiny_model, tmp_path / "run", stages)
    assert run_cli("run", str(path), "--dry-run") == 2
    err = one_line(capsys.readouterr().err)
    assert "stage 'train_1' (train): field 'groups': 'mine_bm52' is not an earlier stage" in err
    assert "did you mean 'mine_bm25'?" in err and not (tmp_path / "run").exists()
    path = _pipeline(tmp_path, toy_beir, tmp_path / "models" / "missing", tmp_path / "run", [MINE])
    assert run_cli("run", str(path), "--dry-run") == 2
    assert "pipeline field 'base_model': no such model folder" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["report.md", "run.log", "plan.json", "results.csv", "systems.json", "report.html",
                                  "checkpoints", "x" * 200, "a/b", ".hidden"])
def test_stage_names_that_would_collide_with_run_files_or_break_the_file_system_are_refused(toy_beir, tiny_model, tmp_path,
                                                                                            name, capsys):
    path = _pipeline(tmp_path, toy_beir, tiny_model, tmp_path / "run", [{**MINE, "name": name}])
    assert run_cli("run", str(path), "--dry-run") == 2
    assert "field 'name'" in one_line(capsys.readouterr().err)


# 5, 10. prepare's output ---------------------------------------------------------------------------------------

def test_prepare_into_the_current_folder_is_refused_before_any_work(squad_file, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    for extra in ([], ["--overwrite"]):
        assert run_cli("prepare", str(squad_file), "--output", ".", *SPLIT, *extra) == 2
        assert "the output is the current folder" in one_line(capsys.readouterr().err)
    assert sorted(os.listdir(work)) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == sorted(["squad.json", "work"])


def test_overwrite_replaces_only_what_rtune_wrote(squad_file, tmp_path, capsys):
    users = tmp_path / "users"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for target in (users, a_file):
        assert run_cli("prepare", str(squad_file), "--output", str(target), *SPLIT, "--overwrite") == 2
        assert "--overwrite replaces only an output rtune wrote" in one_line(capsys.readouterr().err)
    assert (users / "thesis.tex").read_text() == "years of work" and a_file.read_text() == "keep me"
    ours = tmp_path / "ours"
    assert run_cli("prepare", str(squad_file), "--output", str(ours), *SPLIT) == 0
    assert run_cli("prepare", str(squad_file), "--output", str(ours), *SPLIT, "--seed", "3", "--overwrite") == 0
    assert json.loads((ours / "manifest.json").read_text())["config"]["seed"] == 3


# 6. a full disk ------------------------------------------------------------------------------------------------

def test_a_full_disk_names_the_output_keeps_the_previous_one_and_is_not_called_a_bug(squad_file, tmp_path, monkeypatch,
                                                                                   capsys):
    import rtune.data.prepare as prepare

    out = tmp_path / "out"
    assert run_cli("prepare", str(squad_file), "--output", str(out), *SPLIT) == 0
    before = (out / "corpus.jsonl").read_bytes()

    def full(folder, dataset):
        (folder / "corpus.jsonl").write_bytes(b"x" * 3_000_000)
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "queries.jsonl"))

    monkeypatch.setattr(prepare, "write_beir", full)
    assert run_cli("prepare", str(squad_file), "--output", str(out), *SPLIT, "--overwrite") == 1
    err = one_line(capsys.readouterr().err)
    assert f"no space left on the device for {out}: the output had reached 3.0 MB" in err
    assert "bug" not in err and "internal error" not in err
    assert (out / "corpus.jsonl").read_bytes() == before  # the previous output is kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing partial left


def test_a_failed_pipeline_step_leaves_no_empty_stage_folder(toy_beir, tiny_model, tmp_path):
    from rtune.pipeline.runner import run_pipeline

    path = _pipeline(tmp_path, toy_beir, tiny_model, tmp_path / "run", [{**MINE, "range": "2-3", "negatives": 5}])
    with pytest.raises(InputError, match="step 'mine_bm25'"):
        run_pipeline(path, echo=lambda line: None)
    assert not (tmp_path / "run" / "mine_bm25").exists()


# 7. SIGTERM ------------------------------------------------------------------------------------------------------

STALL_TRAIN = """
import time
import rtune.train.bi_encoder as bi_encoder

real = bi_encoder.train_bi_encoder

def slow(config):
    print("working", flush=True)
    time.sleep(120)
    return real(config)

bi_encoder.TRAIN = bi_encoder.TRAIN.__class__(**{**bi_encoder.TRAIN.__dict__, "run": slow})
import rtune.pipeline.registry as registry
registry.STAGES["train"] = bi_encoder.TRAIN
"""


def test_sigterm_unwinds_like_ctrl_c_exits_143_and_releases_the_lock(toy_beir, tiny_model, tmp_path):
    from rtune.pipeline.lock import run_lock

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STALL_TRAIN)
    run = tmp_path / "run"
    path = _pipeline(tmp_path, toy_beir, tiny_model, run, [MINE, {"name": "train_1", "stage": "train", "batch_size": 2}])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    child = subprocess.Popen([sys.executable, "-m", "rtune.cli", "run", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    for line in child.stdout:  # the pipeline's one line per step, then the stalled stage's "working"
        if line.startswith("working"):
            break
        assert time.time() < deadline
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 143, stderr
    assert "terminated (SIGTERM): finished stages are kept" in one_line(stderr) and "Traceback" not in stderr
    assert (run / "mine_bm25" / "stage_manifest.json").is_file()  # the finished stage is kept
    assert not (run / "train_1").exists() or not any((run / "train_1").iterdir())
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    with run_lock(run):  # released
        pass


# 8. SQuAD questions without an answer -------------------------------------------------------------------------

def _squad_with_unanswerable(tmp_path: Path) -> Path:
    data = []
    for a in range(4):
        paragraphs = []
        for p in range(2):
            qas = [{"id": f"a{a}p{p}q0", "question": f"What about topic{a} part{p}?",
                    "answers": [{"text": f"topic{a}", "answer_start": 0}]},
                   {"id": f"a{a}p{p}q1", "question": f"Impossible {a} {p}?", "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "x", "answer_start": 0}]},
                   {"id": f"a{a}p{p}q2", "question": f"No answers {a} {p}?", "answers": []}]
            paragraphs.append({"context": f"topic{a} part{p} text.", "qas": qas})
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    path = tmp_path / "squad2.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def test_unanswerable_squad_questions_are_skipped_with_a_count_or_kept_apart(tmp_path, capsys):
    from rtune.data.beir import read_beir

    raw = _squad_with_unanswerable(tmp_path)
    assert run_cli("prepare", str(raw), "--output", str(tmp_path / "skip"), *SPLIT) == 0
    out = capsys.readouterr().out
    assert "questions without an answer (not queries: no positive): 16, skipped" in one_line(out)
    dataset = read_beir(tmp_path / "skip")
    assert len(dataset.queries) == 8 and all(q.endswith("q0") for q in dataset.queries)
    report = json.loads((tmp_path / "skip" / "split_report.json").read_text())
    assert report["dropped"]["unanswerable"] == 16
    assert not (tmp_path / "skip" / "unanswerable.jsonl").exists()
    assert run_cli("prepare", str(raw), "--output", str(tmp_path / "keep"), *SPLIT, "--unanswerable", "keep") == 0
    kept = [json.loads(line) for line in (tmp_path / "keep" / "unanswerable.jsonl").read_text().splitlines()]
    assert len(kept) == 16 and {k["paragraph"] for k in kept} <= set(read_beir(tmp_path / "keep").corpus)
    assert len(read_beir(tmp_path / "keep").queries) == 8


# 9. YAML duplicate keys, empty --set values ---------------------------------------------------------------------

def test_a_key_given_twice_in_the_yaml_is_an_error_naming_both_lines(toy_beir, tiny_model, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(f"dataset: {toy_beir}\nbase_model: {tiny_model}\nstages:\n"
                    "  - name: mine_bm25\n    stage: mine\n    stage: train\n")
    assert run_cli("run", str(path), "--dry-run") == 2
    assert f"{path}:6: key 'stage' is given twice (lines 5 and 6)" in one_line(capsys.readouterr().err)
    config = tmp_path / "mine.yaml"
    config.write_text("negatives: 3\nrange: 2-8\nnegatives: 5\n")
    assert run_cli("mine", "--config", str(config), "--dataset", str(toy_beir), "--output", str(tmp_path / "m")) == 2
    assert "key 'negatives' is given twice (lines 1 and 3)" in one_line(capsys.readouterr().err)


def test_an_empty_set_value_is_an_error_naming_the_key(toy_beir, tiny_model, tmp_path, capsys):
    path = _pipeline(tmp_path, toy_beir, tiny_model, tmp_path / "run", [MINE])
    assert run_cli("run", str(path), "--set", "output=", "--dry-run") == 2
    assert "--set 'output=': no value for 'output'" in one_line(capsys.readouterr().err)
