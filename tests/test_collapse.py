"""The collapse warning: most queries sharing one top k (collapsed embeddings) is said loudly at evaluation."""

from __future__ import annotations

import logging

import pytest

from rtune.index.collapse import shared_top_share, warn_if_collapsed


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
    with caplog.at_level(logging.WARNING, logger="rtune.index.collapse"):
        assert warn_if_collapsed(healthy, "model-ok") == pytest.approx(1 / 40)
        assert "collapsed" not in caplog.text
        assert warn_if_collapsed(collapsed, "model-x") == pytest.approx(0.3)
    assert "model-x ranks one document first for 30% of the 40 queries" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rtune.index.collapse"):
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


def _hub_source(size: int, hub_for: int):
    """A candidate source over `size` documents that ranks position 0 first for the first `hub_for` queries and
    otherwise the query's own position first (then the rest in order)."""
    import numpy as np

    from rtune.index.ranking import RankedBatch

    class Source:
        name = "hub-source"

        def __init__(self):
            self.size = size

        def rank_all(self, queries, k, batch_size=1024, given=None):
            rows = []
            for i in range(len(queries)):
                first = 0 if i < hub_for else (i + 1) % size
                rows.append([first, *(p for p in range(size) if p != first)][:k])
            positions = np.asarray(rows, dtype=np.int64)
            scores = np.tile(np.linspace(1.0, 0.0, positions.shape[1], dtype=np.float32), (len(queries), 1))
            yield RankedBatch(0, positions, scores, [[0.5] * len(g) for g in (given or [[]] * len(queries))])

    return Source()


@pytest.mark.parametrize("hub_for, warned", [(24, True), (2, False)])
def test_mining_reports_and_warns_when_one_document_comes_first_for_most_queries(hub_for, warned, tmp_path, caplog):
    from conftest import write_beir
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    docs = {f"d{i}": f"document number {i} about topic {i}" for i in range(40)}
    queries = {f"q{i}": (f"question about topic {i}", f"d{(i + 1) % 40}", "g") for i in range(30)}
    data = write_beir(tmp_path / "data", docs, queries, {"train": list(queries)})
    with caplog.at_level(logging.WARNING, logger="rtune.mine.run"):
        report = mine(MineConfig(dataset=data, output=tmp_path / "out", range="1-10", negatives=3),
                      source=_hub_source(len(docs), hub_for))
    first = report["first_document"]
    assert first["top1_share"] == pytest.approx(hub_for / 30, abs=1e-4)
    assert first["looks_collapsed"] is warned
    assert first["most_common"][0] == ["d0", hub_for]
    assert ("ranks one document first" in caplog.text) is warned
    assert ("the miner (hub-source) ranks one document first for 80% of the 30 queries" in caplog.text) is warned
