"""Dense mining: embedding cache, block-wise exact search, false-negative rules, backfill, rounds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rtune.data.groups import read_groups
from rtune.errors import DataCollapsedError, InputError
from rtune.eval.evaluate import EvalConfig, evaluate
from rtune.index.dense_search import exact_search, make_searcher
from rtune.index.embedding_cache import EmbeddingCache
from rtune.mine.config import MineConfig
from rtune.mine.filters import FalseNegativeFilter
from rtune.mine.run import mine
from rtune.mine.sampling import Candidate, RankRange, select_negatives
from rtune.models.encoder import SentenceTransformerEncoder
from rtune.models.fingerprint import model_fingerprint
from rtune.models.loading import load_bi_encoder
from rtune.models.settings import EncoderSettings


def test_cache_encodes_once_per_identity(tmp_path):
    cache, calls = EmbeddingCache(tmp_path), []

    def encode(texts):
        calls.append(len(texts))
        return np.array([[int(t[1:]) * 4 + j for j in range(4)] for t in texts], dtype=np.float32)  # a function of the text

    texts = [f"t{i}" for i in range(10)]
    first = cache.get_or_encode({"model": "m", "prompt": None}, texts, encode, chunk_size=4)
    assert calls == [4, 4, 2] and isinstance(first, np.memmap)
    again = cache.get_or_encode({"model": "m", "prompt": None}, texts, encode)
    assert calls == [4, 4, 2] and np.array_equal(again, first)
    cache.get_or_encode({"model": "m", "prompt": "passage: "}, texts, encode)
    half = cache.get_or_encode({"model": "m", "prompt": None}, texts, encode, dtype="float16")
    assert half.dtype == np.float16 and calls == [4, 4, 2, 10, 10]  # a new prompt and a new dtype each re-encode
    np.testing.assert_array_equal(half.astype(np.float32), first)


def test_interrupted_encoding_leaves_no_entry(tmp_path):
    cache = EmbeddingCache(tmp_path)

    def failing(texts):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_encode({"model": "m"}, ["a"], failing)
    assert list(tmp_path.iterdir()) == []


def test_model_fingerprint_follows_the_weights(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_model))
    (copy / "README.md").write_text("a new card changes nothing")
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_model))
    weights = next(copy.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(str(copy)) != model_fingerprint(str(tiny_model))


def test_exact_search_blocks_match_numpy():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((1000, 16)).astype(np.float16)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    positions, scores = exact_search(queries, matrix, k=20, block_rows=97)
    full = queries @ matrix.astype(np.float32).T
    np.testing.assert_array_equal(positions, np.argsort(-full, axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :20], atol=1e-4)
    hnsw_positions, _ = make_searcher(matrix, "hnsw")(queries, 20)
    assert np.mean([len(set(a) & set(b)) / 20 for a, b in zip(hnsw_positions, positions)]) > 0.8


def test_false_negative_rules_are_counted_by_name():
    # positive scores 1.0: 0.99 > cap 0.98; 0.96 > 0.95 x 1.0; 0.93 > 1.0 - 0.1; 0.90 is not above 0.9
    ranked = [Candidate(f"d{i}", i, s) for i, s in enumerate([0.99, 0.96, 0.93, 0.90, 0.5, 0.2], start=1)]
    rules = FalseNegativeFilter(max_score_ratio=0.95, margin=0.1, max_score=0.98).rules(positive_score=1.0)
    chosen = select_negatives(ranked, RankRange(1, 6), 6, "top", None, rules)
    assert [c.doc_id for c in chosen.negatives] == ["d4", "d5", "d6"]
    assert chosen.dropped_counts() == {"above_max_score": 1, "above_positive_ratio": 1, "within_margin_of_positive": 1}
    window = FalseNegativeFilter(window=(0.4, 0.92)).rules(positive_score=1.0)
    inside = select_negatives(ranked, RankRange(1, 6), 6, "window", __import__("random").Random(0), window)
    assert [c.doc_id for c in inside.negatives] == ["d4", "d5"] and inside.dropped_counts() == {"outside_score_window": 4}


def test_query_instruction_format(tiny_model):
    prompts = EncoderSettings(query_instruction="Find the passage", query_format="<instruct>{}\n<query>{}", query_prompt="q: ")
    assert prompts.format_query("who?") == "<instruct>Find the passage\n<query>who?"
    # what the model is fed: the prompt, then the formatted query (a second computation encodes that string directly)
    encoder = SentenceTransformerEncoder(load_bi_encoder(str(tiny_model)), prompts)
    expected = encoder.model.encode(["q: <instruct>Find the passage\n<query>who?"], normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode_queries(["who?"]), expected, atol=1e-5)
    assert EncoderSettings().format_query("who?") == "who?"
    with pytest.raises(ValueError, match="two"):
        EncoderSettings(query_instruction="x", query_format="{} only")


def test_dense_mining_writes_groups_and_reuses_the_eval_embeddings(tiny_model, toy_beir, tmp_path):
    cache_dir = tmp_path / "cache"
    evaluate(EvalConfig(dataset=toy_beir, model=str(tiny_model), split="train", cache_dir=cache_dir))
    def entries():
        return sorted(p.name for p in cache_dir.iterdir() if (p / "embeddings.npy").is_file())

    before = entries()
    assert len(before) == 2  # corpus + train queries
    out = tmp_path / "dense"
    report = mine(MineConfig(dataset=toy_beir, output=out, method="dense", model=str(tiny_model), range="1-8",
                             negatives=3, cache_dir=cache_dir, embedding_dtype="float32"))
    assert entries() == before  # nothing re-encoded
    groups = list(read_groups(out / "groups.jsonl"))
    assert len(groups) == 6 and all(set(g.neg_sources) == {"dense"} and len(g.neg) == 3 for g in groups)
    assert all(g.pos_ids[0] not in g.neg_ids for g in groups)
    # scores are the model's cosine similarities, best first
    for g in groups:
        assert list(g.neg_ranks) == sorted(g.neg_ranks) and all(r >= 1 for r in g.neg_ranks)
        assert all(a >= b - 1e-6 for a, b in zip(g.neg_miner_scores, g.neg_miner_scores[1:]))
    assert report["dropped_by_rule"]["known_positive_id"] == 6 and report["positive_rank"]["count"] == 6
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "again", method="dense", model=str(tiny_model), range="1-8",
                    negatives=3, cache_dir=cache_dir))
    assert (tmp_path / "again" / "groups.jsonl").read_text() == (out / "groups.jsonl").read_text()


def test_positive_aware_filter_and_backfill(tiny_model, toy_beir, tmp_path):
    strict = dict(dataset=toy_beir, method="dense", model=str(tiny_model), range="2-8", negatives=3, max_score=-2.0)
    with pytest.raises(DataCollapsedError, match="6 of 6 queries kept no negative"):
        mine(MineConfig(output=tmp_path / "short", **strict))  # a collapsed stage never exits 0 quietly
    assert not (tmp_path / "short").exists()
    report = mine(MineConfig(output=tmp_path / "short", allow_collapsed=True, **strict))
    assert report["short_queries"] == 6 and report["backfilled_negatives"] == 0
    assert report["dropped_by_rule"]["above_max_score"] > 0
    assert {q["kept"] for q in report["short_query_list"]} == {0}
    report = mine(MineConfig(output=tmp_path / "filled", backfill="random", **strict))
    assert report["short_queries"] == 6 and report["backfilled_negatives"] == 18
    for group in read_groups(tmp_path / "filled" / "groups.jsonl"):
        assert group.neg_sources == ("random",) * 3 and group.neg_ranks == (0, 0, 0) and group.neg_miner_scores == (None,) * 3
        assert group.pos_ids[0] not in group.neg_ids
    ratio = mine(MineConfig(dataset=toy_beir, output=tmp_path / "ratio", method="dense", model=str(tiny_model),
                            range="1-8", negatives=2, max_score_ratio=0.95, backfill="random"))
    assert ratio["false_negative_filter"] == {"max_score_ratio": 0.95}
    for group in read_groups(tmp_path / "ratio" / "groups.jsonl"):
        assert all(s is None or s <= 0.95 * min(group.pos_miner_scores) + 1e-6 for s in group.neg_miner_scores)


def test_rounds_mix_the_previous_negatives(tiny_model, toy_beir, tmp_path):
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "r1", range="2-8", negatives=4, backfill="random"))
    round1 = {g.query_id: g for g in read_groups(tmp_path / "r1" / "groups.jsonl")}
    mine(MineConfig(dataset=toy_beir, output=tmp_path / "r2", method="dense", model=str(tiny_model), range="2-8",
                    negatives=4, previous_groups=tmp_path / "r1", previous_fraction=0.5))
    model = load_bi_encoder(tiny_model)
    for group in read_groups(tmp_path / "r2" / "groups.jsonl"):
        assert len(group.neg) == 4 and len(set(group.neg_ids)) == 4
        old = [i for i, src in enumerate(group.neg_sources) if src != "dense"]
        assert len(old) == 2 and {group.neg_ids[i] for i in old} <= set(round1[group.query_id].neg_ids)
        # every score, old or new, is the current (dense) model's cosine similarity
        query = model.encode([group.query], normalize_embeddings=True)[0]
        docs = model.encode(list(group.neg), normalize_embeddings=True)
        np.testing.assert_allclose(group.neg_miner_scores, docs @ query, atol=1e-5)
    strict = mine(MineConfig(dataset=toy_beir, output=tmp_path / "r2strict", method="dense", model=str(tiny_model),
                             range="2-8", negatives=4, previous_groups=tmp_path / "r1", max_score=-2.0, allow_collapsed=True))
    assert strict["negatives_kept"] == 0  # the previous round's negatives face the current filters too


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"method": "dense"}, ValueError, "needs --model"),
        ({"method": "dense", "model": "{broken}"}, InputError, "model does not load"),
        ({"previous_groups": "{missing}"}, InputError, "previous round's groups not found"),
        ({"strategy": "window", "window": "0.9-0.5"}, ValueError, "LO < HI"),
        ({"index_type": "lsh"}, ValueError, "valid: exact, ivf, hnsw"),
    ],
)
def test_dense_refusals_come_before_work(kwargs, error, message, toy_beir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("[")
    subs = {"{broken}": str(broken), "{missing}": str(tmp_path / "nope.jsonl")}
    kwargs = {k: subs.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(error, match=message):
        mine(MineConfig(dataset=toy_beir, output=tmp_path / "out", **{"range": "1-8", "negatives": 2, **kwargs}))
    assert not (tmp_path / "out").exists()


def test_mining_is_identical_across_processes_and_hash_seeds(tiny_model, toy_beir, tmp_path):
    import os
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "rtune.cli", "mine", "--dataset", str(toy_beir), "--output", str(out),
                        "--method", "dense", "--model", str(tiny_model), "--range", "1-8", "--negatives", "3",
                        "--backfill", "random", "--cache-dir", str(tmp_path / f"cache{seed}")],
                       check=True, env=env, capture_output=True)
        outputs.append(list(read_groups(out / "groups.jsonl")))
    # the same negatives in the same order; scores from two separate encodings agree within float tolerance
    assert [(g.query_id, g.neg_ids, g.neg_sources, g.neg_ranks) for g in outputs[0]] == \
        [(g.query_id, g.neg_ids, g.neg_sources, g.neg_ranks) for g in outputs[1]]
    for a, b in zip(*outputs):
        np.testing.assert_allclose([s if s is not None else np.nan for s in a.neg_miner_scores],
                                   [s if s is not None else np.nan for s in b.neg_miner_scores], atol=1e-5)


def test_hnsw_index_is_reproducible():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((2000, 16)).astype(np.float32)
    queries = rng.standard_normal((10, 16)).astype(np.float32)
    first, again = make_searcher(matrix, "hnsw")(queries, 10), make_searcher(matrix, "hnsw")(queries, 10)
    np.testing.assert_array_equal(first[0], again[0])


def test_dense_mining_from_the_command_line(tiny_model, toy_beir, tmp_path):
    from rtune.cli import main

    main(["mine", "--dataset", str(toy_beir), "--output", str(tmp_path / "cli"), "--method", "dense", "--model",
          str(tiny_model), "--range", "2-8", "--negatives", "2", "--embedding-dtype", "float16", "--max-score-ratio", "0.95",
          "--query-instruction", "Find the passage", "--query-format", "<instruct>{}\n<query>{}", "--backfill", "random"])
    report = json.loads((tmp_path / "cli" / "mining_report.json").read_text())
    assert report["queries"] == 6 and report["false_negative_filter"] == {"max_score_ratio": 0.95}
