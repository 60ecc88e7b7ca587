"""The CLI under failure: Ctrl-C, kills, unwritable paths, usage errors, bugs and confusing messages.

Interrupts and kills are real signals sent to child processes; a child signals "working" on stdout,
so no test depends on timing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_runner import one_line, run_cli
from rtune import __version__
from rtune.cli import main
from rtune.index.embedding_cache import EmbeddingCache
from rtune.pipeline.registry import STAGES

SPLIT = ["--train", "0.5", "--dev", "0.25", "--test", "0.25"]
ENV = dict(os.environ, COLUMNS="300", HF_HUB_OFFLINE="1")




def start_child(code: str, *args: str, hook: Path | None = None) -> subprocess.Popen:
    """A child Python running `code` (with `hook` importable as sitecustomize); returns once it printed "working"."""
    env = dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [str(hook), ENV.get("PYTHONPATH")]))) if hook else ENV
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    line = child.stdout.readline()
    assert line.startswith("working"), (line, child.stderr.read() if child.poll() is not None else "")
    return child


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- item 2: Ctrl-C ---------------------------------------------------------------------------------

STALL_PREPARE = """
import sys, time
import rtune.data.prepare as prepare

def stalled_write(folder, dataset):  # halfway through writing the output, then wait for Ctrl-C
    (folder / "corpus.jsonl").write_text("half")
    print("working", folder, flush=True)
    time.sleep(120)

prepare.write_beir = stalled_write
"""


def test_ctrl_c_exits_130_with_one_line_and_writes_nothing(squad_file, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STALL_PREPARE)
    out = tmp_path / "out"
    child = start_child("import runpy; runpy.run_module('rtune.cli', run_name='__main__')",
                        "prepare", str(squad_file), "--output", str(out), *SPLIT, hook=hook)
    assert temporaries(tmp_path)  # the child is writing its temporary output folder
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert lines == [f"interrupted: rtune prepare stopped before finishing; nothing was written to {out}"], stderr
    assert "Traceback" not in stderr
    assert not out.exists() and temporaries(tmp_path) == []


# --- item 3: usage errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, expected", [
    ([], 2, "Usage: rtune"),
    (["--version"], 0, __version__),
    (["bogus"], 2, "No such command 'bogus'"),
    (["--bogus"], 2, "No such option"),
    (["prepare", "--bogus"], 2, "No such option '--bogus'"),
    (["compare"], 2, "Missing argument"),
])
def test_usage_errors_end_with_usage_not_a_traceback(args, code, expected, capsys):
    assert run_cli(*args) == code
    out = capsys.readouterr()
    text = out.out + out.err
    assert expected in text and "Traceback" not in text
    if code == 2:
        assert "Usage: rtune" in text


# --- item 4: unwritable outputs and caches ------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["prepare", "{missing}"],
    ["mine", "--dataset", "{missing}"],
    ["train", "--groups", "{missing}"],
    ["eval", "--dataset", "{missing}"],
])
def test_unwritable_output_fails_before_any_work(args, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "out"
    # the inputs do not exist: an error about them would mean the output was checked too late
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in args] + ["--output", str(out)]
    assert run_cli(*argv) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{out}: cannot write the output here: {blocker} is a file, not a folder" in err
    assert "missing" not in err.replace(str(out), "")
    assert temporaries(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_a_read_only_folder_fails_before_any_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert run_cli("eval", "--dataset", str(tmp_path / "missing"), "--output", str(locked / "out")) == 2
    finally:
        locked.chmod(0o755)
    assert "cannot write the output here" in one_line(capsys.readouterr().err)


def test_cache_dir_that_is_a_file_is_an_error_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    assert run_cli("eval", "--dataset", str(tmp_path / "missing"), "--model", "m", "--cache-dir", str(blocker)) == 2
    err = one_line(capsys.readouterr().err)
    assert f"cannot write the embedding cache (--cache-dir) here: {blocker} is a file" in err


def test_unwritable_cache_degrades_to_no_cache_with_a_warning(tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    texts = ["a", "b", "c"]
    with caplog.at_level(logging.WARNING, logger="rtune"):
        matrix = EmbeddingCache(blocker).get_or_encode({"model": "m"}, texts, lambda batch: np.ones((len(batch), 2)))
    assert matrix.shape == (3, 2) and np.all(matrix == 1)
    assert f"embedding cache {blocker} cannot be written" in caplog.text and "without the cache" in caplog.text
    assert blocker.read_text() == "not a folder"


# --- item 5: leftovers of killed runs -----------------------------------------------------------------

HOLD_OUTPUT = """
import sys, time
from rtune.data.atomic import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "checkpoint.bin").write_bytes(b"0" * 1000)
    print("working", tmp, flush=True)
    time.sleep(120)
"""


def test_a_rerun_removes_what_a_killed_run_left_and_spares_a_live_one(squad_file, tmp_path, caplog):
    out = tmp_path / "out"
    killed = start_child(HOLD_OUTPUT, str(out))
    live = start_child(HOLD_OUTPUT, str(tmp_path / "other"))  # another output, still being written
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        left = [tmp_path / name for name in temporaries(tmp_path) if name.startswith(".out.")]
        assert len(left) == 1 and (left[0] / "checkpoint.bin").is_file()  # what a kill leaves behind
        live_tmp = [tmp_path / name for name in temporaries(tmp_path) if name.startswith(".other.")]
        with caplog.at_level(logging.INFO, logger="rtune"):
            assert main(["prepare", str(squad_file), "--output", str(out), *SPLIT]) is None
        assert not left[0].exists() and (out / "corpus.jsonl").is_file()
        assert f"removed {left[0]}, left by an interrupted run (process {killed.pid})" in caplog.text
        assert live_tmp and live_tmp[0].exists()
    finally:
        live.kill()
        live.wait()


def test_a_live_run_temporary_for_the_same_output_is_kept(squad_file, tmp_path):
    out = tmp_path / "out"
    live = start_child(HOLD_OUTPUT, str(out))
    try:
        held = [tmp_path / name for name in temporaries(tmp_path)]
        main(["prepare", str(squad_file), "--output", str(out), *SPLIT])
        assert held and all(path.exists() for path in held)
    finally:
        live.kill()
        live.wait()


HOLD_CACHE = """
import sys, time
import numpy as np
from rtune.index.embedding_cache import EmbeddingCache

def encode(batch):
    print("working", flush=True)
    time.sleep(120)

EmbeddingCache(sys.argv[1]).get_or_encode({"model": sys.argv[2]}, ["a", "b"], encode)
"""


def test_killed_encoding_leaves_a_cache_temporary_that_the_next_miss_removes(tmp_path, caplog):
    cache = tmp_path / "cache"
    killed = start_child(HOLD_CACHE, str(cache), "m1")
    live = start_child(HOLD_CACHE, str(cache), "m2")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        assert len(temporaries(cache)) == 2
        dead = [cache / n for n in temporaries(cache) if f".pid{killed.pid}@" in n]
        with caplog.at_level(logging.INFO, logger="rtune"):
            EmbeddingCache(cache).get_or_encode({"model": "m3"}, ["x"], lambda batch: np.ones((len(batch), 2)))
        assert len(dead) == 1 and not dead[0].exists()
        assert f"removed {dead[0]}, left by an interrupted run (process {killed.pid})" in caplog.text
        assert [n for n in temporaries(cache) if f".pid{live.pid}@" in n]  # the live one is untouched
    finally:
        live.kill()
        live.wait()


# --- item 6: bugs are not user errors -----------------------------------------------------------------

@pytest.mark.parametrize("bug", [ValueError("internal mismatch"), KeyError("x")])
def test_an_internal_error_exits_1_and_offers_the_traceback(bug, squad_file, tmp_path, monkeypatch, capsys):
    def broken(config) -> None:
        raise bug

    monkeypatch.setitem(STAGES, "prepare", dataclasses.replace(STAGES["prepare"], run=broken))
    args = ["prepare", str(squad_file), "--output", str(tmp_path / "out")]
    assert run_cli(*args) == 1
    err = one_line(capsys.readouterr().err)
    assert "internal error" in err and "run with -v for the traceback" in err and "Traceback" not in err
    assert run_cli("-v", *args) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["eval", "--dataset", "{toy}", "--metrics", "f1"], "unknown metric 'f1'; valid: ndcg"),
    (["prepare", "{toy}", "--output", "{tmp}/out", "--resplit", "--train", "0.5", "--dev", "0.5", "--test", "0.5"],
     "split fractions must sum to 1"),
    (["mine", "--dataset", "{toy}", "--output", "{tmp}/out", "--method", "dense"], "--method dense needs --model"),
])
def test_user_errors_found_at_run_time_still_exit_2(args, expected, toy_beir, tmp_path, capsys):
    argv = [a.replace("{toy}", str(toy_beir)).replace("{tmp}", str(tmp_path)) for a in args]
    assert run_cli(*argv) == 2
    err = one_line(capsys.readouterr().err)
    assert expected in err and "internal error" not in err


# --- item 7: messages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model, expected", [
    ("models/nonexist", "model 'models/nonexist': no such folder"),
    ("BM25", "for BM25 write 'bm25'"),
])
def test_a_mistyped_model_is_not_a_network_error(model, expected, toy_beir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert run_cli("eval", "--dataset", str(toy_beir), "--model", model) == 2
    err = one_line(capsys.readouterr().err)
    assert expected in err and "huggingface.co" not in err


def test_a_missing_hub_id_says_no_folder_and_that_hubs_need_a_network(toy_beir, capsys):
    assert run_cli("eval", "--dataset", str(toy_beir), "--model", "someone/no-such-model") == 2
    err = one_line(capsys.readouterr().err)
    assert "no such folder" in err and "need a network connection" in err
    assert not err.rstrip(". )").endswith("huggingface.co")


def test_non_utf8_squad_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"version": "1", "data": [{"title": "\xff\xfe"}]}')
    assert run_cli("prepare", str(bad), "--output", str(tmp_path / "out")) == 2
    assert f"{bad}: not UTF-8 text" in one_line(capsys.readouterr().err)


def test_non_utf8_qrels_names_the_file(toy_beir, tmp_path, capsys):
    qrels = toy_beir / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes() + b"q7\td7\xff\t1\n")
    assert run_cli("prepare", str(toy_beir), "--output", str(tmp_path / "out")) == 2
    assert f"{qrels}: not UTF-8 text" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("args, expected, absent", [
    (["prepare", "{tmp}/nonexistent", "--output", "{tmp}/out"], "nonexistent: input not found", "cannot tell the format"),
    (["prepare", "--output", "{tmp}/out"], "missing argument INPUT", "--input"),
    (["mine", "--dataset", "{tmp}", "--output", "{tmp}/out", "--range", "5"], "--range: rank range '5' must look like",
     "Value error"),
    (["prepare", "{tmp}/bad.jsonl", "--output", "{tmp}/out"], "bad.jsonl:1: malformed JSON (Unterminated string starting at column",
     "at at"),
])
def test_messages_read_cleanly(args, expected, absent, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"question": "unterminated')
    assert run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = one_line(capsys.readouterr().err)
    assert expected in err and absent not in err


def test_a_truncated_cache_entry_is_rebuilt_with_a_warning(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path / "cache")
    calls = []

    def encode(batch):
        calls.append(len(batch))
        return np.arange(len(batch) * 4, dtype=np.float32).reshape(len(batch), 4)

    texts = [f"t{i}" for i in range(50)]
    first = np.array(cache.get_or_encode({"model": "m"}, texts, encode))
    entry = next((tmp_path / "cache").glob("*/embeddings.npy"))
    entry.write_bytes(entry.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING, logger="rtune"):
        again = cache.get_or_encode({"model": "m"}, texts, encode)
    assert len(calls) == 2 and np.array_equal(again, first)
    assert f"embedding cache entry {entry} is damaged" in caplog.text


# --- item 8: compare -------------------------------------------------------------------------------------

def _metrics(folder: Path, values: dict[str, float]) -> str:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(values))
    return str(folder)


def test_compare_labels_rows_uniquely_and_refuses_unknown_metrics(tmp_path, capsys):
    a = _metrics(tmp_path / "runs" / "eval" / "bm25", {"ndcg@10": 0.1111, "mrr@10": 0.5})
    b = _metrics(tmp_path / "other" / "bm25", {"ndcg@10": 0.2222, "mrr@10": 0.6})
    main(["compare", a, b])
    out = capsys.readouterr().out
    assert "eval/bm25" in out and "other/bm25" in out and "0.1111" in out and "0.2222" in out
    assert run_cli("compare", a, b, "--metrics", "ndcg@10,f1@3") == 2
    err = one_line(capsys.readouterr().err)
    assert "f1@3" in err and "available: ndcg@10, mrr@10" in err


def test_compare_of_the_same_folder_twice_keeps_both_rows(tmp_path, capsys):
    a = _metrics(tmp_path / "eval", {"ndcg@10": 0.3})
    main(["compare", a, a])
    out = capsys.readouterr().out
    assert "eval (2)" in out and out.count("0.3000") == 2



@pytest.mark.parametrize("target", ["dataset", "inside"])
def test_overwrite_never_deletes_an_input(toy_beir, tmp_path, target):
    """`--output` equal to the dataset, or a folder that contains it, is refused even with --overwrite."""
    from rtune.cli import main

    before = sorted(p.name for p in toy_beir.iterdir())
    output = toy_beir if target == "dataset" else toy_beir.parent
    with pytest.raises(SystemExit) as done:
        main(["mine", "--dataset", str(toy_beir), "--output", str(output), "--range", "1-8", "--negatives", "2", "--overwrite"])
    assert done.value.code == 2
    assert sorted(p.name for p in toy_beir.iterdir()) == before and (toy_beir / "corpus.jsonl").is_file()
