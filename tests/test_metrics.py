"""Metrics against pytrec_eval directly and against hand-worked values; TREC run files."""

from __future__ import annotations

import math

import pytest
import pytrec_eval

from rtune.data.run_file import read_run, write_run
from rtune.eval.metrics import compute_metrics, metric_names

QRELS = {"q1": {"a": 1, "c": 1}, "q2": {"x": 2, "y": 1}, "q3": {"z": 1}}
RUN = {
    "q1": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1},
    "q2": {"w": 3.0, "y": 2.0, "x": 1.0},
    "q3": {"m": 1.0, "n": 0.5},  # relevant doc never retrieved
}


def test_values_match_pytrec_eval():
    names = metric_names(["ndcg", "map", "recall", "precision"], [1, 3, 10])
    means, per_query = compute_metrics(QRELS, RUN, names)
    measures = {"ndcg_cut.1,3,10", "map_cut.1,3,10", "recall.1,3,10", "P.1,3,10"}
    reference = pytrec_eval.RelevanceEvaluator(QRELS, measures).evaluate(RUN)
    trec = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}
    for qid in QRELS:
        for name in names:
            family, k = name.split("@")
            assert per_query[qid][name] == pytest.approx(reference[qid][f"{trec[family]}_{k}"]), (qid, name)


def test_hand_worked_values():
    means, per_query = compute_metrics(QRELS, RUN, metric_names(["mrr", "hit", "recall", "ndcg"], [1, 2, 3]))
    # q1: relevant at ranks 1 and 3; q2: first relevant (y) at rank 2; q3: none retrieved
    assert per_query["q1"]["mrr@1"] == 1.0 and per_query["q2"]["mrr@1"] == 0.0 and per_query["q2"]["mrr@2"] == 0.5
    assert per_query["q1"]["hit@1"] == 1.0 and per_query["q2"]["hit@1"] == 0.0 and per_query["q2"]["hit@2"] == 1.0
    assert per_query["q1"]["recall@2"] == 0.5 and per_query["q1"]["recall@3"] == 1.0
    # q2 nDCG@3 with trec_eval's linear gains: y=1 at rank 2, x=2 at rank 3; ideal x then y
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_query["q2"]["ndcg@3"] == pytest.approx(dcg / idcg)
    assert means["mrr@2"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_query_missing_from_run_counts_as_zero():
    means, per_query = compute_metrics(QRELS, {"q1": RUN["q1"]}, ["hit@1"])
    assert per_query["q2"]["hit@1"] == 0.0 and means["hit@1"] == pytest.approx(1 / 3)


def test_unknown_metric_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown metric 'f1'; valid: ndcg, map, mrr, recall, hit, precision"):
        metric_names(["f1"], [10])
    with pytest.raises(ValueError, match="positive"):
        metric_names(["ndcg"], [0])


def test_run_file_round_trip(tmp_path):
    write_run(tmp_path / "run.trec", RUN, tag="my model")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 0.9 my_model" and lines[4] == "q2 Q0 w 1 3.0 my_model"
    assert read_run(tmp_path / "run.trec") == RUN


def test_run_files_keep_rtunes_order_and_exact_scores(tmp_path):
    """Ties are written in rtune's order (document id ascending, the order its cut-offs and metrics use) and scores
    read back bit for bit (they were rounded to 6 decimals, so a hybrid fused from files was not eval --hybrid's)."""
    from rtune.data.run_file import ranked

    run = {"q": {"d2": 0.5, "d10": 0.5, "d1": 0.123456789012345, "d3": 1 / 3}}
    write_run(tmp_path / "run.trec", run)
    rows = [line.split() for line in (tmp_path / "run.trec").read_text().splitlines()]
    assert [r[2] for r in rows] == [d for d, _ in ranked(run["q"])] == ["d10", "d2", "d3", "d1"]
    assert [int(r[3]) for r in rows] == [1, 2, 3, 4]
    assert read_run(tmp_path / "run.trec") == run  # exact floats: the same value written and read, not two computations


def test_metrics_follow_rtunes_order_of_tied_documents():
    """Two documents tie; rtune ranks d10 before d2 (ids ascending): the metrics score that order, whatever the
    metric library's own tie rule."""
    run = {"q": {"d2": 1.0, "d10": 1.0}}
    means, _ = compute_metrics({"q": {"d2": 1}}, run, ["mrr@10"])
    assert means["mrr@10"] == pytest.approx(0.5)
    means, _ = compute_metrics({"q": {"d10": 1}}, run, ["mrr@10"])
    assert means["mrr@10"] == pytest.approx(1.0)
