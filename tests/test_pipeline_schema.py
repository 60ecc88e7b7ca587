"""rtune run: schema validation, references, rounds, overrides, the lock, fusion, comparison helpers (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from rtune.errors import InputError
from rtune.pipeline.plan import BASE, build_plan


def _raw(dataset: Path, stages: list[dict], **extra) -> dict:
    return {"dataset": str(dataset), "base_model": "base-model-id", "seed": 3, "stages": stages, **extra}


MINE = {"name": "mine_bm25", "stage": "mine", "range": "2-8", "negatives": 1}
TRAIN = {"name": "train_1", "stage": "train", "epochs": 1}


def test_unknown_stage_field_names_stage_and_field(toy_beir):
    with pytest.raises(InputError, match=r"stage 'train_1' \(train\): unknown field 'epoch'"):
        build_plan(_raw(toy_beir, [MINE, {**TRAIN, "epoch": 2}]))


def test_bad_stage_value_names_stage_and_field(toy_beir):
    with pytest.raises(InputError, match=r"stage 'train_1' \(train\): field 'epochs'"):
        build_plan(_raw(toy_beir, [MINE, {**TRAIN, "epochs": 0}]))
    with pytest.raises(InputError, match=r"stage 'mine_bm25' \(mine\): field 'strategy': unknown strategy"):
        build_plan(_raw(toy_beir, [{**MINE, "strategy": "best"}]))


def test_unknown_pipeline_key_and_stage_kind(toy_beir):
    with pytest.raises(InputError, match=r"pipeline field 'sead': unknown field"):
        build_plan(_raw(toy_beir, [MINE], sead=1))
    with pytest.raises(InputError, match=r"stage 'x': field 'stage': unknown stage kind 'distil'; valid: prepare, mine"):
        build_plan(_raw(toy_beir, [{"name": "x", "stage": "distil"}]))
    with pytest.raises(InputError, match=r"pipeline field 'eval.metric'|pipeline eval settings"):
        build_plan(_raw(toy_beir, [MINE], eval={"metric": "ndcg"}))


def test_names_are_unique_and_references_point_backwards(toy_beir):
    with pytest.raises(InputError, match=r"stage 'mine_bm25': field 'name': the name is used twice"):
        build_plan(_raw(toy_beir, [MINE, MINE]))
    with pytest.raises(InputError, match=r"stage 'train_1' \(train\): field 'groups' refers to stage 'mine_late'"):
        build_plan(_raw(toy_beir, [MINE, {**TRAIN, "groups": "mine_late"}, {**MINE, "name": "mine_late"}]))
    with pytest.raises(InputError, match=r"field 'output' is set by the pipeline"):
        build_plan(_raw(toy_beir, [{**MINE, "output": "x"}]))


def test_references_and_defaults_resolve_to_stage_names(toy_beir):
    plan = build_plan(_raw(toy_beir, [MINE, TRAIN, {"name": "dense", "stage": "mine", "method": "dense", "model": "train_1",
                                                    "previous_groups": "mine_bm25"}]))
    train, dense = plan.stage("train_1"), plan.stage("dense")
    assert train.refs == {"groups": "mine_bm25", "model": BASE, "dataset": "dataset"}
    assert dense.refs["model"] == "train_1" and dense.refs["previous_groups"] == "mine_bm25"
    assert "model" not in dense.settings


def test_rounds_expand_once_declared(toy_beir):
    rounds = {"rounds": {"count": 2, "mine": {"range": "2-8", "negatives": 1}, "train": {"epochs": 1}, "keep_if_better": True}}
    plan = build_plan(_raw(toy_beir, [MINE, TRAIN, rounds]))
    assert [s.name for s in plan.stages] == ["mine_bm25", "train_1", "mine_dense_1", "train_dense_1", "mine_dense_2", "train_dense_2"]
    assert plan.stage("mine_dense_1").refs["model"] == "train_1"
    assert plan.stage("train_dense_2").refs == {"model": "train_dense_1", "groups": "mine_dense_2", "dataset": "dataset"}
    assert plan.stage("train_dense_2").keep_if_better and plan.stage("mine_dense_2").settings["method"] == "dense"
    with pytest.raises(InputError, match=r"rounds block 3: field 'train.epoch'|stage 'train_dense_1' \(train\): unknown field 'epoch'"):
        build_plan(_raw(toy_beir, [MINE, TRAIN, {"rounds": {"count": 1, "train": {"epoch": 1}}}]))


def test_set_overrides_reach_stages_rounds_and_pipeline(toy_beir):
    rounds = {"rounds": {"count": 1, "mine": {"range": "2-8", "negatives": 1}}}
    plan = build_plan(_raw(toy_beir, [MINE, TRAIN, rounds]),
                      ["stages.train_1.epochs=2", "stages.dense.train.learning_rate=1e-4", "seed=9", "eval.ks=[1, 3]"])
    assert plan.stage("train_1").settings["epochs"] == 2
    assert plan.stage("train_dense_1").settings["learning_rate"] == 1e-4
    assert plan.pipeline.seed == 9 and plan.pipeline.eval.ks == [1, 3]
    with pytest.raises(InputError, match=r"--set: no stage 'trian'; stages: mine_bm25, train_1, dense"):
        build_plan(_raw(toy_beir, [MINE, TRAIN, rounds]), ["stages.trian.epochs=2"])
    with pytest.raises(InputError, match=r"stage 'train_1' \(train\): field 'epochs'"):
        build_plan(_raw(toy_beir, [MINE, TRAIN]), ["stages.train_1.epochs=zero"])


def test_raw_dataset_needs_a_prepare_stage(tmp_path, squad_file):
    with pytest.raises(InputError, match=r"pipeline field 'dataset': without a 'prepare' stage"):
        build_plan(_raw(squad_file, [MINE]))
    plan = build_plan(_raw(squad_file, [{"name": "prep", "stage": "prepare", "split_by": "group"}, MINE]))
    assert plan.stage("prep").refs == {"input": "dataset"} and plan.stage("mine_bm25").refs == {"dataset": "prep"}


def test_pipeline_file_errors_name_the_file(tmp_path, toy_beir):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_raw(toy_beir, [{**MINE, "negatives": 0}])))
    from rtune.pipeline.plan import load_plan

    with pytest.raises(InputError, match=rf"{path}: stage 'mine_bm25' \(mine\): field 'negatives'"):
        load_plan(path)


# the lock ---------------------------------------------------------------------------------------------------
HOLD_LOCK = """
import sys, time
from pathlib import Path
from rtune.pipeline.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    """A process that takes the run lock of `folder` and holds it for `seconds` (once it printed "held")."""
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_lock_refuses_a_live_holder_and_is_free_the_moment_it_is_killed(tmp_path):
    from rtune.pipeline.lock import run_lock

    holder = _holder(tmp_path, 60)
    try:
        with pytest.raises(InputError, match=rf"another run \(process {holder.pid} on .*started"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs; the kernel drops the lock
        holder.wait()
    with run_lock(tmp_path):
        pass


def test_a_reused_pid_in_a_stale_owner_record_does_not_block(tmp_path):
    """The owner record names a live process (this test's parent) that holds no lock: a pid-based lock took it for a
    live run and refused; the OS lock knows nobody holds it."""
    import socket

    from rtune.pipeline.lock import LOCK_NAME, OWNER_NAME, run_lock

    stale = {"pid": os.getppid(), "host": socket.gethostname(), "started": "t"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    (tmp_path / OWNER_NAME).write_text(json.dumps(stale))
    with run_lock(tmp_path):
        assert json.loads((tmp_path / OWNER_NAME).read_text())["pid"] == os.getpid()


RACE = """
import sys, time
from pathlib import Path
from rtune.errors import InputError
from rtune.pipeline.lock import run_lock
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    with run_lock(Path(sys.argv[1])):
        print("won", flush=True)
        time.sleep(2)
except InputError:
    print("refused", flush=True)
"""


def test_of_runs_racing_for_a_dead_runs_lock_exactly_one_proceeds(tmp_path):
    import time

    holder = _holder(tmp_path, 60)
    holder.kill()
    holder.wait()
    start = time.time() + 1.5
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    outcomes = sorted(r.communicate(timeout=60)[0].strip() for r in racers)
    assert outcomes == ["refused", "refused", "refused", "won"]


# fusion -----------------------------------------------------------------------------------------------------
LEXICAL = {"q1": {"a": 10.0, "b": 6.0, "c": 2.0}, "q2": {"x": 1.0}}
DENSE = {"q1": {"b": 0.9, "c": 0.8, "d": 0.5}, "q3": {"y": 0.4, "z": 0.2}}


def test_minmax_fusion_matches_hand_computation():
    from rtune.index.fusion import fuse_runs

    fused = fuse_runs(LEXICAL, DENSE, "minmax", 0.25)
    # lexical min-max: a 1, b .5, c 0; dense: b 1, c .75, d 0
    assert fused["q1"] == pytest.approx({"a": 0.75, "b": 0.75 * 0.5 + 0.25, "c": 0.25 * 0.75, "d": 0.0})
    assert fused["q2"] == pytest.approx({"x": 0.0}) and fused["q3"] == pytest.approx({"y": 0.25, "z": 0.0})


def test_rrf_fusion_matches_hand_computation():
    from rtune.index.fusion import fuse_runs

    fused = fuse_runs(LEXICAL, DENSE, "rrf", 0.5, k=60)
    expected = {"a": 0.5 / 61, "b": 0.5 / 62 + 0.5 / 61, "c": 0.5 / 63 + 0.5 / 62, "d": 0.5 / 63}
    assert fused["q1"] == pytest.approx(expected)
    with pytest.raises(InputError, match="unknown fusion method 'sum'; valid: rrf, minmax"):
        fuse_runs(LEXICAL, DENSE, "sum")


def test_fusion_choice_is_the_best_on_the_given_split():
    from rtune.eval.fused import choose_fusion

    qrels = {"q1": {"c": 1}}
    choice = choose_fusion({"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q1": {"c": 0.9, "a": 0.1, "b": 0.0}}, qrels,
                           ["ndcg@1"], "ndcg@1", [0.2, 0.8])
    assert (choice["method"], choice["dense_weight"]) == ("rrf", 0.8)
    assert {(g["method"], g["dense_weight"]) for g in choice["grid"]} == {("rrf", 0.2), ("rrf", 0.8), ("minmax", 0.2), ("minmax", 0.8)}


def test_eval_hybrid_mode(toy_beir, tiny_model):
    from rtune.eval.evaluate import EvalConfig, evaluate

    with pytest.raises(ValidationError, match="unknown --fusion 'sum'"):
        EvalConfig(dataset=toy_beir, model=str(tiny_model), hybrid="bm25", fusion="sum")
    bm25 = evaluate(EvalConfig(dataset=toy_beir, model="bm25", split="train", ks=[1, 5]))
    dense = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5]))
    # rrf at weight 0 keeps BM25's order (documents only the dense run found come after, at 0)
    all_lexical = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5], hybrid="bm25",
                                      fusion="rrf", dense_weight=0.0))
    all_dense = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5], hybrid="bm25",
                                    fusion="minmax", dense_weight=1.0))
    assert all_lexical["ndcg@1"] == pytest.approx(bm25["ndcg@1"])
    assert all_dense["ndcg@1"] == pytest.approx(dense["ndcg@1"])


# report helpers ---------------------------------------------------------------------------------------------
def test_gate_refuses_only_a_worse_model():
    from rtune.pipeline.gate import decide

    assert not decide("s", True, "ndcg@10", 0.4, "prev", 0.5)["kept"]
    assert decide("s", True, "ndcg@10", 0.5, "prev", 0.5)["kept"]
    assert decide("s", False, "ndcg@10", 0.1, "prev", 0.5)["kept"]


def test_load_rows_reads_eval_folders_run_folders_and_csvs(tmp_path):
    from rtune.pipeline.compare import load_rows

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"ndcg@10": 0.5}))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.csv").write_text("system,kind,settings.epochs,dev.ndcg@10,test.ndcg@10\nbm25,baseline,,0.7,0.6\n"
                                                  "train_1,stage,2,0.8,0.65\n")
    rows = load_rows([str(tmp_path / "eval"), str(tmp_path / "run"), str(tmp_path / "run" / "results.csv")],
                     ["eval", "run", "csv"])
    assert rows == {"eval": {"ndcg@10": 0.5}, "run/bm25": {"ndcg@10": 0.6}, "run/train_1": {"ndcg@10": 0.65},
                    "csv/bm25": {"ndcg@10": 0.6}, "csv/train_1": {"ndcg@10": 0.65}}
    with pytest.raises(InputError, match="no metrics.json or results.csv here"):
        load_rows([str(tmp_path)])


def test_a_failing_stage_is_named_and_left_without_manifest(toy_beir, tmp_path):
    from rtune.pipeline.runner import run_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**_raw(toy_beir, [{**MINE, "range": "2-3", "negatives": 5}]), "output": str(tmp_path / "run")}))
    with pytest.raises(InputError, match=r"step 'mine_bm25': .*--negatives 5 is more than the range 2-3"):
        run_pipeline(path, echo=lambda line: None)
    assert not (tmp_path / "run" / "mine_bm25" / "stage_manifest.json").exists()
    from rtune.pipeline.lock import run_lock

    with run_lock(tmp_path / "run"):  # released on failure
        pass


@pytest.mark.parametrize("example", sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_pipeline_validates(example, squad_file, tmp_path):
    """The shipped examples pass the schema (stage names, fields, references) as written, with their dataset
    swapped for a local one of the same form (a raw SQuAD file or a BEIR folder), so no data is needed."""
    from conftest import write_beir
    from rtune.pipeline.plan import load_plan

    raw = str(yaml.safe_load(example.read_text())["dataset"]).endswith(".json")
    dataset = squad_file if raw else write_beir(tmp_path / "beir")
    plan = load_plan(example, [f"output={tmp_path / 'run'}", f"dataset={dataset}"])
    assert plan.stages


def test_the_committed_json_schema_is_the_registrys_and_editors_can_validate_with_it(tmp_path):
    """docs/pipeline.schema.json is what `rtune schema` prints now (regenerate it after changing a stage), and a
    JSON Schema validator accepts every example and names an unknown stage field."""
    import jsonschema

    from conftest import REPO
    from rtune.pipeline.schema import pipeline_json_schema

    committed = json.loads((REPO / "docs" / "pipeline.schema.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(pipeline_json_schema())), "run: rtune schema --output docs/pipeline.schema.json"
    validator = jsonschema.Draft202012Validator(committed)
    for example in sorted((REPO / "examples").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(example.read_text())))
        assert not errors, (example.name, errors[0].message)
    bad = yaml.safe_load((REPO / "examples" / "squad-cpu.yaml").read_text())
    bad["stages"][1]["epoch"] = 2
    assert list(validator.iter_errors(bad))
