"""The CLI: each stage end to end on toy data; bad input -> one message, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rtune.cli import main


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main([*args])
    return done.value.code


def test_prepare_mine_eval_from_the_command_line(squad_file, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare", str(squad_file), "--output", str(data), "--train", "0.5", "--dev", "0.25", "--test", "0.25"]) is None
    assert sorted(p.name for p in (data / "qrels").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["stage"] == "prepare" and manifest["stats"]["sizes"]["train"]["queries"] == 8
    main(["mine", "--dataset", str(data), "--output", str(tmp_path / "mined"), "--range", "1-8", "--negatives", "2"])
    assert len((tmp_path / "mined" / "groups.jsonl").read_text().splitlines()) == 8
    main(["eval", "--dataset", str(data), "--model", "bm25", "--ks", "1,10", "--metrics", "mrr,recall"])
    out = capsys.readouterr().out
    assert "│ mrr    │ 1.0000 │ 1.0000 │" in out and "@10" in out and "ndcg" not in out


def test_config_file_and_flags(squad_file, tmp_path, capsys):
    config = tmp_path / "prepare.yaml"
    config.write_text(f"input: {squad_file}\noutput: {tmp_path / 'from_yaml'}\ntrain: 0.5\ndev: 0.25\ntest: 0.25\n")
    main(["prepare", "--config", str(config)])
    assert (tmp_path / "from_yaml" / "corpus.jsonl").is_file()
    config.write_text(f"input: {squad_file}\noutput: {tmp_path / 'other'}\ninputt: x\n")
    assert run_cli("prepare", "--config", str(config)) == 2
    assert "unknown option 'inputt'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["prepare", "{bad}", "--output", "{out}"], "bad.jsonl:2: malformed JSON"),
        (["prepare", "{squad}", "--output", "{out}", "--train", "0.9", "--dev", "0.05", "--test", "0.05"], "leaves the 'dev' split empty"),
        (["prepare", "{squad}"], "missing required option --output"),
        (["mine", "--dataset", "{squad_dir}", "--output", "{out}", "--range", "2-1"], "--range"),
        (["eval", "--dataset", "{squad_dir}", "--ks", "0"], "positive"),
    ],
)
def test_bad_input_exits_2_with_one_message(args, message, squad_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?", "passage": "fine"}\n{"question": \n')
    subs = {"{bad}": str(bad), "{out}": str(tmp_path / "out"), "{squad}": str(squad_file), "{squad_dir}": str(tmp_path / "ds")}
    main(["prepare", str(squad_file), "--output", str(tmp_path / "ds"), "--train", "0.5", "--dev", "0.25", "--test", "0.25"])
    env = dict(os.environ, COLUMNS="300")
    result = subprocess.run([sys.executable, "-m", "rtune.cli", *[subs.get(a, a) for a in args]],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_overwritten_silently(squad_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert run_cli("prepare", str(squad_file), "--output", str(out), "--train", "0.5", "--dev", "0.25", "--test", "0.25") == 2
    assert (out / "precious.txt").read_text() == "keep me"
    # --overwrite replaces only what rtune wrote: a folder of the user's own files is refused all the same
    assert run_cli("prepare", str(squad_file), "--output", str(out), "--train", "0.5", "--dev", "0.25", "--test", "0.25",
                   "--overwrite") == 2
    assert (out / "precious.txt").read_text() == "keep me" and not (out / "corpus.jsonl").exists()


def test_run_command_plans_a_pipeline_and_refuses_a_bad_one(squad_file, tmp_path, capsys):
    from conftest import REPO

    example = REPO / "examples" / "squad-cpu.yaml"
    main(["run", str(example), "--set", f"dataset={squad_file}", "--set", f"output={tmp_path / 'run'}", "--dry-run"])
    out = capsys.readouterr().out
    assert "train_dense_1" in out and "would run" in out and not (tmp_path / "run" / "train_1").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"dataset: {squad_file}\nstages:\n  - {{name: prepare, stage: prepare, trian: 0.5}}\n")
    assert run_cli("run", str(bad)) == 2
    assert "trian" in capsys.readouterr().err
