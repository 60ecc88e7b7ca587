"""Training on two processes (gloo on the CPU, through torchrun) is the training of one process at the same global
batch: the same loss curve and weights within float tolerance; bad process counts are errors naming the field."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtune.data.groups import group_writer
from rtune.data.records import TrainingGroup
from rtune.errors import InputError
from rtune.train.bi_encoder import train_bi_encoder
from rtune.train.config import TrainConfig

WORDS = "cat dog river mountain city france germany python language capital largest garden morning afternoon mat".split()


def _groups(path):
    """16 queries whose passages share nothing: every batch of 4 is full and conflict-free, so one process and two
    processes (each taking half of every batch) see the same batches."""
    with group_writer(path) as write:
        for i in range(16):
            a, b, c, d = (WORDS[(i + k) % len(WORDS)] for k in (0, 3, 6, 9))
            write(TrainingGroup(query=f"what about the {a} {i}", pos=(f"the {a} and the {b} number {i}",),
                                neg=(f"a {c} near the {d} item {i}", f"the {d} of {c} thing {i}"), query_id=f"q{i}"))
    return path


def _config(tiny_model, tmp_path, name: str, processes: int, **extra) -> TrainConfig:
    groups = _groups(tmp_path / "groups.jsonl")
    return TrainConfig(groups=groups, output=tmp_path / name, model=str(tiny_model), batch_size=4, group_size=2, epochs=2,
                       learning_rate=1e-3, seed=3, processes=processes, device="cpu", **extra)


def _without_dropout(model: Path, folder: Path) -> Path:
    """The tiny model with dropout off: with it on, each process draws its own masks and the runs differ by noise."""
    shutil.copytree(model, folder)
    for config in folder.rglob("config.json"):
        values = json.loads(config.read_text())
        if "hidden_dropout_prob" in values:  # the transformer's config (not a pooling module's)
            values.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
            config.write_text(json.dumps(values))
    return folder


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPU cores for two gloo processes")
def test_two_processes_train_like_one_at_the_same_global_batch(tiny_model, tmp_path):
    from safetensors.numpy import load_file

    model = _without_dropout(tiny_model, tmp_path / "model")
    one = train_bi_encoder(_config(model, tmp_path, "one", 1))
    two = train_bi_encoder(_config(model, tmp_path, "two", 2))
    losses_one = [h["loss"] for h in one["loss_history"]]
    losses_two = [h["loss"] for h in two["loss_history"]]
    assert len(losses_one) == len(losses_two) == one["optimizer_steps"] == two["optimizer_steps"] == 8
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-4, atol=1e-5)
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for key in w1:
        np.testing.assert_allclose(w2[key], w1[key], atol=1e-5, err_msg=key)
    manifest = json.loads((tmp_path / "two" / "rtune_manifest.json").read_text())
    assert manifest["config"]["processes"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".checkpoints")]


def test_process_counts_that_do_not_fit_are_errors_naming_the_field(tiny_model, tmp_path):
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(InputError, match=rf"--processes {too_many}: this machine has {too_many - 1} CPU core"):
        train_bi_encoder(_config(tiny_model, tmp_path, "x", too_many))
    with pytest.raises(InputError, match="--batch-size 5 does not split into 2 processes"):
        train_bi_encoder(_config(tiny_model, tmp_path, "y", 2).model_copy(update={"batch_size": 5}))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_encoding_on_two_processes_gives_the_same_embeddings(tiny_model):
    from rtune.models.encoder_options import EncoderOptions

    texts = [f"the cat sat on the mat {i}" for i in range(40)]
    one = EncoderOptions(cache=False).build_encoder(str(tiny_model)).encode_documents(texts, batch_size=8)
    two = EncoderOptions(cache=False, encode_devices=["cpu", "cpu"]).build_encoder(str(tiny_model))
    np.testing.assert_allclose(two.encode_documents(texts, batch_size=8), one, atol=1e-5)
    assert two.pool() is not None and len(two.pool()["processes"]) == 2


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPU cores for two gloo processes")
def test_the_llm_reranker_trains_alike_on_two_processes(tmp_path):
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker
    from tiny_rerankers import build_tiny_causal_lm

    base = build_tiny_causal_lm(tmp_path / "llm")
    groups = _groups(tmp_path / "groups.jsonl")

    def run(name: str, processes: int) -> dict:
        return train_llm_reranker(LLMRerankerTrainConfig(groups=groups, output=tmp_path / name, model=str(base), lora_rank=2,
                                                         lora_dropout=0.0, group_size=3, batch_size=4, learning_rate=1e-2,
                                                         device="cpu", processes=processes))

    one, two = run("one", 1), run("two", 2)
    assert len(one["losses"]) == len(two["losses"]) == 4
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-3, atol=1e-4)
    assert (tmp_path / "two" / "adapter_model.safetensors").is_file()
