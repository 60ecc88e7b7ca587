"""`rtune train-reranker`: rows for mnrl / bce / lambda, per-epoch blocks, dev reranking, best epoch, a new head on an
encoder, the saved CrossEncoder folder with lineage and manifest, bad input before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtune.data.records import TrainingGroup
from rtune.errors import InputError
from rtune.mine.config import MineConfig
from rtune.mine.run import mine
from rtune.train.cross_encoder import _training_arguments, train_cross_encoder
from rtune.train.cross_encoder_config import RerankerTrainConfig
from rtune.train.examples import build_rows
from rtune.train.reranker_rows import list_columns, pair_columns
from tiny_rerankers import build_tiny_cross_encoder


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(toy dataset, BM25-mined groups, a tiny random cross-encoder)."""
    from conftest import write_beir

    root = tmp_path_factory.mktemp("reranker")
    data = write_beir(root / "toy")
    mine(MineConfig(dataset=data, output=root / "mined", range="2-8", negatives=3, backfill="random"))
    return data, root / "mined", build_tiny_cross_encoder(root / "tiny-ce")


def _groups() -> list[TrainingGroup]:
    return [TrainingGroup(query=f"q{q}", pos=(f"p{q}a", f"p{q}b"), neg=tuple(f"n{q}-{i}" for i in range(6)), query_id=str(q))
            for q in range(3)]


def test_pairs_and_lists_use_every_positive_with_fresh_negatives():
    rows = build_rows(_groups(), group_size=3, seed=0, epochs=2)
    pairs = pair_columns(rows)
    assert len(pairs["query"]) == 2 * 6 * 3  # epochs x (query, positive) rows x group size
    assert pairs["label"][:3] == [1.0, 0.0, 0.0] and pairs["passage"][0] == "p0a"
    assert {p for p, label in zip(pairs["passage"][:18], pairs["label"]) if label == 1.0} == {f"p{q}{s}" for q in range(3) for s in "ab"}
    lists = list_columns(rows)
    assert len(lists["docs"]) == 12 and lists["docs"][0][0] == "p0a" and lists["label"][0] == [1.0, 0.0, 0.0]
    first, second = lists["docs"][0][1:], lists["docs"][6][1:]
    assert lists["query"][0] == lists["query"][6] and lists["docs"][6][0] == "p0a" and first != second  # fresh draw


def test_mnrl_rows_are_the_groups_tuples_and_its_batches_avoid_known_positives(toy, tmp_path):
    from rtune.train.reranker_rows import reranker_columns

    rows = build_rows(_groups(), group_size=3, seed=0, epochs=2)
    columns, per_epoch = reranker_columns(rows, "tuples")
    assert list(columns) == ["query", "positive", "negative_1", "negative_2"] and per_epoch == 6
    assert columns["positive"][:2] == ["p0a", "p0b"] and columns["negative_1"][0].startswith("n0-")
    # mnrl scores other rows' passages: the sampler gets the rows' conflict keys, not the no-conflict ones
    seen = {}
    import rtune.train.cross_encoder as ce

    original = ce._training_arguments

    def spy(config, checkpoints, has_dev, per_epoch, keys):
        seen["keys"] = keys
        return original(config, checkpoints, has_dev, per_epoch, keys)

    _, groups, tiny_ce = toy
    ce._training_arguments = spy
    try:
        summary = train_cross_encoder(RerankerTrainConfig(groups=groups, output=tmp_path / "m", model=str(tiny_ce), group_size=3,
                                                          batch_size=2, learning_rate=1e-3, seed=0))
    finally:
        ce._training_arguments = original
    assert summary["loss"] == "mnrl" and summary["examples_per_epoch"] == 6
    assert any(k.known_positives for k in seen["keys"]) and len(seen["keys"]) == 6


def test_mnrl_loss_is_softmax_cross_entropy_over_own_and_in_batch_passages(toy):
    """Hand-worked: with every in-batch passage used, each row's loss is -log softmax(raw logits)[positive]
    over its positive, its hard negatives and all of the other row's passages."""
    import torch
    from sentence_transformers import CrossEncoder

    from rtune.train.reranker_losses import build_reranker_loss

    model = CrossEncoder(str(toy[2]))
    model.eval()
    with torch.no_grad():  # spread the tiny model's logits, so that a scale or an activation would show
        model.model.classifier.weight.mul_(1e4)
        model.model.classifier.bias.zero_()
    queries = ["who wrote python", "capital of france"]
    columns = [["guido wrote python", "paris is the capital"], ["java is old", "rome is in italy"], ["c is fast", "berlin"]]
    loss = build_reranker_loss("mnrl", model, negatives=2, in_batch_negatives=10)
    with torch.no_grad():
        value = float(loss([queries, *columns], torch.zeros(2)))
    texts = [t for column in columns for t in column]
    expected = []
    for i, query in enumerate(queries):
        own = [columns[0][i], columns[1][i], columns[2][i]]
        others = [t for t in texts if t not in own]
        logits = model.predict([(query, t) for t in own + others], activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        shifted = logits.astype(np.float64) - logits.max()
        expected.append(-(shifted[0] - np.log(np.exp(shifted).sum())))
    assert np.ptp(logits) > 0.1
    assert value == pytest.approx(float(np.mean(expected)), abs=1e-4)  # float32 logits of magnitude ~1e2


def test_each_epoch_trains_on_its_own_block(tmp_path):
    from datasets import Dataset

    from rtune.train.examples import no_conflicts

    config = RerankerTrainConfig(groups=tmp_path, output=tmp_path / "m", epochs=2, batch_size=4)
    args = _training_arguments(config, tmp_path, False, 10, no_conflicts(range(20)))
    sampler = args.batch_sampler(Dataset.from_dict({"x": list(range(20))}), batch_size=4, drop_last=False, seed=0)
    sampler.set_epoch(1)
    assert sorted(i for batch in sampler for i in batch) == list(range(10, 20))


def test_train_reranker_end_to_end_keeps_best_and_matches_eval_rerank(toy, tmp_path):
    from sentence_transformers import CrossEncoder

    from rtune.eval.evaluate import EvalConfig, evaluate

    data, groups, tiny_ce = toy
    out = tmp_path / "reranker"
    config = RerankerTrainConfig(groups=groups, dataset=data, output=out, model=str(tiny_ce), loss="bce", epochs=2, batch_size=4,
                                 learning_rate=1e-3, rerank_top=5, max_length=64, seed=0)
    summary = train_cross_encoder(config)
    assert [h["epoch"] for h in summary["dev_history"]] == [0, 1.0, 2.0]
    assert summary["examples_per_epoch"] == 6 * 4 and summary["first_stage"]["ranker"] == "bm25"
    model = CrossEncoder(str(out))
    assert model.num_labels == 1 and np.isfinite(model.predict([("Who created Python?", "Python is a language.")])).all()
    from rtune.models.rerankers.cross_encoder import CrossEncoderReranker
    from rtune.score.config import ScoreConfig

    # scoring and eval --rerank use the length it was trained at, not a generic 512 (or the position table's 128)
    assert CrossEncoderReranker(str(out), device="cpu").settings()["max_length"] == 64
    assert "max_length" not in ScoreConfig(groups=groups, output=tmp_path / "s", model=str(out)).teacher_settings()
    card = (out / "README.md").read_text()
    assert "## rtune lineage" in card and "dev evaluation reranks the top 5 of `bm25`" in card and "- loss: `bce`" in card
    manifest = json.loads((out / "rtune_manifest.json").read_text())
    assert manifest["stage"] == "train-reranker" and manifest["stats"]["best"] == summary["best"]
    assert not (out / "checkpoints").exists()
    # the saved weights are the best epoch's, and the dev figure is `rtune eval --rerank`'s
    means = evaluate(EvalConfig(dataset=data, model="bm25", split="dev", rerank=str(out), rerank_top=5, device="cpu"))
    assert means["reranked.ndcg@10"] == pytest.approx(summary["best"]["ndcg@10"], abs=1e-6)
    assert summary["first_stage"]["dev"]["ndcg@10"] == pytest.approx(means["ndcg@10"], abs=1e-9)


def test_the_best_epoch_is_kept_not_the_last(toy, tmp_path, monkeypatch):
    from sentence_transformers import CrossEncoder

    from rtune.train.rerank_evaluator import RerankDevEvaluator

    data, groups, tiny_ce = toy
    rigged, probes = iter([0.5, 0.9, 0.2, 0.1]), []
    original = RerankDevEvaluator.__call__

    def call(self, model, output_path=None, epoch=-1, steps=-1):
        metrics = original(self, model, output_path, epoch, steps)
        probes.append(model.predict([("the cat sat", "the cat sat on the mat")])[0])
        value = next(rigged)
        self.history[-1]["ndcg@10"] = value
        return {**metrics, "dev_ndcg@10": value}

    monkeypatch.setattr(RerankDevEvaluator, "__call__", call)
    summary = train_cross_encoder(RerankerTrainConfig(groups=groups, dataset=data, output=tmp_path / "m", model=str(tiny_ce),
                                                      epochs=3, batch_size=4, learning_rate=1e-2, rerank_top=5, seed=0))
    assert summary["best"]["epoch"] == 1.0
    saved = CrossEncoder(str(tmp_path / "m")).predict([("the cat sat", "the cat sat on the mat")])[0]
    assert saved == pytest.approx(probes[1], abs=1e-5) and saved != pytest.approx(probes[3], abs=1e-5)


def test_lambda_on_an_encoder_gets_a_new_head_and_is_deterministic(tiny_model, toy, tmp_path):
    from sentence_transformers import CrossEncoder

    _, groups, _ = toy
    scores = []
    for run in ("a", "b"):
        summary = train_cross_encoder(RerankerTrainConfig(groups=groups, output=tmp_path / run, model=str(tiny_model), loss="lambda",
                                                          group_size=3, batch_size=2, learning_rate=1e-3, seed=3))
        assert summary["examples_per_epoch"] == 6 and summary["best"] is None and summary["first_stage"] is None
        model = CrossEncoder(str(tmp_path / run))
        assert model.num_labels == 1
        scores.append(model.predict([("the cat sat", "the cat sat on the mat"), ("dogs", "Paris is in France")]))
    assert np.allclose(scores[0], scores[1])


def test_bad_input_fails_before_any_work(toy, tmp_path):
    data, groups, tiny_ce = toy
    with pytest.raises(ValueError, match="unknown loss 'listnet'; valid: mnrl, bce, lambda"):
        RerankerTrainConfig(groups=groups, output=tmp_path / "m", loss="listnet")
    with pytest.raises(ValueError, match="(?s)in_batch_negatives.*read only by --loss mnrl, not by --loss bce"):
        RerankerTrainConfig(groups=groups, output=tmp_path / "m", loss="bce", in_batch_negatives=2)
    with pytest.raises(ValueError, match="unknown metric"):
        RerankerTrainConfig(groups=groups, output=tmp_path / "m", metric_for_best="f1@10")
    with pytest.raises(InputError, match="no such folder"):
        train_cross_encoder(RerankerTrainConfig(groups=groups, dataset=data, output=tmp_path / "m", model=str(tmp_path / "nope")))
    with pytest.raises(InputError, match="nosplit"):
        train_cross_encoder(RerankerTrainConfig(groups=groups, dataset=data, output=tmp_path / "m", model=str(tiny_ce), dev_split="nosplit"))
    bad = tmp_path / "groups.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n{"query": "q2", "pos": []}\n')
    with pytest.raises(InputError, match=r"groups.jsonl:2: field 'pos' is empty"):
        train_cross_encoder(RerankerTrainConfig(groups=bad, output=tmp_path / "m", model=str(tiny_ce)))
    assert not (tmp_path / "m").exists()


def test_train_reranker_from_the_command_line_prints_its_dev_table(toy, tmp_path, capsys):
    from rtune.cli import main

    data, groups, tiny_ce = toy
    main(["train-reranker", "--groups", str(groups), "--dataset", str(data), "--output", str(tmp_path / "rr"),
          "--model", str(tiny_ce), "--epochs", "1", "--batch-size", "4", "--rerank-top", "5", "--max-length", "64"])
    out = capsys.readouterr().out
    assert "reranker saved to" in out and "eval_dev_" not in out  # one line per evaluation, not raw dicts
    assert "alone" in out and "start" in out and "epoch 1" in out  # the dev table: first stage, start, each epoch


def test_resumed_training_equals_an_uninterrupted_one(toy, tmp_path, monkeypatch):
    """Without a dev set (no per-epoch checkpoints): --save-steps 1 checkpoints, a crash after step 4 (in the
    second epoch), a resumed run of the last 2 steps that saves the uninterrupted run's weights and loss history."""
    from safetensors.numpy import load_file
    from transformers import TrainerCallback

    from rtune.train import checkpointing

    _, groups, tiny_ce = toy
    options = dict(groups=groups, model=str(tiny_ce), loss="bce", epochs=2, batch_size=8, learning_rate=1e-3, seed=0)
    reference = train_cross_encoder(RerankerTrainConfig(output=tmp_path / "reference", **options))
    assert reference["optimizer_steps"] == 6 and reference["resumed_from"] is None

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise RuntimeError("crash")

    original = checkpointing.save_every
    with monkeypatch.context() as patch:
        patch.setattr(checkpointing, "save_every", lambda trainer, steps: (original(trainer, steps), trainer.add_callback(Crash())))
        with pytest.raises(RuntimeError, match="crash"):
            train_cross_encoder(RerankerTrainConfig(output=tmp_path / "m", save_steps=1, checkpoint_dir=tmp_path / "ck", **options))
    assert checkpointing.latest_checkpoint(tmp_path / "ck").name == "checkpoint-4"
    summary = train_cross_encoder(RerankerTrainConfig(output=tmp_path / "m", save_steps=1, checkpoint_dir=tmp_path / "ck",
                                                      resume_from_checkpoint=tmp_path / "ck" / "checkpoint-4", **options))
    assert summary["resumed_from"]["step"] == 4 and summary["steps_run"] == 2 and summary["optimizer_steps"] == 6
    assert [h["loss"] for h in summary["loss_history"]] == pytest.approx([h["loss"] for h in reference["loss_history"]], abs=1e-5)
    assert len(summary["loss_history"]) == 6 and all(np.isfinite(h["loss"]) for h in summary["loss_history"])
    expected, weights = (load_file(tmp_path / name / "model.safetensors") for name in ("reference", "m"))
    assert max(float(np.abs(weights[k] - expected[k]).max()) for k in expected) < 1e-5
    manifest = json.loads((tmp_path / "m" / "rtune_manifest.json").read_text())["stats"]
    assert manifest["resumed_from"]["checkpoint"] == "checkpoint-4"


def test_the_dev_first_stage_runs_bm25_in_the_language_prepare_recorded(squad_file, tmp_path, monkeypatch):
    """No `language` given: the cross-encoder's BM25 first stage takes the dataset's recorded language (it took en)."""
    from rtune.data.beir import read_beir
    from rtune.data.prepare import PrepareConfig, prepare
    from rtune.index.rankers import BM25Ranker
    from rtune.train.cross_encoder import dev_evaluator

    prepare(PrepareConfig(input=squad_file, output=tmp_path / "vi", language="vi", train=0.5, dev=0.25, test=0.25))
    languages = []
    real_init = BM25Ranker.__init__

    def spy(self, corpus, language="en", use_title=True):
        languages.append(language)
        real_init(self, corpus, language, use_title)

    monkeypatch.setattr(BM25Ranker, "__init__", spy)
    config = RerankerTrainConfig(groups=tmp_path / "g.jsonl", output=tmp_path / "out", dataset=tmp_path / "vi", rerank_top=2)
    assert config.language is None
    dev_evaluator(config, read_beir(tmp_path / "vi"), use_title=True)
    assert languages == ["vi"]
