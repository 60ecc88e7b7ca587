"""The mining report's false-negative estimate: the share of sampled negatives a stronger scorer puts above the
query's best positive, against a hand count."""

from __future__ import annotations

import json

import pytest

from conftest import TOY_DOCS
from rtune.data.records import TrainingGroup
from rtune.mine.false_negatives import estimate, sample_query_ids
from tiny_rerankers import TableReranker


def test_estimate_counts_negatives_scored_above_the_best_positive():
    groups = [TrainingGroup(query="q1", pos=("p1", "p1b"), neg=("n1", "n2", "n3"), query_id="1", neg_sources=("bm25",) * 3),
              TrainingGroup(query="q2", pos=("p2",), neg=("n4", "n5"), query_id="2", neg_sources=("bm25", "random"))]
    checker = TableReranker({"p1": 0.2, "p1b": 0.9, "n1": 0.95, "n2": 0.5, "n3": 0.1, "p2": 0.4, "n4": 0.3, "n5": 0.8})
    found = estimate(groups, checker)
    # above the best positive: n1 (0.95 > 0.9) and n5 (0.8 > 0.4): 2 of 5
    assert found["negatives"] == 5 and found["share_above_best_positive"] == pytest.approx(0.4)
    assert found["by_source"] == {"bm25": pytest.approx(1 / 4), "random": pytest.approx(1.0)}
    assert [e["negative"] for e in found["examples"]] == ["n5", "n1"]  # most suspicious first
    assert found["examples"][1]["positive"] == "p1b"


def test_sample_is_seeded_and_capped():
    ids = [str(i) for i in range(50)]
    assert sample_query_ids(ids, 10, 1) == sample_query_ids(ids, 10, 1) and len(sample_query_ids(ids, 10, 1)) == 10
    assert sample_query_ids(ids, 100, 1) == set(ids)


def test_mining_reports_the_estimate(toy_beir, tmp_path, monkeypatch):
    import rtune.mine.run as run
    from rtune.mine.config import MineConfig

    checker = TableReranker({text: (1.0 if doc == "d1" else 0.5) for doc, text in TOY_DOCS.items()})
    monkeypatch.setattr(run, "load_reranker", lambda model, kind, device=None: checker)
    run.mine(MineConfig(dataset=toy_beir, output=tmp_path / "mined", range="2-8", negatives=3, false_negative_check="any",
                        false_negative_sample=100))
    report = json.loads((tmp_path / "mined" / "mining_report.json").read_text())
    found = report["false_negative_estimate"]
    groups = [json.loads(line) for line in (tmp_path / "mined" / "groups.jsonl").read_text().splitlines()]
    # a second count from the written groups: d1's text beats every positive but its own query's
    expected = sum(n == TOY_DOCS["d1"] and g["pos"][0] != TOY_DOCS["d1"] for g in groups for n in g["neg"])
    assert found["negatives"] == sum(len(g["neg"]) for g in groups) and found["queries"] == sum(bool(g["neg"]) for g in groups)
    assert found["share_above_best_positive"] == pytest.approx(expected / found["negatives"], abs=1e-4)  # rounded
