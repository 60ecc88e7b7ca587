"""BM25 against a second computation; negative sampling; the mine stage and its refusals."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import numpy as np
import pytest

from conftest import TOY_DOCS, write_beir
from rtune.data.groups import read_groups
from rtune.errors import InputError
from rtune.index.bm25 import BM25Index
from rtune.mine.config import MineConfig
from rtune.mine.run import mine
from rtune.mine.sampling import Candidate, RankRange, select_negatives

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a quick brown dog outpaces a quick fox",
    "lazy dogs sleep all day long",
    "foxes are quick and clever animals",
    "the weather today is sunny and warm",
]


def reference_bm25(corpus: list[str], query: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene (>= 8) BM25 written out by hand: idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    tf part = tf / (tf + k1 (1 - b + b dl/avgdl)) (no (k1 + 1) factor, as Lucene 8 dropped it)."""
    docs = [re.findall(r"\w+", d.lower()) for d in corpus]
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in re.findall(r"\w+", query.lower()):
            if term in tf:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


@pytest.mark.parametrize("query", ["quick fox", "lazy dog sleep", "sunny weather", "clever animals quick"])
def test_bm25_matches_hand_computation(query):
    index = BM25Index(language="xx").index(CORPUS)  # no stemmer, no stopwords: plain tokens
    expected = reference_bm25(CORPUS, query)
    np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5, atol=1e-6)
    positions, scores = index.search([query], k=5)
    matching = sorted((i for i in range(5) if expected[i] > 0), key=lambda i: (-expected[i], i))
    assert list(positions[0]) == matching + [-1] * (5 - len(matching))  # no shared term: not ranked


def test_bm25_english_stems_and_vietnamese_works():
    english = BM25Index("en").index(["The runners were running fast", "A slow walk"])
    assert english.search(["run"], k=1)[0][0][0] == 0
    vietnamese = BM25Index("vi").index(["Tôi sống ở Hà Nội", "Con mèo ngủ ở nhà"])
    assert vietnamese.search(["mèo ở nhà"], k=1)[0][0][0] == 1
    positions, scores = english.search(["", "zzz"], k=2)  # empty / unknown queries match nothing
    assert positions.tolist() == [[-1, -1], [-1, -1]] and scores.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_rank_range_parsing():
    assert RankRange.parse("2-200") == RankRange(2, 200) and RankRange.parse(" 3 - 5 ").width == 3
    for bad in ("0-10", "10-2", "abc", "5"):
        with pytest.raises(ValueError):
            RankRange.parse(bad)


def test_select_negatives_range_rules_and_strategies():
    ranked = [Candidate(f"d{i}", i, 10.0 - i) for i in range(1, 11)]
    rules = [("known_positive_id", lambda c: c.doc_id == "d3"), ("identical_positive_text", lambda c: c.doc_id == "d5")]
    top = select_negatives(ranked, RankRange(2, 8), 3, "top", random.Random(0), rules)
    assert [c.doc_id for c in top.negatives] == ["d2", "d4", "d6"]
    assert top.dropped_counts() == {"known_positive_id": 1, "identical_positive_text": 1}
    sampled = select_negatives(ranked, RankRange(2, 8), 3, "random", random.Random(0), rules)
    assert {c.doc_id for c in sampled.negatives} <= {"d2", "d4", "d6", "d7", "d8"}
    assert [c.rank for c in sampled.negatives] == sorted(c.rank for c in sampled.negatives)
    again = select_negatives(ranked, RankRange(2, 8), 3, "random", random.Random(0), rules)
    assert again.negatives == sampled.negatives
    short = select_negatives(ranked, RankRange(8, 10), 5, "top", random.Random(0), rules)
    assert len(short.negatives) == 3


def test_mine_bm25_writes_valid_groups(toy_beir, tmp_path):
    out = tmp_path / "mined"
    report = mine(MineConfig(dataset=toy_beir, output=out, range="1-8", negatives=3, seed=7))
    groups = list(read_groups(out / "groups.jsonl"))
    assert [g.query_id for g in groups] == ["q0", "q1", "q2", "q3", "q4", "q5"]
    for group in groups:
        assert group.pos_ids[0] not in group.neg_ids and group.pos[0] not in group.neg
        assert len(group.neg) <= 3 and set(group.neg_sources) <= {"bm25"} and all(s > 0 for s in group.neg_miner_scores)
        assert all(1 <= r <= 8 for r in group.neg_ranks) and list(group.neg_ranks) == sorted(group.neg_ranks)
        assert all(TOY_DOCS[d] == t for d, t in zip(group.neg_ids, group.neg))
    assert report["queries"] == 6 and report["dropped_by_rule"]["known_positive_id"] == 6
    assert report["negatives_kept"] == sum(len(g.neg) for g in groups)
    assert report["short_queries"] == sum(len(g.neg) < 3 for g in groups)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "mine" and manifest["config"]["miner"] == "bm25" and manifest["config"]["teacher"] is None
    assert all(not g.pos_scores and not g.neg_scores for g in groups)  # teacher fields stay empty until `rtune score`
    again = tmp_path / "again"
    mine(MineConfig(dataset=toy_beir, output=again, range="1-8", negatives=3, seed=7))
    assert (again / "groups.jsonl").read_text() == (out / "groups.jsonl").read_text()


def test_documents_without_a_shared_term_are_never_bm25_negatives(tmp_path):
    folder = write_beir(tmp_path / "ds")
    report = mine(MineConfig(dataset=folder, output=tmp_path / "m", range="2-8", negatives=3, strategy="top"))
    groups = {g.query_id: g for g in read_groups(tmp_path / "m" / "groups.jsonl")}
    # "Where did the cat sit?" shares a term only with d2 (its positive) and d3 ("cats" stems to "cat")
    assert groups["q2"].neg_ids == ("d3",)
    assert {"query_id": "q2", "kept": 1} in report["short_query_list"]


def test_mine_drops_identical_text_under_another_id(tmp_path):
    docs = dict(TOY_DOCS, d8=TOY_DOCS["d0"].upper())  # the positive's text again, under a new id
    folder = write_beir(tmp_path / "dup", docs=docs)
    report = mine(MineConfig(dataset=folder, output=tmp_path / "m", range="1-9", negatives=3, strategy="top"))
    groups = {g.query_id: g for g in read_groups(tmp_path / "m" / "groups.jsonl")}
    assert "d8" not in groups["q0"].neg_ids
    assert report["dropped_by_rule"]["identical_positive_text"] >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"range": "20-30"}, "starts beyond the corpus"),
        ({"range": "2-4", "negatives": 5}, "more than the range 2-4 holds"),
        ({"split": "validation"}, "no 'validation' split"),
        ({"method": "magic"}, "unknown mining method 'magic'; valid: bm25"),
    ],
)
def test_mine_refuses_bad_requests_before_work(toy_beir, tmp_path, kwargs, message):
    out = tmp_path / "never"
    with pytest.raises((InputError, ValueError), match=message):
        mine(MineConfig(dataset=toy_beir, output=out, **kwargs))
    assert not out.exists()


def test_mine_refuses_to_overwrite(toy_beir, tmp_path):
    out = tmp_path / "m"
    mine(MineConfig(dataset=toy_beir, output=out, range="1-8", negatives=2))
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        mine(MineConfig(dataset=toy_beir, output=out, range="1-8", negatives=2))
