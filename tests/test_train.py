"""Bi-encoder training: rows, batches without disguised positives, per-column lengths, a real (tiny) run."""

from __future__ import annotations

import json

import pytest
import torch

from rtune.data.records import TrainingGroup
from rtune.mine.run import MineConfig, mine
from rtune.models.loading import load_bi_encoder
from rtune.train.bi_encoder import build_trainer, train_bi_encoder
from rtune.train.config import TrainConfig
from rtune.train.examples import build_rows, sample_queries


def _group(i: int, pos: str, negs: tuple[str, ...] = ("n1", "n2")) -> TrainingGroup:
    return TrainingGroup(query=f"question {i}", pos=(pos,), neg=negs, query_id=str(i))


def test_build_rows_pads_skips_and_is_seeded():
    groups = [_group(0, "p0", ("a", "b", "c")), _group(1, "p1", ("a",)), _group(2, "p2", ())]
    columns, counts = build_rows(groups, group_size=3, seed=1)
    assert counts == {"rows": 2, "skipped_no_negatives": 1, "padded_few_negatives": 1}
    assert list(columns) == ["anchor", "positive", "negative_1", "negative_2"]
    assert columns["negative_1"][1] == columns["negative_2"][1] == "a"
    assert build_rows(groups, 3, seed=1)[0] == columns
    pairs, counts = build_rows(groups, group_size=1, seed=1)
    assert list(pairs) == ["anchor", "positive"] and counts["rows"] == 3


def test_sample_queries_is_a_seeded_subset():
    groups = [_group(i, f"p{i}") for i in range(10)]
    chosen = sample_queries(groups, 4, seed=3)
    assert len(chosen) == 4 and chosen == sample_queries(groups, 4, seed=3)
    assert [g.query_id for g in chosen] == sorted((g.query_id for g in chosen), key=int)
    assert sample_queries(groups, None, seed=3) == groups


def test_no_batch_holds_a_passage_twice(tiny_model, tmp_path):
    """SQuAD asks several questions of one paragraph: a batch with two of them would teach the model that
    a question's own paragraph is a negative. Built to collide: 12 queries over 4 passages."""
    groups = [_group(i, f"shared passage {i % 4}", (f"shared passage {(i + 1) % 4}",)) for i in range(12)]
    columns, _ = build_rows(groups, group_size=2, seed=0)
    config = TrainConfig(groups=tmp_path / "g.jsonl", output=tmp_path / "m", batch_size=3, model=str(tiny_model))
    trainer = build_trainer(config, load_bi_encoder(tiny_model), columns, tmp_path / "ckpt")
    dataset = trainer.train_dataset
    batches = list(trainer.get_batch_sampler(dataset, batch_size=3, drop_last=False, seed=0))
    assert sorted(i for batch in batches for i in batch) == list(range(12))  # every row once
    for batch in batches:
        texts = [t for i in batch for t in (dataset[i]["positive"], dataset[i]["negative_1"])]
        assert len(texts) == len(set(texts)), batch


def test_collator_truncates_queries_and_passages_separately(tiny_model, tmp_path):
    words = " ".join(["cat"] * 50)
    columns = {"anchor": [words], "positive": [words], "negative_1": [words]}
    config = TrainConfig(groups=tmp_path / "g", output=tmp_path / "m", model=str(tiny_model), max_query_length=8, max_passage_length=20)
    trainer = build_trainer(config, load_bi_encoder(tiny_model), columns, tmp_path / "ckpt")
    batch = trainer.data_collator([{k: v[0] for k, v in columns.items()}])
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
