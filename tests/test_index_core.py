"""The retrieval core (rtune.index): BM25 streamed per query, dense exact/approximate search, saved Retrievers."""

from __future__ import annotations

import gc
import json
import shutil
import weakref

import numpy as np
import pytest

from conftest import TOY_DOCS
from rtune import Retriever
from rtune.data.records import Document
from rtune.errors import InputError
from rtune.index.bm25 import BM25Index, top_k_positions
from rtune.index.ranking import collect

QUERIES = ["capital of France", "cat on the mat", "longest river", "who created Python", "zzz unknown"]


def test_bm25_keeps_one_score_vector_at_a_time_and_scores_the_given(monkeypatch):
    texts = list(TOY_DOCS.values())
    index = BM25Index("en").index(texts)
    alive: list[weakref.ref] = []
    most = []
    original = index._scores_of

    def spy(ids):
        gc.collect()
        most.append(sum(ref() is not None for ref in alive))
        scores = original(ids)
        alive.append(weakref.ref(scores))
        return scores

    monkeypatch.setattr(index, "_scores_of", spy)
    given = [[0, 4], [2], [], [6, 1], [3]]
    batches = list(index.rank_all(QUERIES, k=3, batch_size=2, given=given))
    assert max(most) == 0  # the previous query's full vector is gone before the next one is scored
    monkeypatch.undo()
    positions, scores = collect(batches, 3)
    for row, query in enumerate(QUERIES):
        full = index.scores(query)
        top = top_k_positions(full, 3)
        assert positions[row, : len(top)].tolist() == top.tolist() and (positions[row, len(top):] == -1).all()
        np.testing.assert_allclose(scores[row, : len(top)], full[top], rtol=1e-6)
        batch = batches[row // 2]
        np.testing.assert_allclose(batch.given_scores[row - batch.start], full[given[row]], rtol=1e-6)


@pytest.fixture
def toy_documents() -> list[Document]:
    return [Document(k, v) for k, v in TOY_DOCS.items()]


@pytest.mark.parametrize("index_type", ["exact", "ivf", "hnsw"])
def test_saved_retriever_returns_the_same_hits(tiny_model, toy_documents, tmp_path, index_type):
    retriever = Retriever.from_pretrained(tiny_model, index_type=index_type).index_documents(toy_documents)
    before = retriever.batch_retrieve(QUERIES, top_k=5)
    retriever.save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "retriever.json").read_text())
    assert meta["index_type"] == index_type and meta["model"] == str(tiny_model) and meta["documents"] == len(toy_documents)
    loaded = Retriever.load(tmp_path / "index")
    after = loaded.batch_retrieve(QUERIES, top_k=5)
    assert loaded.index_type == index_type and loaded.encoder.settings == retriever.encoder.settings
    for a, b in zip(before, after):
        assert [h.doc_id for h in a] == [h.doc_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
        assert [h.text for h in a] == [h.text for h in b]


def test_saved_retriever_refuses_overwrite_changed_model_and_bad_folders(tiny_model, toy_documents, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    retriever = Retriever.from_pretrained(model).index_documents(toy_documents)
    retriever.save(tmp_path / "index")
    with pytest.raises(FileExistsError):
        retriever.save(tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "model"]  # nothing half-written beside it
    with pytest.raises(InputError, match="not a saved retriever"):
        Retriever.load(tmp_path / "model")
    weights = next(model.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="changed since this index was saved"):
        Retriever.load(tmp_path / "index")


def test_retriever_refuses_an_unknown_index_type(tiny_model):
    with pytest.raises(InputError, match="valid: exact, ivf, hnsw"):
        Retriever.from_pretrained(tiny_model, index_type="lsh")


def test_eval_index_type_is_an_option_with_the_same_metrics_on_a_small_corpus(tiny_model, toy_beir, tmp_path):
    from rtune.data.beir import read_beir
    from rtune.eval.evaluate import EvalConfig, build_ranker, evaluate

    exact = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5], cache_dir=tmp_path / "c"))
    hnsw = evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", ks=[1, 5], cache_dir=tmp_path / "c",
                               index_type="hnsw", output=tmp_path / "e"))
    assert hnsw == pytest.approx(exact, abs=1e-9)  # 8 documents: HNSW finds them all
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["config"]["index_type"] == "hnsw"
    config = EvalConfig(dataset=toy_beir, model=str(tiny_model), cache_dir=tmp_path / "c", index_type="ivf")
    assert build_ranker(config, read_beir(toy_beir)).index().index_type == "ivf"
    with pytest.raises(ValueError, match="valid: exact, ivf, hnsw"):
        EvalConfig(dataset=toy_beir, index_type="lsh")


def test_torch_exact_search_equals_faiss_and_a_plain_matrix_product():
    """The torch path (no FAISS installed, or a GPU) ranks like FAISS and like numpy, up to float tolerance."""
    import numpy as np

    from rtune.index.dense_search import exact_search, torch_exact_search

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((12, 16)).astype(np.float32)
    positions, scores = torch_exact_search(queries, matrix, 7, block_rows=500)
    faiss_positions, faiss_scores = exact_search(queries, matrix, 7, block_rows=500)
    plain = queries @ matrix.T  # (12, 3000), a second computation
    expected = np.argsort(-plain, axis=1, kind="stable")[:, :7]
    assert (positions == faiss_positions).all() and (positions == expected).all()
    np.testing.assert_allclose(scores, np.take_along_axis(plain, expected, axis=1), atol=1e-4)
    np.testing.assert_allclose(scores, faiss_scores, atol=1e-4)
