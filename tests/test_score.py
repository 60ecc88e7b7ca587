"""Teacher scoring: cross-encoder, LLM yes-token and bi-encoder teachers, and the resumable `score` stage."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TOY_DOCS, TOY_QUERIES
from rtune.data.groups import read_groups
from rtune.errors import InputError
from rtune.models.rerankers.llm import DEFAULT_PROMPT
from rtune.models.rerankers.registry import detect_kind, load_reranker
from rtune.models.yes_token import yes_token_id
from rtune.score.config import ScoreConfig
from rtune.score.run import score_groups
from tiny_rerankers import build_tiny_causal_lm, build_tiny_cross_encoder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-lm")


@pytest.fixture(scope="module")
def tiny_lm_no_yes(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-lm-no-yes", with_yes=False)


def write_groups(path: Path, n: int = 8, blank_after: int | None = None) -> Path:
    """n toy groups (query, its document as positive, 0-3 other documents as negatives)."""
    docs = list(TOY_DOCS.items())
    with open(path, "w", encoding="utf-8") as handle:
        for i, (qid, (text, pos_id, _)) in enumerate(list(TOY_QUERIES.items())[:n]):
            negs = [(d, t) for d, t in docs if d != pos_id][: i % 4]
            row = {"query": text, "pos": [TOY_DOCS[pos_id]], "neg": [t for _, t in negs], "query_id": qid,
                   "pos_ids": [pos_id], "neg_ids": [d for d, _ in negs]}
            handle.write(json.dumps(row) + "\n")
            if blank_after is not None and i == blank_after:
                handle.write("\n")
    return path


def all_scores(folder: Path) -> np.ndarray:
    return np.array([s for g in read_groups(folder / "groups.jsonl") for s in (*g.pos_scores, *g.neg_scores)])


# --- the yes-token helper -----------------------------------------------------------------------------------

def test_yes_token_id_is_the_single_yes_token(tiny_lm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    assert tokenizer.convert_ids_to_tokens(yes_token_id(tokenizer)) == "Yes"


def test_yes_token_id_refuses_unknown_and_multi_token_words(tiny_lm, tiny_lm_no_yes):
    from transformers import AutoTokenizer

    with pytest.raises(InputError, match="unknown token") as err:
        yes_token_id(AutoTokenizer.from_pretrained(tiny_lm_no_yes), model_name="my-model")
    assert str(err.value).startswith("my-model: ")
    with pytest.raises(InputError, match="2 tokens"):
        yes_token_id(AutoTokenizer.from_pretrained(tiny_lm), word="Yes No", model_name="m")


# --- teachers -----------------------------------------------------------------------------------------------

def test_llm_teacher_scores_equal_a_manual_forward_pass(tiny_lm):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher = load_reranker(str(tiny_lm), "auto", precision="fp32", device="cpu", batch_size=3)
    assert detect_kind(str(tiny_lm)) == "llm" and teacher.settings()["kind"] == "llm"
    pairs = [("Where did the cat sit?", "The cat sat on the mat and purred all afternoon."),
             ("What is the capital of France?", "Paris is the capital."),  # shorter: left padding in this batch
             ("Who created Python?", "Python is a programming language created by Guido van Rossum.")]
    scores = teacher.score(pairs)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    yes = tokenizer.convert_tokens_to_ids("Yes")

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    for (query, passage), score in zip(pairs, scores):
        row = [tokenizer.bos_token_id, *ids("A: " + query), *ids("\n"), *ids("B: " + passage), *ids("\n"), *ids(DEFAULT_PROMPT)]
        with torch.no_grad():
            expected = model(torch.tensor([row])).logits[0, -1, yes].item()  # unpadded, one pair
        assert score == pytest.approx(expected, abs=1e-4)
    assert len(set(np.round(scores, 6))) == 3


def test_llm_teacher_prefixes_and_prompt_change_the_input(tiny_lm):
    teacher = load_reranker(str(tiny_lm), "llm", device="cpu", query_prefix="", passage_prefix="", separator=" ",
                            prompt="Yes or No", max_length=12)
    tokens = teacher.tokenizer.convert_ids_to_tokens(teacher.input_ids("What is the capital of France?", "Paris " * 40))
    assert tokens[:3] == ["<s>", "What", "is"] and "A" not in tokens[:3]
    assert tokens[-3:] == ["Yes", "or", "No"]
    assert len(tokens) == 12 + 3  # max_length covers bos + query + separator + passage; the prompt comes on top


def test_llm_teacher_without_yes_token_is_an_error_naming_the_model(tiny_lm_no_yes):
    with pytest.raises(InputError, match="no 'Yes' token") as err:
        load_reranker(str(tiny_lm_no_yes), "llm", device="cpu")
    assert str(tiny_lm_no_yes) in str(err.value)


def test_cross_encoder_teacher_gives_raw_logits(tiny_ce):
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    teacher = load_reranker(str(tiny_ce), "auto", device="cpu", precision="fp32")
    assert teacher.settings()["kind"] == "cross_encoder"
    pairs = [("What is the capital of France?", TOY_DOCS["d0"]), ("Where did the cat sit?", TOY_DOCS["d4"])]
    scores = teacher.score(pairs)
    tokenizer = BertTokenizerFast.from_pretrained(tiny_ce)
    model = BertForSequenceClassification.from_pretrained(tiny_ce).eval()
    for (query, passage), score in zip(pairs, scores):
        with torch.no_grad():
            expected = model(**tokenizer(query, passage, return_tensors="pt")).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-4)


def test_a_model_that_does_not_load_is_an_input_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    for folder in ("empty", "junk"):
        with pytest.raises(InputError) as err:
            load_reranker(str(tmp_path / folder), "cross_encoder", device="cpu")
        assert str(tmp_path / folder) in str(err.value)
    with pytest.raises(InputError, match="causal LM"):
        load_reranker(str(tmp_path / "junk"), "llm", device="cpu")
    with pytest.raises(ValueError, match="valid: auto, cross_encoder, llm, bi_encoder"):
        load_reranker("x", "colbert")


def test_bi_encoder_teacher_is_the_model_similarity(tiny_model):
    from sentence_transformers import SentenceTransformer

    teacher = load_reranker(str(tiny_model), "bi_encoder", device="cpu")
    pairs = [("What is the capital of France?", TOY_DOCS["d0"]), ("Where did the cat sit?", TOY_DOCS["d4"]),
             ("Where did the cat sit?", TOY_DOCS["d2"])]
    model = SentenceTransformer(str(tiny_model), device="cpu")
    expected = [float(model.similarity(model.encode([q]), model.encode([p]))[0, 0]) for q, p in pairs]
    assert np.allclose(teacher.score(pairs), expected, atol=1e-5)


def test_llm_reranker_adapter_folder_scores_like_its_merged_model(tiny_lm, tmp_path, caplog):
    """`rtune score --teacher llm` (and auto) on a `train-llm-reranker` adapter folder: base + adapter, no merge."""
    import shutil

    from rtune.models.merge import MergeConfig, merge
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

    base = tmp_path / "base"
    shutil.copytree(tiny_lm, base)
    groups = write_groups(tmp_path / "groups.jsonl")
    adapter = tmp_path / "adapter"
    train_llm_reranker(LLMRerankerTrainConfig(groups=groups, output=adapter, model=str(base), lora_rank=4, group_size=2,
                                              batch_size=4, epochs=2, learning_rate=1e-2, warmup_ratio=0.0, device="cpu",
                                              query_prefix="Q: ", max_length=96))
    merge(MergeConfig(adapter=adapter, output=tmp_path / "merged"))
    # with no prompt options, scoring and eval --rerank read it the way it was trained (rtune_reranker.json)
    for folder in (adapter, tmp_path / "merged"):
        settings = load_reranker(str(folder), "auto", device="cpu").settings()
        assert settings["query_prefix"] == "Q: " and settings["max_length"] == 96 and settings["passage_prefix"] == "B: "
    assert load_reranker(str(base), "llm", device="cpu").settings()["query_prefix"] == "A: "  # nothing saved: the default
    assert detect_kind(str(adapter)) == "llm"
    from_adapter = score_groups(ScoreConfig(groups=groups, output=tmp_path / "s-adapter", model=str(adapter), device="cpu"))
    score_groups(ScoreConfig(groups=groups, output=tmp_path / "s-merged", model=str(tmp_path / "merged"), teacher="llm", device="cpu"))
    score_groups(ScoreConfig(groups=groups, output=tmp_path / "s-base", model=str(base), teacher="llm", device="cpu"))
    assert from_adapter["teacher"]["settings"]["kind"] == "llm"
    np.testing.assert_allclose(all_scores(tmp_path / "s-adapter"), all_scores(tmp_path / "s-merged"), atol=1e-4)
    assert not np.allclose(all_scores(tmp_path / "s-adapter"), all_scores(tmp_path / "s-base"), atol=1e-3)  # it trained
    load_reranker(str(adapter), "llm", device="cpu", prompt="Yes or No")
    assert "trained with different prompt" in caplog.text  # the prompt it was trained with is in rtune_reranker.json

    shutil.rmtree(base)
    with pytest.raises(InputError, match=r"the adapter's base model '.*base' cannot be found") as err:
        load_reranker(str(adapter), "llm", device="cpu")
    assert str(err.value).startswith(f"{adapter}: ")
    with pytest.raises(InputError, match="cannot be found"):  # before any scoring
        score_groups(ScoreConfig(groups=groups, output=tmp_path / "s-gone", model=str(adapter), device="cpu"))
    assert not (tmp_path / "s-gone").exists()


# --- the stage ----------------------------------------------------------------------------------------------

def test_score_groups_fills_every_score_and_records_the_teacher(tiny_ce, tmp_path):
    source = write_groups(tmp_path / "groups.jsonl")
    config = ScoreConfig(groups=source, output=tmp_path / "scored", model=str(tiny_ce), shard_size=3, batch_size=4, device="cpu")
    stats = score_groups(config)
    assert stats["groups"] == 8 and stats["shards"] == 3 and stats["shards_resumed"] == 0
    teacher = load_reranker(str(tiny_ce), "cross_encoder", device="cpu")
    before, after = list(read_groups(source)), list(read_groups(tmp_path / "scored" / "groups.jsonl"))
    assert [g.query_id for g in after] == [g.query_id for g in before] and after[3].neg_ids == before[3].neg_ids
    for group in after:
        assert len(group.pos_scores) == len(group.pos) and len(group.neg_scores) == len(group.neg)
        expected = teacher.score([(group.query, t) for t in (*group.pos, *group.neg)])  # one group per batch
        assert np.allclose([*group.pos_scores, *group.neg_scores], expected, atol=1e-5)
    manifest = json.loads((tmp_path / "scored" / "manifest.json").read_text())
    assert manifest["stage"] == "score" and manifest["teacher"]["settings"]["kind"] == "cross_encoder"
    assert manifest["teacher"]["settings"]["dtype"] == "float32"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scored.score-")]  # work folder cleaned up
    with pytest.raises(FileExistsError):
        score_groups(config)
    assert score_groups(config.model_copy(update={"overwrite": True}))["groups"] == 8


def test_a_budget_scores_the_sample_train_would_draw_and_the_first_negatives(tiny_ce, tmp_path):
    """--max-queries: the seeded sample `rtune train --max-queries` draws (file order kept); --max-negatives:
    each group's first N negatives with their ids; the scores equal a full run's for those pairs."""
    from rtune.data.groups import sample_groups

    source = write_groups(tmp_path / "groups.jsonl", blank_after=2)
    full = ScoreConfig(groups=source, output=tmp_path / "full", model=str(tiny_ce), shard_size=2, device="cpu")
    score_groups(full)
    cut = full.model_copy(update={"output": tmp_path / "cut", "max_queries": 5, "max_negatives": 1, "seed": 3})
    stats = score_groups(cut)
    everything = list(read_groups(tmp_path / "full" / "groups.jsonl"))
    expected = sample_groups(everything, 5, 3)
    scored = list(read_groups(tmp_path / "cut" / "groups.jsonl"))
    assert stats["groups"] == 5 and [g.query_id for g in scored] == [g.query_id for g in expected]
    for got, want in zip(scored, expected):
        assert got.neg == want.neg[:1] and got.neg_ids == want.neg_ids[:1] and len(got.neg_scores) == len(got.neg)
        assert np.allclose([*got.pos_scores, *got.neg_scores], [*want.pos_scores, *want.neg_scores[:1]], atol=1e-5)
    assert stats["pairs"] == sum(len(g.pos) + len(g.neg) for g in scored)


def test_bad_groups_fail_before_the_model_loads(tmp_path):
    source = tmp_path / "groups.jsonl"
    source.write_text('{"query": "q", "pos": ["p"], "neg": []}\n{"query": "q2", "pos": []}\n')
    config = ScoreConfig(groups=source, output=tmp_path / "out", model=str(tmp_path / "no-such-model"))
    with pytest.raises(InputError, match=r"groups.jsonl:2: field 'neg'|groups.jsonl:2: field 'pos'"):
        score_groups(config)
    with pytest.raises(ValueError, match="valid: auto, cross_encoder, llm, bi_encoder"):
        ScoreConfig(groups=source, output=tmp_path / "out", model="m", teacher="colbert")


class PoisonTeacher:
    """Scores by passage length; NaN for the (query, passage) pair `poison` (when set). Counts scored pairs."""

    name = "poison"

    def __init__(self, poison: tuple[str, str] | None) -> None:
        self.poison, self.scored = poison, 0

    def settings(self) -> dict:
        return {"kind": "test"}

    def score(self, pairs):
        self.scored += len(pairs)
        return [math.nan if (q, p) == self.poison else float(len(p)) for q, p in pairs]


def test_nan_from_the_teacher_names_the_line_keeps_finished_shards_and_resumes(tmp_path):
    source = write_groups(tmp_path / "groups.jsonl", blank_after=1)  # line 3 is blank: group 3 sits on line 5
    poison = (TOY_QUERIES["q3"][0], TOY_DOCS["d2"])  # group 3's negatives are d0, d1, d2
    config = ScoreConfig(groups=source, output=tmp_path / "out", model="unused", shard_size=2)
    with pytest.raises(InputError, match=r"groups\.jsonl:5: .*non-finite score \(nan\) for the negative 3") as err:
        score_groups(config, teacher=PoisonTeacher(poison))
    assert "groups.jsonl:5" in str(err.value)
    assert not (tmp_path / "out").exists()
    work = [p for p in tmp_path.iterdir() if p.name.startswith(".out.score-")]
    assert len(work) == 1 and sorted(p.name for p in work[0].glob("shard-*")) == ["shard-000000.json"]
    healthy = PoisonTeacher(None)
    stats = score_groups(config, teacher=healthy)
    assert stats["shards_resumed"] == 1 and healthy.scored == stats["pairs"] - 3  # groups 0-1 hold 3 texts
    assert np.allclose(all_scores(tmp_path / "out"), [len(t) for g in read_groups(source) for t in (*g.pos, *g.neg)])


CHILD = """
import sys, time
from rtune.score.config import ScoreConfig
from rtune.score.run import score_groups
from rtune.models.rerankers.registry import load_reranker

class Slow:
    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
    def settings(self):
        return self.inner.settings()
    def score(self, pairs):
        time.sleep(0.4)
        return self.inner.score(pairs)

groups, output, model = sys.argv[1:4]
config = ScoreConfig(groups=groups, output=output, model=model, shard_size=1, batch_size=2, device="cpu")
score_groups(config, teacher=Slow(load_reranker(config.model, config.teacher, **config.teacher_settings())))
"""


def test_a_sigkilled_run_resumes_and_equals_an_uninterrupted_one(tiny_ce, tmp_path):
    source = write_groups(tmp_path / "groups.jsonl")
    output = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(output), str(tiny_ce)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if list(tmp_path.glob(".killed.score-*/shard-000001.json")):
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not output.exists()
    config = ScoreConfig(groups=source, output=output, model=str(tiny_ce), shard_size=1, batch_size=2, device="cpu")
    stats = score_groups(config)
    assert 2 <= stats["shards_resumed"] < stats["shards"] == 8
    fresh = score_groups(config.model_copy(update={"output": tmp_path / "fresh"}))
    assert fresh["shards_resumed"] == 0
    assert np.allclose(all_scores(output), all_scores(tmp_path / "fresh"), atol=1e-5)
