"""`rtune train --loss kl|margin_mse|mean_margin`: teacher scores in the rows, checks before any model
loads, batches, and the teacher recorded in the manifest and model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtune.data.groups import read_groups
from rtune.errors import InputError
from rtune.mine.config import MineConfig
from rtune.mine.run import mine
from rtune.models.loading import load_bi_encoder
from rtune.models.settings import EncoderSettings
from rtune.score.config import ScoreConfig
from rtune.score.run import score_groups
from rtune.train.bi_encoder import build_trainer, train_bi_encoder
from rtune.train.config import TrainConfig
from rtune.train.examples import build_rows
from rtune.train.losses import LOSSES
from tiny_rerankers import build_tiny_cross_encoder


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, Path]:
    """(toy dataset, groups mined by BM25 and scored by a tiny random cross-encoder)."""
    from conftest import write_beir

    root = tmp_path_factory.mktemp("distill")
    data = write_beir(root / "toy")
    mine(MineConfig(dataset=data, output=root / "mined", range="2-8", negatives=3, backfill="random"))
    teacher = build_tiny_cross_encoder(root / "tiny-ce")
    score_groups(ScoreConfig(groups=root / "mined", output=root / "scored", model=str(teacher), device="cpu"))
    return data, root / "scored"


def test_every_loss_name_is_listed_by_the_registry(tmp_path):
    assert list(LOSSES) == ["mnrl", "cached_mnrl", "kl", "margin_mse", "mean_margin"]
    with pytest.raises(ValueError, match="valid: mnrl, cached_mnrl, kl, margin_mse, mean_margin"):
        TrainConfig(groups=tmp_path, output=tmp_path / "m", loss="listnet")


def test_options_for_another_loss_and_group_size_one_are_refused(tmp_path):
    base = {"groups": tmp_path, "output": tmp_path / "m"}
    with pytest.raises(ValueError, match=r"teacher.temperature.*\n?.*read only by --loss kl, not by --loss mnrl"):
        TrainConfig(**base, teacher_temperature=2.0)
    with pytest.raises(ValueError, match=r"margin.*\n?.*read only by --loss mean_margin, not by --loss kl"):
        TrainConfig(**base, loss="kl", margin=0.5)
    with pytest.raises(ValueError, match=r"teacher.scores.*\n?.*read only by --loss kl or margin_mse"):
        TrainConfig(**base, loss="mean_margin", teacher_scores="probabilities")
    with pytest.raises(ValueError, match=r"--loss margin_mse compares .* needs --group-size 2 or more"):
        TrainConfig(**base, loss="margin_mse", group_size=1)
    TrainConfig(**base, loss="kl", group_size=3, teacher_temperature=2.0, contrastive_weight=0.5, teacher_scores="probabilities")


def test_unscored_groups_name_the_file_and_line_before_the_model_loads(tmp_path):
    groups = tmp_path / "groups.jsonl"
    groups.write_text('{"query": "q1", "pos": ["p1"], "neg": ["n1"], "pos_scores": [2.0], "neg_scores": [0.5]}\n\n'
                      '{"query": "q2", "pos": ["p2"], "neg": ["n2"]}\n')
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail with another message
    for loss in ("kl", "margin_mse"):
        with pytest.raises(InputError, match=r"groups.jsonl:3: --loss " + loss + " distils teacher scores"):
            train_bi_encoder(TrainConfig(groups=groups, output=tmp_path / "m", model=missing_model, loss=loss))
    with pytest.raises(InputError, match="no such folder"):  # mean_margin needs no teacher scores
        train_bi_encoder(TrainConfig(groups=groups, output=tmp_path / "m", model=missing_model, loss="mean_margin"))
    groups.write_text('{"query": "q1", "pos": ["p1"], "neg": ["n1"], "pos_scores": [2.0], "neg_scores": [0.5]}\n')
    with pytest.raises(InputError, match=r"groups.jsonl:1: --teacher-scores probabilities, but .* 2.0 outside"):
        train_bi_encoder(TrainConfig(groups=groups, output=tmp_path / "m", model=missing_model, loss="kl",
                                     teacher_scores="probabilities"))
    assert not (tmp_path / "m").exists()


def test_rows_carry_the_teacher_scores_in_column_order(tiny_model, scored, tmp_path):
    _, groups_folder = scored
    groups = list(read_groups(groups_folder / "groups.jsonl"))
    rows = build_rows(groups, group_size=3, seed=0, teacher_scores=True)
    config = TrainConfig(groups=groups_folder, output=tmp_path / "m", model=str(tiny_model), loss="kl", group_size=3)
    trainer = build_trainer(config, load_bi_encoder(tiny_model), rows, tmp_path / "ckpt", EncoderSettings())
    dataset = trainer.train_dataset
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    score_of = {(g.query, t): s for g in groups for t, s in zip((*g.pos, *g.neg), (*g.pos_scores, *g.neg_scores))}
    for row in dataset:
        expected = [score_of[(row["anchor"], row[c])] for c in ("positive", "negative_1", "negative_2")]
        assert row["label"] == pytest.approx(expected)


def _batches(config: TrainConfig, rows, model, tmp_path) -> list[list[int]]:
    trainer = build_trainer(config, model, rows, tmp_path / "ckpt", EncoderSettings())
    return list(trainer.get_batch_sampler(trainer.train_dataset, batch_size=config.batch_size, drop_last=False, seed=0))


def test_only_losses_with_in_batch_negatives_need_conflict_free_batches(tiny_model, tmp_path):
    """Twelve queries over four shared passages: with an in-batch term (mnrl, kl + contrastive) no batch may
    hold a passage twice; KL over each row's own group alone batches a plain seeded shuffle."""
    from rtune.data.records import TrainingGroup

    groups = [TrainingGroup(query=f"question {i}", pos=(f"shared passage {i % 4}",), neg=(f"shared passage {(i + 1) % 4}",),
                            query_id=str(i), pos_scores=(1.0,), neg_scores=(0.0,)) for i in range(12)]
    rows = build_rows(groups, group_size=2, seed=0, teacher_scores=True)
    model = load_bi_encoder(tiny_model)

    def repeats(batches) -> int:
        return sum(len(b) * 2 - len({rows.columns[c][i] for i in b for c in ("positive", "negative_1")}) for b in batches)

    common = {"groups": tmp_path, "output": tmp_path / "m", "batch_size": 6, "model": str(tiny_model)}
    for config in (TrainConfig(**common), TrainConfig(**common, loss="kl", contrastive_weight=0.5)):
        batches = _batches(config, rows, model, tmp_path)
        assert sorted(i for b in batches for i in b) == list(range(12)) and repeats(batches) == 0
    plain = _batches(TrainConfig(**common, loss="kl"), rows, model, tmp_path)
    assert [len(b) for b in plain] == [6, 6] and repeats(plain) > 0  # no row deferred


@pytest.mark.parametrize("loss", ["kl", "margin_mse"])
def test_distillation_trains_and_records_the_teacher(loss, tiny_model, scored, tmp_path):
    data, groups_folder = scored
    out = tmp_path / "student"
    summary = train_bi_encoder(TrainConfig(groups=groups_folder, dataset=data, output=out, model=str(tiny_model), loss=loss,
                                           group_size=3, batch_size=3, learning_rate=1e-3, seed=0))
    assert summary["loss"] == loss and summary["rows"]["rows"] == 6
    teacher = json.loads((groups_folder / "manifest.json").read_text())["teacher"]
    assert summary["teacher"] == teacher and teacher["settings"]["kind"] == "cross_encoder"
    manifest = json.loads((out / "rtune_manifest.json").read_text())
    assert manifest["stats"]["teacher"]["name"] == teacher["name"] and manifest["config"]["loss"] == loss
    card = (out / "README.md").read_text()
    assert f"- loss: `{loss}`" in card and f"- teacher (scores of the training groups): `{teacher['name']}`" in card
    assert load_bi_encoder(out).encode(["the cat sat"]).shape == (1, 32)


def test_a_contrastive_loss_records_no_teacher(tiny_model, scored, tmp_path):
    _, groups_folder = scored
    summary = train_bi_encoder(TrainConfig(groups=groups_folder, output=tmp_path / "m", model=str(tiny_model), batch_size=3))
    assert summary["teacher"] is None and "- teacher" not in (tmp_path / "m" / "README.md").read_text()
