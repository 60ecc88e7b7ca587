"""Model resolution, the Retriever API, and the eval stage (runs checked against a second computation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TOY_DOCS
from rtune import Retriever
from rtune.data.records import Document
from rtune.data.run_file import read_run
from rtune.errors import InputError
from rtune.eval.evaluate import EvalConfig, evaluate
from rtune.models.loading import load_bi_encoder
from rtune.models.names import DEFAULT_MODEL, packaged_default, resolve_model


def test_default_model_resolves_to_the_packaged_copy(tmp_path):
    assert resolve_model(None) == resolve_model(DEFAULT_MODEL) == resolve_model("all-MiniLM-L6-v2") == str(packaged_default())
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_model_that_does_not_load_is_named(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"broken: model does not load"):
        load_bi_encoder(broken)


def test_retriever_ranks_like_brute_force(tiny_model):
    retriever = Retriever.from_pretrained(tiny_model)
    retriever.index_documents([Document(k, v) for k, v in TOY_DOCS.items()])
    queries = ["capital of France", "cat on the mat", "longest river"]
    hits = retriever.batch_retrieve(queries, top_k=8, batch_size=2)
    model = retriever.encoder.model
    docs = model.encode(list(TOY_DOCS.values()), normalize_embeddings=True)
    for query, row in zip(queries, hits):
        brute = dict(zip(TOY_DOCS, docs @ model.encode([query], normalize_embeddings=True)[0]))
        assert sorted(h.doc_id for h in row) == sorted(TOY_DOCS)
        np.testing.assert_allclose([h.score for h in row], [brute[h.doc_id] for h in row], atol=1e-5)
        assert all(a.score >= b.score - 1e-6 for a, b in zip(row, row[1:]))  # best first (ties may swap)
    assert retriever.retrieve("capital of France", top_k=2) == hits[0][:2]


def test_retriever_accepts_paths_dicts_and_strings(tiny_model, toy_beir):
    retriever = Retriever.from_pretrained(tiny_model)
    assert retriever.index_documents(toy_beir / "corpus.jsonl").embeddings.shape == (8, 32)
    retriever.index_documents([{"_id": "x", "text": "a cat"}, "a dog"])
    assert {h.doc_id for h in retriever.retrieve("cat", top_k=5)} == {"x", "1"}
    with pytest.raises(ValueError, match="empty"):
        retriever.index_documents([])


def test_eval_stage_writes_metrics_per_query_and_run(tiny_model, toy_beir, tmp_path):
    out = tmp_path / "eval"
    means = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", output=out, ks=[1, 5]))
    assert set(means) == {f"{m}@{k}" for m in ("ndcg", "map", "mrr", "recall", "hit") for k in (1, 5)}
    assert json.loads((out / "metrics.json").read_text()) == means
    per_query = json.loads((out / "per_query.json").read_text())
    assert set(per_query) == {"q0", "q1", "q2", "q3", "q4", "q5"}
    assert means["hit@5"] == pytest.approx(np.mean([v["hit@5"] for v in per_query.values()]))
    run = read_run(out / "run.trec")
    assert all(len(docs) == 5 for docs in run.values())
    bm25 = evaluate(EvalConfig(dataset=toy_beir, split="train", ks=[1]))
    assert bm25["hit@1"] == 1.0  # every toy query shares its key words with its passage


def test_eval_refuses_missing_split_before_work(toy_beir, tmp_path):
    with pytest.raises(InputError, match="no 'validation' split"):
        evaluate(EvalConfig(dataset=toy_beir, split="validation", output=tmp_path / "e"))
    assert not (tmp_path / "e").exists()
