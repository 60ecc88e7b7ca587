"""Real collections are messy: empty and title-only documents, several positives per query, duplicated
questions and passages. Each test here failed before rtune handled the case (issue 14)."""

from __future__ import annotations

import json
import random

import pytest

from conftest import TOY_DOCS, TOY_QUERIES, data_path, write_beir
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset
from rtune.data.groups import read_groups
from rtune.data.prepare import PrepareConfig, prepare
from rtune.data.records import Document, Query
from rtune.data.splits import SplitFractions, cross_split_report, split_dataset
from rtune.data.text import document_text
from rtune.errors import InputError
from rtune.mine.config import MineConfig
from rtune.mine.filters import FalseNegativeFilter, PositiveAwareRules
from rtune.mine.run import mine
from rtune.mine.sampling import Candidate
from rtune.models.settings import EncoderSettings


def _beir_with_empty_documents(folder):
    """d8: title only; d9: neither title nor text, judged for q6 (with d6) and the only positive of q8."""
    write_beir(folder, docs=TOY_DOCS, queries={**TOY_QUERIES, "q8": ("What is nothing?", "d9", "x")},
               splits={"train": ["q0", "q1", "q2", "q3", "q4", "q5"], "dev": ["q6"], "test": ["q7", "q8"]})
    with open(folder / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps({"_id": "d8", "title": "Glossary of Computer Engineering", "text": ""}) + "\n")
        handle.write(json.dumps({"_id": "d9", "title": "", "text": "  "}) + "\n")
    with open(folder / "qrels" / "dev.tsv", "a") as handle:
        handle.write("q6\td9\t1\n")
    return folder


def test_empty_documents_are_dropped_with_their_judgements_and_listed(tmp_path):
    folder = _beir_with_empty_documents(tmp_path / "beir")
    dataset = read_beir(folder)
    assert "d9" not in dataset.corpus and document_text(dataset.corpus["d8"]) == "Glossary of Computer Engineering"
    assert dataset.qrels["dev"] == {"q6": {"d6": 1}} and "q8" not in dataset.qrels["test"]
    summary = dataset.dropped_summary()
    assert (summary["documents"], summary["judgements"], summary["queries"]) == (1, 2, 1)
    stats = prepare(PrepareConfig(input=folder, output=tmp_path / "prepared"))
    assert stats["dropped"]["documents"] == 1 and stats["dropped"]["queries"] == 1
    report = json.loads((tmp_path / "prepared" / "split_report.json").read_text())
    assert {"kind": "document", "document": "d9", "reason": "neither title nor text"} in report["dropped"]["details"]
    assert read_beir(tmp_path / "prepared").qrels["test"] == {"q7": {"d7": 1}}


def test_structural_errors_stay_fatal(tmp_path):
    folder = _beir_with_empty_documents(tmp_path / "beir")
    with open(folder / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps({"_id": "d8", "title": "again", "text": "x"}) + "\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:11: duplicate document id 'd8'"):
        read_beir(folder)


def test_titles_reach_bm25_dense_and_groups(tmp_path):
    docs = {**TOY_DOCS, "d8": ""}
    folder = write_beir(tmp_path / "beir", docs={k: v for k, v in TOY_DOCS.items()})
    lines = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    lines[4]["title"] = "Zambezi"  # d4 is about the Nile: only its title says Zambezi
    (folder / "corpus.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    from rtune.eval.evaluate import EvalConfig, build_ranker

    dataset = read_beir(folder)
    ranked = build_ranker(EvalConfig(dataset=folder), dataset).rank({"z": "Zambezi"}, 3)
    assert list(ranked["z"]) == ["d4"]
    assert build_ranker(EvalConfig(dataset=folder, use_title=False), dataset).rank({"z": "Zambezi"}, 3)["z"] == {}
    mine(MineConfig(dataset=folder, output=tmp_path / "m", range="1-8", negatives=3, backfill="random"))
    texts = {t for g in read_groups(tmp_path / "m" / "groups.jsonl") for t in (*g.pos, *g.neg)}
    assert "Zambezi " + TOY_DOCS["d4"] in texts and TOY_DOCS["d4"] not in texts
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["document_text"]["use_title"] is True
    del docs


def test_positive_aware_filter_is_per_positive():
    flt = FalseNegativeFilter(max_score_ratio=0.95)
    rules = PositiveAwareRules(flt, [0.9, 0.3])  # a strong and a weak positive
    close, far = Candidate("c", 2, 0.5), Candidate("f", 3, 0.2)
    assert rules.valid_positives(close) == (0,) and rules.valid_positives(far) == (0, 1)
    assert not any(rejects(close) for _, rejects in rules.rules)  # kept: it suits the strong positive
    above_all = Candidate("a", 1, 0.89)
    assert [name for name, rejects in rules.rules if rejects(above_all)] == ["above_positive_ratio"]


def test_non_positive_reference_skips_relative_rules_only():
    # a BM25 positive that shares no term scores 0; a cosine can be negative
    for reference in (0.0, -0.2):
        names = [name for name, _ in FalseNegativeFilter(max_score_ratio=0.95, margin=0.1, window=(0.5, 0.9)).rules(reference)]
        assert names == ["within_margin_of_positive"]


def _multi_positive_beir(folder, positives: int = 6, queries: int = 4):
    """Each query has `positives` judged documents; the last is weak (it shares only the topic word), and the
    unjudged fillers score between it and the strong ones."""
    docs, qs, qrels = {}, {}, []
    for q in range(queries):
        for p in range(positives):
            words = "alpha beta" if p < positives - 1 else "delta"
            docs[f"q{q}d{p}"] = f"topic{q} {words} document {p}"
            qrels.append((f"q{q}", f"q{q}d{p}"))
        for n in range(10):
            docs[f"q{q}n{n}"] = f"topic{q} alpha filler {n}"
        qs[f"q{q}"] = (f"topic{q} alpha beta", None, "")
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _, _) in qs.items()))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    return folder


def test_multi_positive_queries_keep_negatives_under_the_ratio_filter(tmp_path):
    """With the lowest-scoring positive as the reference, every candidate of these queries was dropped."""
    folder = _multi_positive_beir(tmp_path / "multi")
    report = mine(MineConfig(dataset=folder, output=tmp_path / "m", range="1-40", negatives=5, max_score_ratio=0.95))
    groups = list(read_groups(tmp_path / "m" / "groups.jsonl"))
    assert report["queries_without_negatives"] == 0 and all(len(g.neg) == 5 for g in groups)
    assert all(len(g.pos) == 6 for g in groups)
    for group in groups:
        for score, valid in zip(group.neg_miner_scores, group.neg_valid_pos or [tuple(range(6))] * len(group.neg)):
            assert all(score <= 0.95 * group.pos_miner_scores[i] + 1e-6 for i in valid) and valid


def test_duplicated_question_never_takes_the_other_copys_positive(tmp_path):
    queries = {**TOY_QUERIES, "q8": ("What is the capital of France?", "d1", "geo")}  # q0's text, another positive
    folder = write_beir(tmp_path / "dup", queries=queries,
                        splits={"train": ["q0", "q1", "q2", "q3", "q4", "q5", "q8"], "dev": ["q6"], "test": ["q7"]})
    mine(MineConfig(dataset=folder, output=tmp_path / "m", range="1-8", negatives=7, strategy="top", allow_collapsed=True))
    groups = {g.query_id: g for g in read_groups(tmp_path / "m" / "groups.jsonl")}
    assert "d1" not in groups["q0"].neg_ids and "d0" not in groups["q8"].neg_ids


def test_unretrieved_positive_is_reported(tmp_path):
    folder = write_beir(tmp_path / "ds")
    report = mine(MineConfig(dataset=folder, output=tmp_path / "m", range="2-8", negatives=1, allow_collapsed=True))
    # "What is the highest mountain?": its passage matches; "Where did the cat sit?" matches d2 and d3 only
    rank = report["positive_rank"]
    assert rank["not_retrieved_in_top_8"] == 0 and rank["positives"] == 6
    queries = {**TOY_QUERIES, "q0": ("zzz unknown words", "d0", "geo")}
    folder = write_beir(tmp_path / "ds2", queries=queries)
    report = mine(MineConfig(dataset=folder, output=tmp_path / "m2", range="2-8", negatives=1, allow_collapsed=True))
    assert report["positive_rank"]["not_retrieved_in_top_8"] == 1
    assert report["positive_rank"]["not_retrieved_list"] == [{"query_id": "q0", "positives_not_retrieved": 1, "positives": 1}]
    assert report["positive_rank"]["outside_top_8"] == 1


def _overlapping_positives(seed: int) -> RetrievalDataset:
    rng = random.Random(seed)
    corpus = {f"d{i}": Document(f"d{i}", f"passage {i}") for i in range(30)}
    corpus["dup"] = Document("dup", "passage 0")  # the same passage under another id
    queries, qrels = {}, {}
    for i in range(50):
        text = f"question {rng.randrange(15)}?"
        positives = {f"d{rng.randrange(30)}"} | ({f"d{rng.randrange(30)}"} if rng.random() < 0.5 else set())
        if rng.random() < 0.2:
            positives = {"dup"}
        queries[f"q{i}"] = Query(f"q{i}", text)
        qrels[f"q{i}"] = {d: 1 for d in positives}
    return RetrievalDataset(corpus, queries, {"all": qrels})


@pytest.mark.parametrize("seed", range(50))
def test_query_split_never_refuses_its_own_split(seed):
    split = split_dataset(_overlapping_positives(seed), SplitFractions(0.5, 0.25, 0.25), by="query", seed=seed)
    assert cross_split_report(split).leaks == []


def test_cacm_title_only_duplicates_split_by_query_cleanly(tmp_path):
    stats = prepare(PrepareConfig(input=data_path("cacm"), output=tmp_path / "cacm", resplit=True, split_by="query"))
    assert stats["true_leaks"] == 0 and stats["documents"] == 3204


@pytest.mark.parametrize("field, value, message", [
    ("neg_scores", [float("nan"), 1.0], "'neg_scores'[0] must be a finite number, got nan"),
    ("neg_scores", ["0.5", 1.0], "'neg_scores'[0] must be a finite number, got '0.5'"),
    ("pos_scores", [float("inf")], "'pos_scores'[0] must be a finite number, got inf"),
    ("neg_miner_scores", [None, True], "'neg_miner_scores'[1] must be a finite number or null, got True"),
    ("neg_valid_pos", [[0], [3]], "'neg_valid_pos'[1] must be a list of positive indices"),
])
def test_groups_scores_are_checked_on_read(tmp_path, field, value, message):
    path = tmp_path / "groups.jsonl"
    good = {"query": "q", "pos": ["p"], "neg": ["a", "b"]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, field: value}) + "\n")
    with pytest.raises(InputError) as err:
        list(read_groups(path))
    assert str(err.value).startswith(f"{path}:2: ") and message in str(err.value)


def test_miner_scores_never_land_in_the_teacher_fields(tmp_path):
    folder = write_beir(tmp_path / "ds")
    mine(MineConfig(dataset=folder, output=tmp_path / "m", range="1-8", negatives=2, backfill="random"))
    raw = [json.loads(line) for line in (tmp_path / "m" / "groups.jsonl").read_text().splitlines()]
    assert all("pos_scores" not in row and "neg_scores" not in row for row in raw)
    assert all(len(row["neg_miner_scores"]) == len(row["neg"]) and len(row["pos_miner_scores"]) == 1 for row in raw)


def test_dense_paths_embed_the_title_too(tiny_model, tmp_path):
    """The dense ranker, dense mining and the Retriever encode title + text, and a title-only record as its title."""
    import numpy as np

    from rtune.index.rankers import DenseRanker
    from rtune.index.retriever import Retriever
    from rtune.models.encoder import SentenceTransformerEncoder
    from rtune.models.loading import load_bi_encoder

    seen: list[str] = []

    class Recording(SentenceTransformerEncoder):
        def encode_documents(self, texts, batch_size=64, show_progress=False):
            seen.extend(texts)
            return super().encode_documents(texts, batch_size, show_progress)

    docs = [Document("a", "The Nile is long.", "Zambezi"), Document("b", "", "Glossary of Terms")]
    encoder = Recording(load_bi_encoder(tiny_model))
    DenseRanker(encoder, docs, show_progress=False).rank({"q": "nile"}, 2)
    assert seen == ["Zambezi The Nile is long.", "Glossary of Terms"]
    seen.clear()
    Retriever(encoder).index_documents(docs)
    assert seen == ["Zambezi The Nile is long.", "Glossary of Terms"]
    seen.clear()
    DenseRanker(Recording(load_bi_encoder(tiny_model), EncoderSettings(use_title=False)), docs, show_progress=False,
                use_title=False).rank({"q": "nile"}, 2)
    assert seen == ["The Nile is long.", "Glossary of Terms"]
    assert np.isfinite(encoder.encode_documents(["x"])).all()
