"""The Retriever's hybrid mode (BM25 + dense, fused as `rtune eval --hybrid` fuses them): the same ranking as
eval's fused run, the weight's two ends, component scores, reranking, save/load and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import TOY_DOCS, TOY_QUERIES
from rtune import HybridSettings, Retriever
from rtune.data.records import Document
from rtune.errors import InputError
from rtune.eval.evaluate import EvalConfig, evaluate
from rtune.index.bm25 import BM25Index
from tiny_rerankers import TableReranker

TRAIN = ["q0", "q1", "q2", "q3", "q4", "q5"]  # write_beir's train split
QUERIES = [TOY_QUERIES[q][0] for q in TRAIN] + ["zzz unknown words", "the cat and the capital"]
DOCUMENTS = [Document(k, v) for k, v in TOY_DOCS.items()]


def hybrid(tiny_model, corpus=DOCUMENTS, **settings) -> Retriever:
    return Retriever.from_pretrained(tiny_model, hybrid=HybridSettings(**settings)).index_documents(corpus)


def trec_ranking(path) -> dict[str, list[tuple[str, float]]]:
    """{qid: [(doc, score)] in the file's rank order} from a TREC run file."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, rank, score, _ = line.split()
        rows.setdefault(qid, []).append((int(rank), doc, float(score)))
    return {qid: [(d, s) for _, d, s in sorted(r)] for qid, r in rows.items()}


@pytest.mark.parametrize(("method", "weight"), [("minmax", 0.3), ("rrf", 0.5), ("rrf", 0.8)])
def test_hybrid_retriever_ranks_like_eval_hybrid(tiny_model, toy_beir, tmp_path, method, weight):
    # rtune eval fuses each run's top max(--ks) = 5 of the 8 documents; the Retriever with candidates=5 must agree
    evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5], hybrid="bm25", fusion=method,
                        dense_weight=weight, output=tmp_path / "eval", cache=False))
    expected = trec_ranking(tmp_path / "eval" / "run.trec")
    retriever = Retriever.from_pretrained(tiny_model, hybrid=HybridSettings(method, weight, candidates=5))
    retriever.index_documents(toy_beir / "corpus.jsonl")
    queries = [TOY_QUERIES[q][0] for q in TRAIN]
    for top_k in (5, 2):  # fewer hits than candidates: still each run's top 5 fused, then cut
        for qid, row in zip(TRAIN, retriever.batch_retrieve(queries, top_k=top_k)):
            assert [h.doc_id for h in row] == [d for d, _ in expected[qid][:top_k]], qid
            assert [h.score for h in row] == pytest.approx([s for _, s in expected[qid][:top_k]], abs=2e-6)
            assert all(h.hybrid.fused == h.score for h in row)


def test_hybrid_weight_ends_give_bm25_and_dense_orders(tiny_model):
    texts = [d.text for d in DOCUMENTS]
    bm25 = BM25Index("en").index(texts)
    dense = Retriever.from_pretrained(tiny_model).index_documents(DOCUMENTS).batch_retrieve(QUERIES, top_k=8)
    for method in ("rrf", "minmax"):
        lexical_only = hybrid(tiny_model, method=method, dense_weight=0.0).batch_retrieve(QUERIES, top_k=8)
        dense_only = hybrid(tiny_model, method=method, dense_weight=1.0).batch_retrieve(QUERIES, top_k=8)
        for query, lex_hits, den_hits, plain in zip(QUERIES, lexical_only, dense_only, dense):
            scores = bm25.scores(query)
            matched = sorted((p for p in range(len(texts)) if scores[p] > 0), key=lambda p: (-scores[p], DOCUMENTS[p].id))
            bm25_order = [DOCUMENTS[p].id for p in matched]
            # rrf: every BM25 match in BM25's order, the rest after it at 0; minmax: the same, except that BM25's
            # lowest match also normalises to 0 and joins the tie (ties go by doc id)
            head = bm25_order if method == "rrf" else bm25_order[:-1]
            assert [h.doc_id for h in lex_hits[: len(head)]] == head, (method, query)
            assert all(h.score == 0 for h in lex_hits[len(head):])
            # dense order up to ties (the tiny model ties often: fusion breaks them by doc id, FAISS by position)
            assert [h.hybrid.dense_score for h in den_hits] == pytest.approx([h.score for h in plain], abs=1e-6)
            assert {h.doc_id for h in den_hits} == {h.doc_id for h in plain}


def test_hybrid_hits_carry_their_component_scores_and_ranks(tiny_model):
    retriever = hybrid(tiny_model, method="minmax", dense_weight=0.4)
    bm25 = BM25Index("en").index([d.text for d in DOCUMENTS])
    dense = Retriever.from_pretrained(tiny_model).index_documents(DOCUMENTS).batch_retrieve(QUERIES, top_k=8)
    ids = [d.id for d in DOCUMENTS]
    for query, hits, plain in zip(QUERIES, retriever.batch_retrieve(QUERIES, top_k=8), dense):
        scores = {d: float(s) for d, s in zip(ids, bm25.scores(query)) if s > 0}
        dense_scores = {h.doc_id: h.score for h in plain}
        for hit in hits:
            parts = hit.hybrid
            assert parts.dense_score == pytest.approx(dense_scores[hit.doc_id], abs=1e-6)
            # ranks as fusion counts them: by score, ties by doc id
            fusion_order = sorted(dense_scores, key=lambda d: (-dense_scores[d], d))
            assert parts.dense_rank == fusion_order.index(hit.doc_id) + 1
            bm25_order = sorted(scores, key=lambda d: (-scores[d], d))
            assert parts.bm25_rank == (bm25_order.index(hit.doc_id) + 1 if hit.doc_id in scores else None)
            assert parts.bm25_score == (pytest.approx(scores[hit.doc_id]) if hit.doc_id in scores else None)
            low, high = (min(scores.values()), max(scores.values())) if scores else (0, 0)
            lexical = (scores[hit.doc_id] - low) / ((high - low) or 1) if hit.doc_id in scores else 0.0
            d_low, d_high = min(dense_scores.values()), max(dense_scores.values())
            expected = 0.6 * lexical + 0.4 * (dense_scores[hit.doc_id] - d_low) / (d_high - d_low)
            if not scores:  # no BM25 match: the dense run alone, scaled by its weight
                expected = 0.4 * (dense_scores[hit.doc_id] - d_low) / (d_high - d_low)
            assert hit.score == pytest.approx(expected, abs=1e-6), query


@pytest.mark.parametrize("rrf_k", [0, 10])
def test_rrf_hits_add_up_their_weighted_reciprocal_ranks(tiny_model, rrf_k):
    rows = hybrid(tiny_model, method="rrf", dense_weight=0.3, rrf_k=rrf_k).batch_retrieve(QUERIES, top_k=8)
    for hits in rows:
        for hit in hits:
            parts = hit.hybrid
            expected = 0.3 / (rrf_k + parts.dense_rank) + (0.7 / (rrf_k + parts.bm25_rank) if parts.bm25_rank else 0.0)
            assert hit.score == pytest.approx(expected, rel=1e-9)


def test_hybrid_first_stage_then_reranker(tiny_model):
    settings = HybridSettings("minmax", 0.5)
    first = hybrid(tiny_model, method="minmax", dense_weight=0.5).batch_retrieve(QUERIES, top_k=3)
    reranker = TableReranker({TOY_DOCS[h.doc_id]: 10.0 - i for i, h in enumerate(reversed(first[0]))})
    retriever = Retriever.from_pretrained(tiny_model, hybrid=settings, reranker=reranker, rerank_top=3)
    hits = retriever.index_documents(DOCUMENTS).batch_retrieve(QUERIES[:1], top_k=2)[0]
    # the reranker saw the fused top 3 (not the dense top 3) and reversed it; the fusion's parts stay on the hits
    assert sorted(p for _, p in reranker.pairs) == sorted(TOY_DOCS[h.doc_id] for h in first[0])
    assert [h.doc_id for h in hits] == [h.doc_id for h in reversed(first[0])][:2]
    assert [h.score for h in hits] == [10.0, 9.0]
    by_id = {h.doc_id: h for h in first[0]}
    for hit in hits:  # two retrievers computed these: ranks equal, scores within float tolerance
        mine, theirs = hit.hybrid, by_id[hit.doc_id].hybrid
        assert (mine.dense_rank, mine.bm25_rank) == (theirs.dense_rank, theirs.bm25_rank)
        for name in ("fused", "dense_score", "bm25_score"):
            if getattr(theirs, name) is None:  # that run did not have the document
                assert getattr(mine, name) is None, name
            else:
                assert getattr(mine, name) == pytest.approx(getattr(theirs, name), rel=1e-5, abs=1e-6), name


def test_saved_hybrid_retriever_reloads_its_settings_and_bm25(tiny_model, tmp_path, monkeypatch):
    settings = HybridSettings("rrf", 0.7, rrf_k=10, candidates=4)
    retriever = hybrid(tiny_model, method="rrf", dense_weight=0.7, rrf_k=10, candidates=4)
    before = retriever.batch_retrieve(QUERIES, top_k=3)
    retriever.save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "retriever.json").read_text())
    assert meta["hybrid"] == settings.as_dict() and meta["corpus_language"] == "en"
    assert (tmp_path / "index" / "bm25" / "rtune_bm25.json").is_file()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the saved BM25 index was rebuilt")

    monkeypatch.setattr(BM25Index, "index", no_rebuild)
    loaded = Retriever.load(tmp_path / "index")
    assert loaded.hybrid == settings
    assert _same(loaded.batch_retrieve(QUERIES, top_k=3), before)
    monkeypatch.undo()
    # the dev-chosen fusion replaces the saved one; False turns hybrid off
    other = HybridSettings("minmax", 0.2)
    assert _same(Retriever.load(tmp_path / "index", hybrid=other).batch_retrieve(QUERIES, top_k=3),
                 hybrid(tiny_model, method="minmax", dense_weight=0.2).batch_retrieve(QUERIES, top_k=3))
    plain = Retriever.load(tmp_path / "index", hybrid=False)
    assert plain.hybrid is None and all(h.hybrid is None for row in plain.batch_retrieve(QUERIES, top_k=3) for h in row)
    # another language: BM25 is built again from the saved documents
    german = Retriever.load(tmp_path / "index", hybrid=HybridSettings(language="de"))
    assert german.bm25.language == "de"


def _same(a: list[list], b: list[list]) -> bool:
    for row_a, row_b in zip(a, b, strict=True):
        assert [h.doc_id for h in row_a] == [h.doc_id for h in row_b]
        np.testing.assert_allclose([h.score for h in row_a], [h.score for h in row_b], atol=1e-6)
        for x, y in zip(row_a, row_b):
            assert (x.hybrid.bm25_rank, x.hybrid.dense_rank) == (y.hybrid.bm25_rank, y.hybrid.dense_rank)
    return True


def test_dense_index_saved_without_hybrid_gains_bm25_on_load(tiny_model, tmp_path):
    Retriever.from_pretrained(tiny_model).index_documents(DOCUMENTS).save(tmp_path / "dense")
    assert not (tmp_path / "dense" / "bm25").exists()
    loaded = Retriever.load(tmp_path / "dense", hybrid=HybridSettings("rrf", 0.5))
    assert _same(loaded.batch_retrieve(QUERIES, top_k=4), hybrid(tiny_model, method="rrf").batch_retrieve(QUERIES, top_k=4))


def test_bm25_language_comes_from_the_prepared_dataset(tiny_model, toy_beir):
    from rtune.data.manifest import write_manifest

    assert hybrid(tiny_model, corpus=toy_beir / "corpus.jsonl").bm25.language == "en"
    write_manifest(toy_beir, "prepare", {"language": "de"}, [], 0.0)
    assert hybrid(tiny_model, corpus=toy_beir / "corpus.jsonl").bm25.language == "de"
    assert hybrid(tiny_model, corpus=toy_beir / "corpus.jsonl", language="fr").bm25.language == "fr"


def test_fusion_chosen_on_dev_is_read_from_its_record(tiny_model, toy_beir, tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "fusion.json").write_text(json.dumps({"method": "rrf", "dense_weight": 0.3, "metric": "ndcg@10",
                                                              "grid": []}))
    assert HybridSettings.from_record(tmp_path / "dev") == HybridSettings("rrf", 0.3)
    assert HybridSettings.from_record(tmp_path / "dev" / "fusion.json", candidates=50).candidates == 50
    evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="dev", ks=[1], hybrid="bm25", fusion="minmax",
                        dense_weight=0.6, output=tmp_path / "eval", cache=False))
    assert HybridSettings.from_record(tmp_path / "eval") == HybridSettings("minmax", 0.6, language="en")
    with pytest.raises(InputError, match="no fusion record here"):
        HybridSettings.from_record(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"method": "sum", "dense_weight": 0.3}))
    with pytest.raises(InputError, match="bad.json: unknown hybrid method 'sum'"):
        HybridSettings.from_record(tmp_path / "bad.json")


@pytest.mark.parametrize(("settings", "message"), [
    ({"method": "sum"}, "unknown hybrid method 'sum'; valid: rrf, minmax"),
    ({"dense_weight": 1.5}, "dense_weight must be a number within 0..1, got 1.5"),
    ({"dense_weight": -0.1}, "dense_weight must be a number within 0..1, got -0.1"),
    ({"dense_weight": math.nan}, "dense_weight must be a number within 0..1, got nan"),
    ({"dense_weight": "0.5"}, "dense_weight must be a number within 0..1, got '0.5'"),
    ({"candidates": 0}, "hybrid candidates must be an integer of at least 1, got 0"),
    ({"rrf_k": -1}, "hybrid rrf_k must be an integer of at least 0, got -1"),
    ({"language": ""}, "hybrid language must be a language code"),
])
def test_bad_hybrid_settings_name_the_option(settings, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        HybridSettings(**settings)


def test_bad_hybrid_use_is_refused(tiny_model, tmp_path):
    retriever = hybrid(tiny_model)
    for k in (0, -3):
        with pytest.raises(ValueError, match=f"top_k must be a positive integer, got {k}"):
            retriever.batch_retrieve(QUERIES, top_k=k)
    with pytest.raises(TypeError, match="hybrid must be a HybridSettings or None, not str"):
        Retriever.from_pretrained(tiny_model, hybrid="rrf")
    with pytest.raises(InputError, match="unique document ids; 'a' occurs more than once"):
        hybrid(tiny_model, corpus=[Document("a", "one"), Document("b", "two"), Document("a", "three")])
    retriever.save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "retriever.json").read_text())
    meta["hybrid"]["dense_weight"] = 2
    (tmp_path / "index" / "retriever.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="retriever.json: dense_weight must be a number within 0..1, got 2"):
        Retriever.load(tmp_path / "index")
    with pytest.raises(TypeError, match="hybrid must be a HybridSettings, False or None, not str"):
        Retriever.load(tmp_path / "index", hybrid="minmax")
