"""--help (help text, choices, required, panels), labelled progress, the dataset's BM25 language, training output."""

from __future__ import annotations

import json

import click
import pytest

from conftest import TOY_DOCS
from rtune.cli.main import build_cli
from rtune.index.dense_search import INDEX_TYPES
from rtune.mine.config import BACKFILL, MINERS
from rtune.mine.sampling import STRATEGIES
from rtune.pipeline.registry import STAGES
from rtune.train.summary import dev_rows


def _options(stage: str) -> dict[str, click.Option]:
    command = build_cli().commands[stage]
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_option_has_help_and_required_ones_say_so(stage):
    config_cls = STAGES[stage].config
    for name, option in _options(stage).items():
        assert option.help and option.help.strip() not in ("[required]",), f"rtune {stage} --{name} has no help text"
        field = config_cls.model_fields.get(name)
        if field is not None:
            assert ("[required]" in option.help) == field.is_required(), f"rtune {stage} --{name}"


def test_registries_are_choices():
    options = _options("mine")
    for name, registry in (("method", MINERS), ("strategy", STRATEGIES), ("backfill", BACKFILL), ("index_type", INDEX_TYPES)):
        assert isinstance(options[name].type, click.Choice) and list(options[name].type.choices) == list(registry), name
    assert list(_options("eval")["index_type"].type.choices) == list(INDEX_TYPES)
    assert list(_options("prepare")["split_by"].type.choices) == ["group", "query"]


def test_mine_help_groups_options_in_panels(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    with pytest.raises(click.exceptions.Exit):
        build_cli().main(["mine", "--help"], prog_name="rtune", standalone_mode=False)
    out = capsys.readouterr().out
    titles = [t for t in STAGES["mine"].panels if t in out]
    assert titles == list(STAGES["mine"].panels)  # every panel, in the declared order
    assert [out.index(t) for t in titles] == sorted(out.index(t) for t in titles)
    assert "--method [bm25|dense]" in out and "--index-type [exact|ivf|hnsw]" in out
    bm25 = out[out.index("BM25 (--method bm25)"):out.index("Dense (--method dense)")]
    assert "--language" in bm25 and "--model " not in bm25
    assert "[required]" in out


def test_dev_table_labels_the_start_checkpoint():
    history = [{"epoch": 0, "ndcg@10": 0.5}, {"epoch": 1.0, "ndcg@10": 0.7}, {"epoch": 2.0, "ndcg@10": 0.6}]
    assert list(dev_rows(history, "runs/stage1", history[1])) == ["start (runs/stage1)", "epoch 1 (kept)", "epoch 2"]


def test_encoding_bar_is_labelled(tiny_model, capsys):
    from rtune.index.embeddings import cached_embeddings
    from rtune.models.encoder_options import EncoderOptions

    encoder = EncoderOptions().build_encoder(str(tiny_model))
    capsys.readouterr()
    cached_embeddings(encoder, list(TOY_DOCS.values()), "documents", None, show_progress=True)
    cached_embeddings(encoder, ["a query"], "queries", None, show_progress=True)
    err = capsys.readouterr().err
    assert "encoding corpus" in err and "encoding queries" in err and "Batches" not in err


def test_mining_bar_starts_once_queries_are_encoded(capsys):
    import numpy as np

    from rtune.index.ranking import RankedBatch, with_progress

    def batches():
        assert "mining" not in capsys.readouterr().err  # no bar sitting at 0 while the index encodes queries
        for start in (0, 2):
            yield RankedBatch(start, np.zeros((2, 1), dtype=int), np.zeros((2, 1)), [[], []])

    assert len(list(with_progress(batches(), 4, "mining (dense)"))) == 2
    assert "mining (dense)" in capsys.readouterr().err


def test_prepared_language_is_the_bm25_default(squad_file, tmp_path, caplog):
    from rtune.data.beir import read_beir
    from rtune.data.manifest import read_manifest
    from rtune.data.prepare import PrepareConfig, prepare
    from rtune.eval.evaluate import EvalConfig, build_ranker, evaluate
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    data = tmp_path / "vi"
    prepare(PrepareConfig(input=squad_file, output=data, language="vi", train=0.5, dev=0.25, test=0.25))
    assert read_manifest(data)["config"]["language"] == "vi"
    mine(MineConfig(dataset=data, output=tmp_path / "m", range="1-3", negatives=1, backfill="random"))
    assert read_manifest(tmp_path / "m")["config"]["bm25_language"] == "vi"
    assert build_ranker(EvalConfig(dataset=data), read_beir(data)).index.language == "vi"
    evaluate(EvalConfig(dataset=data, split="test", output=tmp_path / "e"))
    assert read_manifest(tmp_path / "e")["config"]["language"] == "vi"
    with caplog.at_level("WARNING"):
        mine(MineConfig(dataset=data, output=tmp_path / "m2", range="1-3", negatives=1, backfill="random", language="en"))
    assert read_manifest(tmp_path / "m2")["config"]["bm25_language"] == "en"
    assert "prepared as vi" in caplog.text


def test_training_prints_one_line_per_evaluation(tiny_model, toy_beir, tmp_path, capsys):
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    mine(MineConfig(dataset=toy_beir, output=tmp_path / "g", range="1-8", negatives=2))
    capsys.readouterr()
    summary = train_bi_encoder(TrainConfig(groups=tmp_path / "g", output=tmp_path / "m", model=str(tiny_model),
                                           dataset=toy_beir, batch_size=2, epochs=1, device="cpu"))
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "epoch 1: dev ndcg@10" in printed
    assert "{'" not in printed and "train_runtime" not in printed and "Computing widget examples" not in printed
    assert json.loads((tmp_path / "m" / "rtune_manifest.json").read_text())["stats"]["dev_history"] == summary["dev_history"]
