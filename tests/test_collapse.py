"""The collapse warning: most queries sharing one top k (collapsed embeddings) is said loudly at evaluation."""

from __future__ import annotations

import logging

import pytest

from rtune.eval.collapse import shared_top_share, warn_if_collapsed


def _run(tops: list[list[str]]) -> dict[str, dict[str, float]]:
    return {f"q{i}": {d: float(len(top) - j) for j, d in enumerate(top)} for i, top in enumerate(tops)}


def test_share_counts_queries_with_the_most_common_top_k():
    same = ["a", "b", "c"]
    run = _run([same, ["c", "b", "a"], same, ["x", "y", "z"]])  # the order inside the top k does not matter
    assert shared_top_share(run, k=3) == pytest.approx(0.75)
    assert shared_top_share(run, k=1) == pytest.approx(0.5)  # a, c, a, x
    assert shared_top_share({}, k=3) == 0.0


def test_a_collapsed_run_warns_and_a_healthy_one_does_not(caplog):
    hub = ["hub", *(f"d{i}" for i in range(40))]
    collapsed = _run([hub] * 12 + [[f"d{i}", "hub"] for i in range(28)])  # 'hub' first for 12 of 40 queries
    healthy = _run([[f"d{i}", f"d{(i + 1) % 40}"] for i in range(40)])
    with caplog.at_level(logging.WARNING, logger="rtune.eval.collapse"):
        assert warn_if_collapsed(healthy, "model-ok") == pytest.approx(1 / 40)
        assert "collapsed" not in caplog.text
        assert warn_if_collapsed(collapsed, "model-x") == pytest.approx(0.3)
    assert "model-x ranks one document first for 30% of the 40 queries" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rtune.eval.collapse"):
        warn_if_collapsed(_run([["a", "b"]] * 10), "tiny")  # too few queries to tell
        warn_if_collapsed(_run([["a", "b"], ["b", "a"]] * 15), "two-documents")  # a two-document corpus: 50% is even
    assert not caplog.text


def test_eval_checks_every_run_it_scores(toy_beir, monkeypatch):
    import rtune.eval.evaluate as evaluate
    from rtune.data.beir import read_beir

    dataset = read_beir(toy_beir)
    docs = sorted(dataset.corpus)

    class Constant:
        name = "constant"

        def rank(self, queries, k):
            return {qid: {d: float(-i) for i, d in enumerate(docs[:k])} for qid in queries}

    seen = []
    monkeypatch.setattr(evaluate, "warn_if_collapsed", lambda run, name: seen.append((name, shared_top_share(run))))
    evaluate.evaluate_ranker(Constant(), dataset, "train", ["ndcg@1"])
    assert seen == [("constant", 1.0)]
