"""Bi-encoder training: rows, batches without disguised positives, per-column lengths, a real (tiny) run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rtune.data.groups import sample_groups
from rtune.data.records import TrainingGroup
from rtune.errors import DataCollapsedError
from rtune.mine.config import MineConfig
from rtune.mine.run import mine
from rtune.models.loading import load_bi_encoder
from rtune.train.bi_encoder import build_trainer, train_bi_encoder
from rtune.train.config import TrainConfig
from rtune.train.examples import build_rows, check_rows


def _group(i: int, pos: str, negs: tuple[str, ...] = ("n1", "n2")) -> TrainingGroup:
    return TrainingGroup(query=f"question {i}", pos=(pos,), neg=negs, query_id=str(i))


def test_build_rows_pads_skips_and_is_seeded():
    groups = [_group(0, "p0", ("a", "b", "c")), _group(1, "p1", ("a",)), _group(2, "p2", ())]
    rows = build_rows(groups, group_size=3, seed=1)
    assert rows.counts["rows"] == 2 and rows.counts["queries_without_negatives"] == 1 and rows.counts["padded_rows"] == 1
    columns = rows.columns
    assert list(columns) == ["anchor", "positive", "negative_1", "negative_2"]
    assert columns["negative_1"][1] == columns["negative_2"][1] == "a"
    assert build_rows(groups, 3, seed=1).columns == columns
    pairs = build_rows(groups, group_size=1, seed=1)
    assert list(pairs.columns) == ["anchor", "positive"] and pairs.counts["rows"] == 3


def test_every_positive_is_a_row_and_negatives_are_fresh_each_epoch():
    """38 queries x 40 positives must not become 38 rows: each (query, positive) pair trains each epoch,
    and each epoch draws its negatives anew from the mined pool."""
    negs = tuple(f"n{i}" for i in range(15))
    groups = [TrainingGroup(query=f"question {q}", pos=tuple(f"p{q}-{i}" for i in range(5)), neg=negs, query_id=str(q))
              for q in range(4)]
    rows = build_rows(groups, group_size=4, seed=0, epochs=3)
    assert rows.rows_per_epoch == 20 and len(rows.columns["anchor"]) == 60  # 4 queries x 5 positives, per epoch
    first = list(zip(rows.columns["positive"][:20], rows.columns["negative_1"][:20]))
    assert {p for p, _ in first} == {f"p{q}-{i}" for q in range(4) for i in range(5)}
    epoch = [[rows.columns[f"negative_{k}"][e * 20 + r] for k in (1, 2, 3)] for e in range(3) for r in range(1)]
    assert epoch[0] != epoch[1] or epoch[1] != epoch[2]  # fresh draws
    used = {rows.columns[f"negative_{k}"][i] for k in (1, 2, 3) for i in range(60)}
    assert len(used) > 10  # the 15 mined negatives are used, not only the first 3
    sampled = build_rows(groups, group_size=4, seed=0, epochs=5, positives="sample")
    assert sampled.rows_per_epoch == 4
    reached = {p for p in sampled.columns["positive"] if p.startswith("p0-")}
    assert reached == {f"p0-{i}" for i in range(5)}  # one positive per epoch, all five over five epochs


def test_negatives_are_drawn_only_for_the_positives_they_suit():
    group = TrainingGroup(query="q", pos=("strong", "weak"), neg=("close", "far"), query_id="0",
                          neg_valid_pos=((0,), (0, 1)))  # "close" scores above 0.95 x the weak positive
    rows = build_rows([group], group_size=2, seed=0, epochs=4)
    for positive, negative in zip(rows.columns["positive"], rows.columns["negative_1"]):
        assert positive == "strong" or negative == "far"


def test_collapsed_training_data_stops_with_a_clear_error():
    groups = [_group(0, "p0", ("n",))] + [_group(i, f"p{i}", ()) for i in range(1, 38)]
    rows = build_rows(groups, group_size=2, seed=0)
    with pytest.raises(DataCollapsedError, match=r"37 of 38 queries have no negative"):
        check_rows(rows, 2, allow_collapsed=False, source="g.jsonl")
    check_rows(rows, 2, allow_collapsed=True, source="g.jsonl")  # an explicit choice goes on, loudly
    with pytest.raises(DataCollapsedError, match="no training rows"):
        check_rows(build_rows(groups[1:], 2, 0), 2, allow_collapsed=True, source="g.jsonl")


def test_sample_groups_is_a_seeded_subset():
    groups = [_group(i, f"p{i}") for i in range(10)]
    chosen = sample_groups(groups, 4, seed=3)
    assert len(chosen) == 4 and chosen == sample_groups(groups, 4, seed=3)
    assert [g.query_id for g in chosen] == sorted((g.query_id for g in chosen), key=int)
    assert sample_groups(groups, None, seed=3) == groups


def _batches(rows, batch_size: int, sampler_cls=None):
    from datasets import Dataset

    from rtune.train.batch_sampler import KnownPositiveBatchSampler

    dataset = Dataset.from_dict(rows.columns)
    if sampler_cls is None:
        return list(KnownPositiveBatchSampler(dataset, batch_size, False, keys=rows.keys, rows_per_epoch=rows.rows_per_epoch,
                                              blocks=rows.epochs, seed=0))
    return list(sampler_cls(dataset, batch_size=batch_size, drop_last=False, seed=0))


def test_no_batch_holds_a_passage_twice():
    """SQuAD asks several questions of one paragraph: a batch with two of them would teach the model that
    a question's own paragraph is a negative. Built to collide: 12 queries over 4 passages."""
    groups = [_group(i, f"shared passage {i % 4}", (f"shared passage {(i + 1) % 4}",)) for i in range(12)]
    rows = build_rows(groups, group_size=2, seed=0)
    batches = _batches(rows, 3)
    assert sorted(i for batch in batches for i in batch) == list(range(12))  # every row once
    for batch in batches:
        texts = [t for i in batch for t in (rows.columns["positive"][i], rows.columns["negative_1"][i])]
        assert len(texts) == len(set(texts)), batch


def test_no_batch_holds_another_positive_of_a_rows_query():
    """Several positives per query: query A's second positive must not sit in A's batch as B's negative
    (or as A's other row). Built to collide; the plain no-duplicates sampler lets it through."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    groups = [TrainingGroup(query=f"query {q}", pos=(f"doc {q}", f"doc {q + 8}"), query_id=str(q),
                            neg=(f"doc {(q + 1) % 8 + 8}", f"doc {(q + 2) % 8}")) for q in range(8)]
    rows = build_rows(groups, group_size=2, seed=0)
    positives_of = {g.query: set(g.pos) for g in groups}

    def conflicts(batches) -> int:
        bad = 0
        for batch in batches:
            for i in batch:
                others = {rows.columns[c][j] for j in batch if j != i for c in ("positive", "negative_1")}
                bad += bool(others & positives_of[rows.columns["anchor"][i]])
        return bad

    ours = _batches(rows, 4)
    assert sorted(i for b in ours for i in b) == list(range(16)) and conflicts(ours) == 0
    assert conflicts(_batches(rows, 4, NoDuplicatesBatchSampler)) > 0


def test_trainer_uses_the_known_positive_sampler(tiny_model, tmp_path):
    from rtune.models.settings import EncoderSettings
    from rtune.train.batch_sampler import KnownPositiveBatchSampler
    from rtune.train.bi_encoder import build_trainer

    groups = [_group(i, f"shared passage {i % 4}", (f"shared passage {(i + 1) % 4}",)) for i in range(12)]
    rows = build_rows(groups, group_size=2, seed=0)
    config = TrainConfig(groups=tmp_path / "g.jsonl", output=tmp_path / "m", batch_size=3, model=str(tiny_model))
    trainer = build_trainer(config, load_bi_encoder(tiny_model), rows, tmp_path / "ckpt", EncoderSettings(max_query_length=8, max_passage_length=8))
    sampler = trainer.get_batch_sampler(trainer.train_dataset, batch_size=3, drop_last=False, seed=0)
    assert isinstance(sampler, KnownPositiveBatchSampler)


def test_collator_truncates_queries_and_passages_separately(tiny_model, tmp_path):
    from rtune.models.settings import EncoderSettings

    words = " ".join(["cat"] * 50)
    rows = build_rows([TrainingGroup(query=words, pos=(words,), neg=(words + " x",))], group_size=2, seed=0)
    config = TrainConfig(groups=tmp_path / "g", output=tmp_path / "m", model=str(tiny_model))
    trainer = build_trainer(config, load_bi_encoder(tiny_model), rows, tmp_path / "ckpt",
                            EncoderSettings(max_query_length=8, max_passage_length=20))
    batch = trainer.data_collator([{k: v[0] for k, v in rows.columns.items()}])
    assert batch["anchor_input_ids"].shape[1] == 8
    assert batch["positive_input_ids"].shape[1] == batch["negative_1_input_ids"].shape[1] == 20


def test_train_end_to_end_keeps_best_epoch(tiny_model, toy_beir, tmp_path):
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    out = tmp_path / "model"
    config = TrainConfig(groups=tmp_path / "mined", dataset=toy_beir, output=out, model=str(tiny_model),
                         epochs=2, batch_size=2, learning_rate=1e-3, group_size=2, seed=0)
    summary = train_bi_encoder(config)
    assert summary["rows"]["rows"] == 6
    epochs = [h["epoch"] for h in summary["dev_history"]]
    assert epochs == [0, 1.0, 2.0]  # the base model, then every epoch
    best = summary["best"]
    reloaded = load_bi_encoder(out)
    assert reloaded.encode(["cat"]).shape == (1, 32)
    card = (out / "README.md").read_text()
    assert "## rtune lineage" in card and str(tiny_model) in card and '"group_size": 2' in card
    manifest = json.loads((out / "rtune_manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["inputs"][0]["path"].endswith("groups.jsonl")
    assert not (out / "checkpoints").exists()
    # the saved weights are the best epoch's: re-evaluating reproduces its dev score
    from rtune.data.beir import read_beir
    from rtune.train.evaluator import RetrievalDevEvaluator

    evaluator = RetrievalDevEvaluator(read_beir(toy_beir), "dev", ["ndcg@10"], primary="ndcg@10")
    assert evaluator(reloaded)["dev_ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-6)


def test_the_best_epoch_is_kept_not_the_last(tiny_model, toy_beir, tmp_path, monkeypatch):
    """Dev scores rigged so that epoch 1 is best and epoch 3 worst: the saved weights must be epoch 1's
    (each evaluation records what the model then encodes for a probe text)."""
    from rtune.train.evaluator import RetrievalDevEvaluator

    rigged = iter([0.5, 0.9, 0.2, 0.1])  # base, epoch 1, 2, 3
    probes = []
    original = RetrievalDevEvaluator.__call__

    def call(self, model, output_path=None, epoch=-1, steps=-1):
        metrics = original(self, model, output_path, epoch, steps)
        probes.append(model.encode(["the cat sat"])[0])
        value = next(rigged)
        self.history[-1]["ndcg@10"] = value
        return {**metrics, "dev_ndcg@10": value}

    monkeypatch.setattr(RetrievalDevEvaluator, "__call__", call)
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    summary = train_bi_encoder(TrainConfig(groups=tmp_path / "mined", dataset=toy_beir, output=tmp_path / "m",
                                           model=str(tiny_model), epochs=3, batch_size=2, learning_rate=1e-2, seed=0))
    assert summary["best"]["epoch"] == 1.0
    saved = load_bi_encoder(tmp_path / "m").encode(["the cat sat"])[0]
    assert np.allclose(saved, probes[1], atol=1e-5) and not np.allclose(saved, probes[3], atol=1e-5)


def test_prompts_are_saved_and_any_metric_family_selects(tiny_model, toy_beir, tmp_path):
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    summary = train_bi_encoder(TrainConfig(groups=tmp_path / "mined", dataset=toy_beir, output=tmp_path / "m",
                                           model=str(tiny_model), batch_size=3, metric_for_best="precision@3",
                                           query_prompt="query: ", document_prompt="passage: "))
    assert "precision@3" in summary["best"]
    assert load_bi_encoder(tmp_path / "m").prompts == {"query": "query: ", "document": "passage: "}


def test_train_is_deterministic_for_a_seed(tiny_model, toy_beir, tmp_path):
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    weights = []
    for run in ("a", "b"):
        train_bi_encoder(TrainConfig(groups=tmp_path / "mined", output=tmp_path / run, model=str(tiny_model),
                                     batch_size=3, learning_rate=1e-3, seed=5))
        weights.append(load_bi_encoder(tmp_path / run).encode(["the cat sat"], convert_to_tensor=True))
    assert torch.allclose(weights[0], weights[1])


def test_train_refuses_bad_input(tiny_model, tmp_path):
    bad = tmp_path / "groups.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": []}\n{"query": "q2", "pos": ["p2"]}\n')
    from rtune.errors import InputError

    with pytest.raises(InputError, match=r"groups.jsonl:2: missing field 'neg'"):
        train_bi_encoder(TrainConfig(groups=bad, output=tmp_path / "m", model=str(tiny_model)))
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="unknown metric"):
        TrainConfig(groups=bad, output=tmp_path / "m", metric_for_best="f1@10")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    with pytest.raises(InputError, match="model folder is empty"):
        train_bi_encoder(TrainConfig(groups=bad, output=tmp_path / "m", model=str(empty)))


def _crash_after_checkpoint(monkeypatch, step: int) -> None:
    """The next training raises once it has saved its checkpoint of optimiser step `step` (a crash mid-run)."""
    from transformers import TrainerCallback

    import rtune.train.bi_encoder as bi_encoder

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise RuntimeError(f"crash after checkpoint-{step}")

    original = bi_encoder.build_trainer

    def build(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(Crash())
        return trainer

    monkeypatch.setattr(bi_encoder, "build_trainer", build)


def test_resumed_training_equals_an_uninterrupted_one(tiny_model, toy_beir, tmp_path, monkeypatch, capsys):
    """3 epochs of 4 steps with a dev set (the first epoch's greedy plan has 3 batches, the others 4: every epoch has
    4): crashed after the checkpoint of step 6 (mid-epoch) or 4 (an epoch's end, after its dev evaluation),
    `rtune train --resume-from-checkpoint` runs only the remaining steps and saves the weights, dev history and loss
    history of a run that was never interrupted (and saved no checkpoints)."""
    from safetensors.numpy import load_file

    from rtune.cli import main

    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    options = dict(groups=tmp_path / "mined", dataset=toy_beir, model=str(tiny_model), epochs=3, batch_size=2,
                   learning_rate=1e-3, group_size=2, seed=0)
    reference = train_bi_encoder(TrainConfig(output=tmp_path / "reference", **options))
    assert reference["resumed_from"] is None and reference["optimizer_steps"] == reference["steps_run"] == 12
    expected = load_file(tmp_path / "reference" / "model.safetensors")
    for step in (6, 4):
        checkpoints, out = tmp_path / f"checkpoints-{step}", tmp_path / f"resumed-{step}"
        with monkeypatch.context() as patch:
            _crash_after_checkpoint(patch, step)
            with pytest.raises(RuntimeError, match="crash"):
                train_bi_encoder(TrainConfig(output=out, save_steps=1, checkpoint_dir=checkpoints, **options))
        assert not out.exists() and (checkpoints / f"checkpoint-{step}" / "optimizer.pt").is_file()
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        main(["train", *flags, f"--output={out}", "--save-steps=1", f"--checkpoint-dir={checkpoints}",
              f"--resume-from-checkpoint={checkpoints / f'checkpoint-{step}'}"])
        assert "model saved to" in capsys.readouterr().out
        summary = json.loads((out / "rtune_manifest.json").read_text())["stats"]
        assert summary["resumed_from"] == {"checkpoint": f"checkpoint-{step}", "path": str(checkpoints / f"checkpoint-{step}"),
                                           "step": step}
        assert summary["optimizer_steps"] == 12 and summary["steps_run"] == 12 - step
        assert [h["epoch"] for h in summary["dev_history"]] == [0, 1.0, 2.0, 3.0]
        assert summary["best"]["epoch"] == reference["best"]["epoch"]
        assert [h["step"] for h in summary["loss_history"]] == [h["step"] for h in reference["loss_history"]]
        assert [h["loss"] for h in summary["loss_history"]] == pytest.approx([h["loss"] for h in reference["loss_history"]], abs=1e-5)
        weights = load_file(out / "model.safetensors")
        assert weights.keys() == expected.keys()
        assert max(float(abs(weights[k] - expected[k]).max()) for k in expected) < 1e-5, step
        kept = [p.name for p in checkpoints.glob("checkpoint-*")]
        assert kept == [f"checkpoint-{reference['best']['steps']}"]  # at the end only the best epoch's is kept


def test_loss_history_is_recorded(tiny_model, toy_beir, tmp_path):
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    train_bi_encoder(TrainConfig(groups=tmp_path / "mined", output=tmp_path / "m", model=str(tiny_model), epochs=2,
                                 batch_size=2, learning_rate=1e-3, seed=0))
    history = json.loads((tmp_path / "m" / "rtune_manifest.json").read_text())["stats"]["loss_history"]
    assert [h["step"] for h in history] == list(range(1, 9))  # a short run logs every step; 2 epochs of 4 batches
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in history) and history[-1]["epoch"] == pytest.approx(2.0)


def test_a_missing_damaged_or_foreign_checkpoint_fails_before_any_model_loads(tiny_model, toy_beir, tmp_path, monkeypatch):
    from rtune.errors import InputError
    from rtune.train import checkpointing

    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    options = dict(groups=tmp_path / "mined", model=str(tiny_model), epochs=1, batch_size=2, learning_rate=1e-3, seed=0)
    checkpoints = tmp_path / "checkpoints"
    train_bi_encoder(TrainConfig(output=tmp_path / "m", save_steps=1, checkpoint_dir=checkpoints, **options))
    checkpoint = checkpoints / "checkpoint-3"
    assert checkpointing.check_checkpoint(checkpoint) == 3 and checkpointing.latest_checkpoint(checkpoints) == checkpoint

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(TrainConfig, "load_model", no_model)

    def fails(match: str, resume, **changed) -> None:
        with pytest.raises(InputError, match=match) as err:
            train_bi_encoder(TrainConfig(output=tmp_path / "again", resume_from_checkpoint=resume, **{**options, **changed}))
        assert str(resume) in str(err.value)
        assert not (tmp_path / "again").exists()

    fails("checkpoint folder does not exist", checkpoints / "checkpoint-99")
    fails(r"another training \(learning_rate: 0.001 -> 0.01\)", checkpoint, learning_rate=1e-2)
    damaged = tmp_path / "damaged" / "checkpoint-3"
    shutil.copytree(checkpoint, damaged)
    optimizer = (damaged / "optimizer.pt").read_bytes()
    (damaged / "optimizer.pt").write_bytes(optimizer[: len(optimizer) // 2])  # a write cut off by a kill
    fails("corrupt checkpoint: optimizer.pt", damaged)
    (damaged / "optimizer.pt").write_bytes(optimizer)
    weights = (damaged / "model.safetensors").read_bytes()
    (damaged / "model.safetensors").write_bytes(weights[:-100])
    fails("corrupt checkpoint: model.safetensors", damaged)
    (damaged / "model.safetensors").write_bytes(weights)
    (damaged / "optimizer.pt").unlink()  # a weights-only checkpoint (the per-epoch best-model ones without options)
    fails("cannot be resumed: no optimizer.pt", damaged)
    (damaged / "trainer_state.json").unlink()
    fails("no trainer_state.json", damaged)
    assert checkpointing.latest_checkpoint(damaged.parent) is None  # the pipeline's pick skips it


def _uneven_epoch_rows():
    """Rows for 2 epochs of 6 rows where epoch 1's conflict-free plan needs more batches of 2 than epoch 0's: block 0
    pairs six queries with six passages (3 batches), block 1 gives four queries one shared passage (4+ batches)."""
    from conftest import TOY_DOCS, TOY_QUERIES
    from rtune.train.examples import RowKeys, TrainingRows, text_key

    queries = [TOY_QUERIES[f"q{i}"][0] for i in range(6)]
    passages = [TOY_DOCS[f"d{i}"] for i in range(6)] + [TOY_DOCS["d0"]] * 4 + [TOY_DOCS["d4"], TOY_DOCS["d5"]]
    negatives = [f"negative passage {i}" for i in range(12)]
    keys = [RowKeys(frozenset({text_key(p), text_key(n)}), frozenset({text_key(p)})) for p, n in zip(passages, negatives)]
    return TrainingRows(columns={"anchor": queries * 2, "positive": passages, "negative_1": negatives}, keys=keys,
                        rows_per_epoch=6, epochs=2)


def _recording_trainer(tiny_model, rows, config, checkpoints, steps: list):
    """build_trainer whose loss records, per optimiser step, (epoch index, the anchors of the rows it sees). The
    collator notes each batch's anchors (the dataloader collates one batch ahead), the loss takes them in order."""
    from transformers import TrainerCallback

    from rtune.models.settings import EncoderSettings

    trainer = build_trainer(config, load_bi_encoder(tiny_model), rows, checkpoints,
                            EncoderSettings(max_query_length=16, max_passage_length=16))
    epoch, collated = {"index": -1}, []

    class Epochs(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # a resumed run starts in its checkpoint's epoch
            epoch["index"] = int(state.epoch or 0) - 1

        def on_epoch_begin(self, args, state, control, **kwargs):
            epoch["index"] += 1

    class Collator:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, features):
            collated.append(sorted(f["anchor"] for f in features))
            return self.inner(features)

    trainer.add_callback(Epochs())
    trainer.data_collator = Collator(trainer.data_collator)
    forward = trainer.loss.forward

    def recording(features, *args, **kwargs):
        anchors = collated.pop(0)
        assert len(anchors) == features[0]["input_ids"].shape[0]
        steps.append((epoch["index"], anchors))
        return forward(features, *args, **kwargs)

    trainer.loss.forward = recording
    return trainer


def test_every_row_of_every_epoch_trains_once_when_epochs_plan_unevenly(tiny_model, tmp_path):
    """The trainer counts steps and epochs by the dataloader's length at the start; an epoch whose conflict-free
    plan needs more batches must neither lose its extra batches nor shift the step count or LR schedule."""
    from rtune.train.batch_sampler import KnownPositiveBatchSampler

    rows = _uneven_epoch_rows()
    sampler = KnownPositiveBatchSampler(range(12), 2, False, keys=rows.keys, rows_per_epoch=6, blocks=2, seed=0)
    assert len(sampler.greedy_plan(0)) == 3 < len(sampler.greedy_plan(1))  # the rows are built to plan unevenly
    config = TrainConfig(groups=tmp_path / "g.jsonl", output=tmp_path / "m", batch_size=2, epochs=2, group_size=2,
                         learning_rate=1e-3, seed=0, model=str(tiny_model))
    steps: list = []
    trainer = _recording_trainer(tiny_model, rows, config, tmp_path / "ckpt", steps)
    trainer.train()
    block = sorted(rows.columns["anchor"][:6])
    for epoch in range(2):
        seen = sorted(a for e, anchors in steps if e == epoch for a in anchors)
        assert seen == block, epoch  # every row of the epoch, once
    total = sum(len(sampler.plan(e)) for e in range(2))
    assert len(steps) == trainer.state.global_step == trainer.state.max_steps == total  # the schedule's length is true
    assert trainer.state.epoch == pytest.approx(2.0)


def test_every_epoch_has_as_many_conflict_free_batches():
    """An epoch whose greedy plan is shorter splits its largest batches; each epoch still trains its block once,
    conflict-free. With drop_last the batches stay full and every epoch has the shortest plan's count."""
    from rtune.train.batch_sampler import KnownPositiveBatchSampler, split_to

    assert split_to([[0, 1, 2], [3, 4, 5, 6], [7]], 5) == [[0, 1], [2], [3, 4], [5, 6], [7]]  # always the largest
    with pytest.raises(ValueError, match="cannot fill"):
        split_to([[0], [1]], 3)
    rows = _uneven_epoch_rows()
    sampler = KnownPositiveBatchSampler(range(12), 2, False, keys=rows.keys, rows_per_epoch=6, blocks=2, seed=0)
    longest = max(len(sampler.greedy_plan(e)) for e in range(2))
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == longest
        assert sorted(i for b in batches for i in b) == list(range(epoch * 6, epoch * 6 + 6))
        for batch in batches:
            texts = [t for i in batch for t in rows.keys[i].texts]
            assert len(texts) == len(set(texts))
    dropping = KnownPositiveBatchSampler(range(12), 2, True, keys=rows.keys, rows_per_epoch=6, blocks=2, seed=0)
    shortest = min(len([b for b in dropping.greedy_plan(e) if len(b) == 2]) for e in range(2))
    assert all(len(dropping.plan(e)) == len(dropping) == shortest and {len(b) for b in dropping.plan(e)} == {2}
               for e in range(2))
    with pytest.raises(ValueError, match="at most 2 epochs"):
        wider = KnownPositiveBatchSampler(range(12), 2, False, keys=rows.keys, rows_per_epoch=6, blocks=2, seed=0)
        wider._length = 2  # an epoch past the planned ones whose plan is longer
        wider.plan(3)


def test_resume_lands_on_the_right_batch_when_epochs_plan_unevenly(tiny_model, tmp_path, monkeypatch):
    """Crashed after a checkpoint at the end of the first epoch (whose greedy plan was the shorter) or in the second,
    the resumed run trains exactly the batches the uninterrupted one trained after that step, and ends with its weights."""
    from transformers import TrainerCallback

    from rtune.train import checkpointing

    rows = _uneven_epoch_rows()
    options = dict(groups=tmp_path / "g.jsonl", output=tmp_path / "m", batch_size=2, epochs=2, group_size=2,
                   learning_rate=1e-2, seed=0, model=str(tiny_model))

    def run(checkpoints, crash_at=None, resume=None):
        steps: list = []
        trainer = _recording_trainer(tiny_model, rows, TrainConfig(checkpoint_dir=checkpoints, save_steps=1, **options),
                                     checkpoints, steps)
        checkpointing.save_every(trainer, 1)

        class Crash(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == crash_at:
                    raise RuntimeError("crash")

        trainer.add_callback(Crash())
        try:
            checkpointing.run(trainer, resume)
        except RuntimeError:
            pass
        return trainer, steps

    from rtune.train.batch_sampler import KnownPositiveBatchSampler

    sampler = KnownPositiveBatchSampler(range(12), 2, False, keys=rows.keys, rows_per_epoch=6, blocks=2, seed=0)
    reference, expected = run(tmp_path / "reference")
    assert reference.state.global_step == len(expected) == 2 * len(sampler)
    weights = {k: v.detach().clone() for k, v in reference.model.state_dict().items()}
    # the first epoch's greedy plan ends at step 3; the trainer's arithmetic puts step len + 1 in the second epoch
    for step in sorted({len(sampler.greedy_plan(0)) + 1, len(sampler) + 1}):
        checkpoints = tmp_path / f"checkpoints-{step}"
        _, before = run(checkpoints, crash_at=step)
        assert before == expected[:step]
        resumed, after = run(checkpoints, resume=checkpointing.Resume(checkpoints / f"checkpoint-{step}", step))
        assert after == expected[step:], step
        state = resumed.model.state_dict()
        assert max(float((state[k] - weights[k]).abs().max()) for k in weights) < 1e-5, step


def test_loss_trend_says_whether_the_training_loss_fell():
    from rtune.train.checkpointing import loss_trend

    def history(losses):
        return [{"step": i + 1, "epoch": 0.0, "loss": v} for i, v in enumerate(losses)]

    flat = loss_trend(history([1.61, 1.60, 1.62, 1.61, 1.60, 1.61, 1.62, 1.60, 1.61, 1.60]))  # a reranker stuck at ln 5
    assert flat == {"first": pytest.approx(1.605), "last": pytest.approx(1.605), "fell": False}
    fell = loss_trend(history([1.6, 1.5, 1.2, 0.9, 0.7, 0.5, 0.4, 0.3, 0.3, 0.2]))
    assert fell == {"first": pytest.approx(1.55), "last": pytest.approx(0.25), "fell": True}
    assert loss_trend(history([1.0, 0.5, 0.2])) is None  # too few points to tell
