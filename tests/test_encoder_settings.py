"""One set of encoder settings for train, mine, eval and the Retriever: saved with the model, applied alike."""

from __future__ import annotations

import json

import pytest

from rtune.models.settings import SETTINGS_FILE, EncoderSettings
from rtune.train.bi_encoder import train_bi_encoder
from rtune.train.config import TrainConfig

SETTINGS = dict(query_prompt="q: ", document_prompt="p: ", query_instruction="Find the passage",
                query_format="<instruct>{}|<query>{}", max_query_length=12, max_passage_length=24)


@pytest.fixture
def recorded(monkeypatch):
    """Every (string, max length) that reaches the tokenizer, through training's collator and encode alike."""
    from sentence_transformers import SentenceTransformer

    seen: list[tuple[str, int]] = []
    original = SentenceTransformer.preprocess

    def spy(self, inputs, prompt=None, **kwargs):
        texts = inputs if isinstance(inputs, list) else [inputs]
        seen.extend(((prompt or "") + t, kwargs.get("max_length") or self.max_seq_length) for t in texts if isinstance(t, str))
        return original(self, inputs, prompt=prompt, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "preprocess", spy)
    return seen


def test_model_is_trained_on_exactly_the_strings_it_is_evaluated_on(tiny_model, tmp_path, recorded):
    from rtune.data.groups import group_writer
    from rtune.data.records import TrainingGroup
    from rtune.index.retriever import Retriever

    groups = tmp_path / "groups.jsonl"
    with group_writer(groups) as write:
        for i, (query, pos, neg) in enumerate([("where did the cat sit", "The cat sat on the mat", "Dogs chase cats"),
                                               ("capital of france", "Paris is the capital", "Berlin is a city")]):
            write(TrainingGroup(query=query, pos=(pos,), neg=(neg,), query_id=str(i)))
    train_bi_encoder(TrainConfig(groups=groups, output=tmp_path / "m", model=str(tiny_model), batch_size=2, **SETTINGS))
    trained = {s for s, _ in recorded}
    assert "q: <instruct>Find the passage|<query>where did the cat sit" in trained
    assert "p: The cat sat on the mat" in trained
    saved = json.loads((tmp_path / "m" / SETTINGS_FILE).read_text())
    assert saved == {**SETTINGS, "use_title": True}
    recorded.clear()
    retriever = Retriever.from_pretrained(tmp_path / "m")  # no flags: the saved settings apply
    retriever.index_documents(["The cat sat on the mat"])
    retriever.retrieve("where did the cat sit")
    assert {s for s, _ in recorded} == {"p: The cat sat on the mat", "q: <instruct>Find the passage|<query>where did the cat sit"}
    lengths = dict(recorded)
    assert lengths["p: The cat sat on the mat"] == 24 and lengths["q: <instruct>Find the passage|<query>where did the cat sit"] == 12


def test_explicit_option_overrides_the_saved_setting(tmp_path):
    from rtune.eval.evaluate import EvalConfig

    EncoderSettings(**SETTINGS).save(tmp_path)
    resolved = EvalConfig(dataset=tmp_path, query_prompt="query: ").resolve_settings(str(tmp_path))
    assert resolved.query_prompt == "query: " and resolved.document_prompt == "p: " and resolved.max_query_length == 12


def test_bad_settings_are_refused(tmp_path):
    from rtune.errors import InputError

    with pytest.raises(ValueError, match="two"):
        TrainConfig(groups=tmp_path, output=tmp_path / "o", query_instruction="x", query_format="no slots")
    (tmp_path / SETTINGS_FILE).write_text('{"pool": "mean"}')
    with pytest.raises(InputError, match="unknown encoder settings"):
        EncoderSettings.load(tmp_path)


def test_train_refuses_a_document_rule_other_than_the_miners(tiny_model, toy_beir, tmp_path):
    from rtune.errors import InputError
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=2, backfill="random"))
    with pytest.raises(InputError, match="mined with use_title=True"):
        train_bi_encoder(TrainConfig(groups=tmp_path / "mined", output=tmp_path / "m", model=str(tiny_model), use_title=False))
    assert not (tmp_path / "m").exists()
