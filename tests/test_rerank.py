"""Reranking a first stage: rerank_run, `rtune eval --rerank` side by side, Retriever(reranker=...)."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from conftest import TOY_DOCS, TOY_QUERIES
from rtune.data.run_file import read_run
from rtune.errors import InputError
from rtune.eval.evaluate import EvalConfig, evaluate
from rtune.eval.metrics import compute_metrics, metric_names
from rtune.index.rerank import fuse_with_first_stage, rerank_run
from rtune.models.rerankers.registry import load_reranker
from tiny_rerankers import TableReranker, build_tiny_cross_encoder


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


def test_rerank_run_reorders_the_top_and_keeps_the_tail_below():
    run = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, "r": {"a": 1.0}}
    texts = {d: f"text {d}" for d in "abcd"}
    reranker = TableReranker({"text a": 0.1, "text b": 0.9, "text c": 5.0})  # c is outside the top 2: never asked
    out = rerank_run(run, {"q": "query q", "r": "query r"}, texts, reranker, top_k=2, show_progress=False)
    assert sorted(out["q"], key=lambda d: -out["q"][d]) == ["b", "a", "c", "d"]
    assert out["q"]["b"] == pytest.approx(0.9) and out["q"]["a"] == pytest.approx(0.1)
    assert out["q"]["c"] < 0.1 and out["q"]["d"] < out["q"]["c"]
    assert sorted(reranker.pairs) == [("query q", "text a"), ("query q", "text b"), ("query r", "text a")]


def test_rerank_run_refuses_non_finite_scores():
    reranker = TableReranker({"text b": math.nan})
    with pytest.raises(ValueError, match="non-finite score \\(nan\\) for query 'q', document 'b'"):
        rerank_run({"q": {"a": 2.0, "b": 1.0}}, {"q": "x"}, {"a": "text a", "b": "text b"}, reranker, 5, show_progress=False)


def test_fusion_with_the_first_stage_interpolates_min_max_normalised_scores_over_the_reranked_top():
    first = {"q": {"a": 10.0, "b": 8.0, "c": 4.0, "d": 1.0}}
    reranked = {"q": {"a": -2.0, "b": 0.0, "c": 3.0, "d": -9.0}}  # d: below the top 3, never reranked
    fused = fuse_with_first_stage(first, reranked, top_k=3, method="minmax", reranker_weight=0.6)
    # first stage over a, b, c min-max: 1, 4/6, 0; reranker: 0, 2/5, 1 -> 0.4 x first + 0.6 x reranker
    expected = {"a": 0.4, "b": 0.4 * 4 / 6 + 0.6 * 2 / 5, "c": 0.6}
    assert {d: fused["q"][d] for d in "abc"} == pytest.approx(expected)
    assert sorted(fused["q"], key=lambda d: -fused["q"][d]) == ["c", "b", "a", "d"]
    assert fused["q"]["d"] < 0.4
    with pytest.raises(ValueError, match="no score for query 'q', document 'b'"):
        fuse_with_first_stage(first, {"q": {"a": 1.0}}, top_k=2)
    alone = fuse_with_first_stage(first, reranked, 3, "minmax", 1.0)  # weight 1: the reranker's order
    assert sorted(alone["q"], key=lambda d: -alone["q"][d])[:3] == ["c", "b", "a"]
    rrf = fuse_with_first_stage(first, reranked, 3, "rrf", 0.5, rrf_k=1)  # ranks a1 b2 c3 / c1 b2 a3: a = c = 1/2+1/4
    assert rrf["q"]["a"] == pytest.approx(rrf["q"]["c"]) and rrf["q"]["b"] == pytest.approx(0.5 * (1 / 3 + 1 / 3))


def test_eval_adds_the_fused_rerank_beside_first_stage_and_reranker(toy_beir, tiny_ce, tmp_path):
    out = tmp_path / "eval"
    config = EvalConfig(dataset=toy_beir, model="bm25", split="train", output=out, ks=[1, 3], rerank=str(tiny_ce),
                        rerank_top=3, rerank_fusion="minmax", rerank_weight=0.3)
    means = evaluate(config)
    names = metric_names(config.metrics, config.ks)
    assert set(means) == set(names) | {f"{p}.{n}" for p in ("reranked", "reranked_fused") for n in names}
    first, reranked, fused = (read_run(out / f"run.{name}trec") for name in ("", "reranked.", "reranked_fused."))
    from rtune.data.beir import read_beir

    qrels = read_beir(toy_beir).require_split("train")
    assert compute_metrics(qrels, fused, names)[0] == pytest.approx({n: means[f"reranked_fused.{n}"] for n in names}, abs=1e-4)
    again = fuse_with_first_stage(first, reranked, 3, "minmax", 0.3)
    for qid in first:
        order = sorted(again[qid], key=lambda d: (-again[qid][d], d))[:3]
        assert sorted(fused[qid], key=lambda d: (-fused[qid][d], d))[:3] == order
    with pytest.raises(ValidationError, match="--rerank-fusion is read only with --rerank"):
        EvalConfig(dataset=toy_beir, rerank_fusion="minmax")
    with pytest.raises(ValidationError, match="rerank_fusion"):
        EvalConfig(dataset=toy_beir, rerank=str(tiny_ce), rerank_fusion="mean")
    with pytest.raises(ValidationError, match="--rerank-weight is read only with --rerank-fusion"):
        EvalConfig(dataset=toy_beir, rerank=str(tiny_ce), rerank_weight=0.2)


def test_eval_reports_first_stage_and_reranked_side_by_side(toy_beir, tiny_ce, tmp_path):
    out = tmp_path / "eval"
    config = EvalConfig(dataset=toy_beir, model="bm25", split="train", output=out, ks=[1, 3], rerank=str(tiny_ce), rerank_top=3)
    means = evaluate(config)
    names = metric_names(config.metrics, config.ks)
    assert set(means) == set(names) | {f"reranked.{n}" for n in names}
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(means)
    per_query = json.loads((out / "per_query.json").read_text())
    assert all(set(values) == set(means) for values in per_query.values())
    first, reranked = read_run(out / "run.trec"), read_run(out / "run.reranked.trec")
    from rtune.data.beir import read_beir

    dataset = read_beir(toy_beir)
    qrels = dataset.require_split("train")
    assert compute_metrics(qrels, reranked, names)[0] == pytest.approx({n: means[f"reranked.{n}"] for n in names}, abs=1e-4)
    assert compute_metrics(qrels, first, names)[0] == pytest.approx({n: means[n] for n in names}, abs=1e-4)
    teacher = load_reranker(str(tiny_ce), "cross_encoder", device="cpu")
    for qid, docs in first.items():  # the first stage's top 3 carry the cross-encoder's scores, every other below
        top = sorted(docs, key=lambda d: -docs[d])[:3]
        expected = teacher.score([(TOY_QUERIES[qid][0], TOY_DOCS[d]) for d in top])
        assert [reranked[qid][d] for d in top] == pytest.approx(expected, abs=1e-4)
        assert all(reranked[qid][d] < min(expected) for d in docs if d not in top)


def test_retriever_reranks_its_top_candidates(tiny_model, tiny_ce):
    from rtune import Retriever

    docs = list(TOY_DOCS.values())
    favourite = TOY_DOCS["d5"]
    reranker = TableReranker({favourite: 10.0})
    retriever = Retriever.from_pretrained(str(tiny_model), device="cpu", reranker=reranker, rerank_top=len(docs))
    retriever.index_documents(docs)
    hits = retriever.retrieve("What is the capital of France?", top_k=2)
    assert len(hits) == 2 and hits[0].text == favourite and hits[0].score == 10.0
    assert len(reranker.pairs) == len(docs)
    loaded = Retriever.from_pretrained(str(tiny_model), device="cpu", reranker=str(tiny_ce), rerank_top=3)
    loaded.index_documents(docs)
    first_stage = Retriever.from_pretrained(str(tiny_model), device="cpu").index_documents(docs)
    top3 = [h.text for h in first_stage.retrieve("Where did the cat sit?", top_k=3)]
    expected = dict(zip(top3, loaded.reranker.score([("Where did the cat sit?", t) for t in top3])))
    hits = loaded.retrieve("Where did the cat sit?", top_k=3)
    assert sorted(h.text for h in hits) == sorted(top3)
    assert [h.score for h in hits] == pytest.approx([expected[h.text] for h in hits], abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_retriever_fuses_the_reranker_with_its_first_stage_as_eval_does(tiny_model):
    from rtune import Retriever

    docs = list(TOY_DOCS.values())
    query = "Where did the cat sit?"
    reranker = TableReranker({t: float(i % 3) for i, t in enumerate(docs)})
    first_stage = Retriever.from_pretrained(str(tiny_model), device="cpu").index_documents(docs)
    first = {"q": {h.doc_id: h.score for h in first_stage.retrieve(query, top_k=4)}}
    fused = Retriever.from_pretrained(str(tiny_model), device="cpu", reranker=reranker, rerank_top=4,
                                      rerank_fusion="minmax", rerank_weight=0.7).index_documents(docs)
    hits = fused.retrieve(query, top_k=4)
    alone = {"q": {d: reranker.table.get(docs[int(d)], 0.0) for d in first["q"]}}
    expected = fuse_with_first_stage(first, alone, 4, "minmax", 0.7)["q"]
    assert {h.doc_id: h.score for h in hits} == pytest.approx(expected)
    assert [h.score for h in hits] == sorted(expected.values(), reverse=True)
    with pytest.raises(InputError, match="rerank fusion"):
        Retriever.from_pretrained(str(tiny_model), device="cpu", reranker=reranker, rerank_fusion="sum")
    with pytest.raises(InputError, match="give a reranker too"):
        Retriever.from_pretrained(str(tiny_model), device="cpu", rerank_fusion="minmax")
    with pytest.raises(InputError, match="rerank_weight must be a number within 0..1, got 1.5"):
        Retriever.from_pretrained(str(tiny_model), device="cpu", reranker=reranker, rerank_fusion="minmax", rerank_weight=1.5)
