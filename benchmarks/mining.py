"""Dense mining benchmark: rtune's miner vs sentence-transformers' `util.mine_hard_negatives`, plus scale.

Same machine, model (all-MiniLM-L6-v2), corpus (all 2,067 SQuAD-dev paragraphs), queries (the train split,
articles split 70/10/20) and parameters (15 negatives sampled at random from ranks 2-200):
- rtune cold: empty embedding cache;
- rtune warm: the corpus embeddings already cached by an earlier `rtune eval` of the same model;
- rtune re-mine: a parameter tweak (strategy top) after a mining run: corpus and queries cached;
- sentence-transformers cold, and warm through its own `cache_folder` (a second identical call).
Each runs in a fresh process: wall time and peak RSS are that process's. Overlap = shared negatives / 15,
averaged over queries (rtune cold vs sentence-transformers cold).

Scale: 1,000,000 random 384-dim float16 embeddings (memory-mapped .npy), 10,000 queries, top 200 by
rtune's block-wise exact FAISS search in query batches of 1,024; peak RSS against the matrix size.

BM25 at scale (`--bm25-scale`, a step of its own, written to its own section): `rtune mine` (BM25, ranks 2-200,
15 negatives) over 1,000,000 synthetic documents of 50 words drawn from a seeded Zipf vocabulary (100,000
words, exponent 1.1), for 1,024 train queries of 6 words taken from their positive document: one default
query batch, which used to hold 1,024 full score vectors (4 GB). Wall time and peak RSS of the mining process.

    python benchmarks/mining.py            # about 10 minutes on 2 CPU cores
    python benchmarks/mining.py --skip-scale
    python benchmarks/mining.py --bm25-scale   # BM25 mining at 1M documents only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RANGE, NEGATIVES, SEED = "2-200", 15, 42


def step_prepare(out: str) -> None:
    from rtune.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(input=DATA / "squad-v1.1" / "dev-v1.1.json", output=out, overwrite=True))


def step_rtune(dataset: str, out: str, cache: str, strategy: str = "random") -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    report = mine(MineConfig(dataset=dataset, output=out, method="dense", model=MODEL, range=RANGE, negatives=NEGATIVES,
                             strategy=strategy, seed=SEED, cache_dir=cache, overwrite=True))
    return {"queries": report["queries"], "short": report["short_queries"]}


def step_eval(dataset: str, cache: str) -> dict:
    from rtune.eval.evaluate import EvalConfig, evaluate

    return evaluate(EvalConfig(dataset=dataset, model=MODEL, split="test", cache_dir=cache, ks=[10]))


def step_st(dataset: str, out: str, cache_folder: str) -> dict:
    """sentence-transformers' miner on the same (query, positive) pairs and corpus; no rtune code in the loop."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from rtune.data.beir import read_beir
    from rtune.models.names import resolve_model

    data = read_beir(dataset)
    train = data.qrels["train"]
    pairs = Dataset.from_dict({
        "anchor": [data.queries[q].text for q in train],
        "positive": [data.corpus[next(iter(train[q]))].text for q in train],
    })
    model = SentenceTransformer(resolve_model(MODEL))
    mined = mine_hard_negatives(pairs, model, corpus=[d.text for d in data.corpus.values()], range_min=1, range_max=200,
                                num_negatives=NEGATIVES, sampling_strategy="random", output_format="n-tuple",
                                batch_size=64, use_faiss=True, cache_folder=cache_folder, verbose=False)
    rows = [{"query": r["anchor"], "neg": [r[f"negative_{i}"] for i in range(1, NEGATIVES + 1)]} for r in mined]
    Path(out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"rows": len(rows)}


def overlap(rtune_groups: Path, st_rows: Path) -> dict:
    st = {}
    for line in st_rows.read_text().splitlines():
        row = json.loads(line)
        st.setdefault(row["query"], set()).update(row["neg"])
    shares = []
    for line in rtune_groups.read_text().splitlines():
        group = json.loads(line)
        if group["query"] in st:
            shares.append(len(set(group["neg"]) & st[group["query"]]) / NEGATIVES)
    return {"queries_compared": len(shares), "mean_overlap": sum(shares) / max(1, len(shares))}


def step_scale(folder: str, n: int, dim: int, n_queries: int, k: int, batch: int) -> dict:
    import numpy as np

    from rtune.index.dense_search import exact_search

    path = Path(folder) / "embeddings.npy"
    matrix = np.load(path, mmap_mode="r")
    queries = np.random.default_rng(1).standard_normal((n_queries, dim)).astype(np.float32)
    checksum = 0.0
    for start in range(0, n_queries, batch):
        positions, scores = exact_search(queries[start : start + batch], matrix, k)
        checksum += float(scores[:, 0].sum())
    return {"matrix_mb": round(path.stat().st_size / 2**20, 1), "checksum": checksum}


def make_scale_matrix(folder: Path, n: int, dim: int) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim)).astype(np.float32)
        matrix[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    matrix.flush()


def make_bm25_corpus(folder: str, n: int, n_queries: int, words: int = 50, vocabulary: int = 100_000,
                     exponent: float = 1.1, seed: int = 0) -> dict:
    """A BEIR folder of `n` synthetic documents (Zipf-distributed pseudo-words) and `n_queries` train queries of
    6 words from their positive document; deterministic for `seed`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(rng.choice(letters, size=rng.integers(3, 11))) for _ in range(int(vocabulary * 1.05))})[:vocabulary]
    vocab = [vocab[i] for i in rng.permutation(len(vocab))]  # frequency rank independent of spelling
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** exponent
    wanted = {int(p): q for q, p in enumerate(np.random.default_rng(seed + 1).choice(n, size=n_queries, replace=False))}
    query_rng = np.random.default_rng(seed + 2)
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as corpus, open(root / "queries.jsonl", "w", encoding="utf-8") as queries, \
            open(root / "qrels" / "train.tsv", "w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for start in range(0, n, 100_000):
            ids = rng.choice(len(vocab), size=(min(100_000, n - start), words), p=weights / weights.sum())
            corpus.writelines(json.dumps({"_id": f"d{start + i}", "title": "", "text": " ".join(vocab[w] for w in row)}) + "\n"
                              for i, row in enumerate(ids))
            for position in sorted(p for p in wanted if start <= p < start + len(ids)):
                text = " ".join(vocab[w] for w in query_rng.choice(ids[position - start], size=6, replace=False))
                queries.write(json.dumps({"_id": f"q{wanted[position]}", "text": text}) + "\n")
                qrels.write(f"q{wanted[position]}\td{position}\t1\n")
    return {"corpus_mb": round((root / "corpus.jsonl").stat().st_size / 2**20, 1)}


def step_bm25_scale(dataset: str, out: str) -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    report = mine(MineConfig(dataset=dataset, output=out, method="bm25", range=RANGE, negatives=NEGATIVES, seed=SEED,
                             overwrite=True))
    return {"queries": report["queries"], "short": report["short_queries"]}


def bm25_scale(work: Path, n: int, n_queries: int, write: bool) -> None:
    """BM25 mining over `n` synthetic documents; its own RESULTS.md section."""
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    data = work / "bm25_scale"
    made = run_step("make_bm25_corpus", make_bm25_corpus, str(data), n, n_queries)
    mined = run_step("bm25_scale", step_bm25_scale, str(data), str(work / "bm25_scale_groups"))
    full_vectors_gb = min(n_queries, 1024) * n * 4 / 1e9
    text = "\n".join([
        "## BM25 mining at scale (`python benchmarks/mining.py --bm25-scale`)", "",
        f"- date: {started}", f"- machine: {machine()}",
        f"- data: {n:,} synthetic documents, 50 words each from a Zipf vocabulary (100,000 pseudo-words, exponent 1.1, "
        f"seed 0; corpus.jsonl {made['value']['corpus_mb']:.0f} MB); {mined['value']['queries']:,} train queries of 6 words "
        f"from their positive; `rtune mine` BM25 (language en), {NEGATIVES} negatives from ranks {RANGE}, default query batch 1,024",
        "", "| step | wall s | peak MB |", "|---|---|---|",
        f"| make the corpus (setup) | {made['wall_s']:.1f} | {made['peak_mb']:.0f} |",
        f"| rtune mine --method bm25 (read, index, rank, write) | {mined['wall_s']:.1f} | {mined['peak_mb']:.0f} |", "",
        f"- each query's top 200 is kept as soon as it is scored: one score vector ({n * 4 / 2**20:.0f} MB) at a time, where a "
        f"batch of full score vectors would add {full_vectors_gb:.1f} GB; short queries: {mined['value']['short']}",
    ])
    print("\n" + text)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(work / "bm25_scale_groups", ignore_errors=True)
    if write:
        update_results("mining:bm25-scale", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "mining"))
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--bm25-scale", action="store_true", help="only BM25 mining at --bm25-n synthetic documents")
    parser.add_argument("--bm25-n", type=int, default=1_000_000)
    parser.add_argument("--bm25-queries", type=int, default=1024)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.bm25_scale:
        work = Path(args.work) / "bm25"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return bm25_scale(work, args.bm25_n, args.bm25_queries, not args.no_write)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    data, cache = str(work / "data"), str(work / "cache")
    run_step("prepare", step_prepare, data)
    steps = {
        "rtune cold (empty cache)": run_step("rtune_cold", step_rtune, data, str(work / "rtune_cold"), str(work / "cold_cache")),
    }
    steps["(setup) rtune eval of the same model, test split"] = run_step("eval", step_eval, data, cache)
    steps["rtune warm (corpus cached by that eval)"] = run_step("rtune_warm", step_rtune, data, str(work / "rtune_warm"), cache)
    steps["rtune re-mine after a tweak (strategy top)"] = run_step("rtune_remine", step_rtune, data, str(work / "rtune_top"), cache, "top")
    steps["sentence-transformers cold"] = run_step("st_cold", step_st, data, str(work / "st_cold.jsonl"), str(work / "st_cache"))
    steps["sentence-transformers warm (its cache_folder)"] = run_step("st_warm", step_st, data, str(work / "st_warm.jsonl"), str(work / "st_cache"))
    agreement = overlap(work / "rtune_cold" / "groups.jsonl", work / "st_cold.jsonl")
    cold, st_cold = steps["rtune cold (empty cache)"], steps["sentence-transformers cold"]
    warm, st_warm = steps["rtune warm (corpus cached by that eval)"], steps["sentence-transformers warm (its cache_folder)"]
    lines = ["## Dense mining (`python benchmarks/mining.py`)", "", f"- date: {started}", f"- machine: {machine()}",
             f"- data: SQuAD v1.1 dev, all 2,067 paragraphs as corpus, {steps['rtune cold (empty cache)']['value']['queries']} "
             f"train queries (split by article 70/10/20, seed 42); model all-MiniLM-L6-v2; {NEGATIVES} negatives, random, ranks {RANGE}",
             "", "| run | wall s | peak MB |", "|---|---|---|"]
    lines += [f"| {name} | {s['wall_s']:.1f} | {s['peak_mb']:.0f} |" for name, s in steps.items()]
    lines += ["", f"- cold: rtune {cold['wall_s']:.1f}s vs sentence-transformers {st_cold['wall_s']:.1f}s "
              f"(**{st_cold['wall_s'] / cold['wall_s']:.2f}x**); peak memory {cold['peak_mb']:.0f} vs {st_cold['peak_mb']:.0f} MB",
              f"- warm: rtune {warm['wall_s']:.1f}s vs sentence-transformers cold {st_cold['wall_s']:.1f}s "
              f"(**{st_cold['wall_s'] / warm['wall_s']:.1f}x**) and vs its own warm cache {st_warm['wall_s']:.1f}s "
              f"({st_warm['wall_s'] / warm['wall_s']:.1f}x); re-mine after a tweak "
              f"{steps['rtune re-mine after a tweak (strategy top)']['wall_s']:.1f}s",
              f"- overlap of the negative sets (rtune cold vs sentence-transformers cold): "
              f"{agreement['mean_overlap']:.1%} over {agreement['queries_compared']} queries "
              "(both sample 15 at random from about 200 candidates; identical candidate pools would give about 15/199 = 7.5% by chance "
              "plus what the pools share)"]
    if not args.skip_scale:
        scale_dir = work / "scale"
        run_step("make_scale_matrix", make_scale_matrix, scale_dir, args.scale_n, 384)  # keeps this process small
        scale = run_step("scale", step_scale, str(scale_dir), args.scale_n, 384, 10_000, 200, 1024)
        size = scale["value"]["matrix_mb"]
        lines += ["", f"Scale: {args.scale_n:,} x 384 float16 embeddings ({size:.0f} MB, memory-mapped), 10,000 queries, top 200, "
                  f"query batches of 1,024: {scale['wall_s']:.1f}s, peak RSS {scale['peak_mb']:.0f} MB = "
                  f"**{scale['peak_mb'] / size:.2f}x the embedding matrix** (goal < 2x)."]
        shutil.rmtree(scale_dir, ignore_errors=True)
    text = "\n".join(lines)
    print("\n" + text)
    (work / "results.json").write_text(json.dumps({"steps": {k: {kk: vv for kk, vv in v.items()} for k, v in steps.items()},
                                                   "overlap": agreement}, indent=2, default=str))
    if not args.no_write:
        update_results("mining", text)


if __name__ == "__main__":
    main()
