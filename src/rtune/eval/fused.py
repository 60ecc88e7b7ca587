"""Fused evaluation: two eval outputs' runs fused (BM25 + dense: rtune.index.fusion; a first stage + its reranking:
rtune.index.rerank), the method and weight chosen on dev only and applied unchanged to test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rtune.data.atomic import atomic_dir
from rtune.data.manifest import write_manifest
from rtune.data.run_file import read_run, write_run
from rtune.eval.metrics import compute_metrics
from rtune.index.fusion import fuse_runs, fusion_grid, top_k
from rtune.index.rerank import fuse_with_first_stage

FUSION_FILE = "fusion.json"


Fuse = Callable[..., dict]  # (lexical run, dense run, method, dense weight) -> fused run


def choose_fusion(lexical, dense, qrels, names: list[str], metric: str, weights: Sequence[float], fuse: Fuse = fuse_runs) -> dict:
    """Try every (method, dense weight) on dev; the best by `metric` (ties: the first in grid order)."""
    grid = []
    for method, weight in fusion_grid(weights):
        means, _ = compute_metrics(qrels, fuse(lexical, dense, method, weight), [metric])
        grid.append({"method": method, "dense_weight": weight, metric: means[metric]})
    best = max(grid, key=lambda row: row[metric])  # max keeps the first of equal values
    return {"method": best["method"], "dense_weight": best["dense_weight"], "metric": metric, "grid": grid}


def fused_eval(output: Path, lexical_dir: Path, dense_dir: Path, qrels, names: list[str], depth: int,
               choice: dict | None = None, metric: str = "ndcg@10", weights: Sequence[float] = (),
               dense_file: str = "run.trec", fuse: Fuse = fuse_runs) -> dict:
    """Fuse two eval outputs' runs (`lexical_dir`/run.trec and `dense_dir`/`dense_file`) with `fuse`; with no
    `choice`, pick it on these (dev) runs. Writes metrics.json, per_query.json, run.trec and fusion.json to
    `output`; returns {'metrics', 'fusion'}."""
    started = time.time()
    lexical, dense = read_run(lexical_dir / "run.trec"), read_run(dense_dir / dense_file)
    choice = choice or choose_fusion(lexical, dense, qrels, names, metric, weights, fuse)
    run = top_k(fuse(lexical, dense, choice["method"], choice["dense_weight"]), depth)
    means, per_query = compute_metrics(qrels, run, names)
    with atomic_dir(output, overwrite=True) as tmp:
        write_manifest(tmp, "fused-eval", {"lexical": str(lexical_dir), "dense": str(dense_dir / dense_file), **choice},
                       [lexical_dir / "run.trec", dense_dir / dense_file], started, {"metrics": means})
        (tmp / "metrics.json").write_text(json.dumps(means, indent=2) + "\n", encoding="utf-8")
        (tmp / "per_query.json").write_text(json.dumps(per_query) + "\n", encoding="utf-8")
        (tmp / FUSION_FILE).write_text(json.dumps(choice, indent=2) + "\n", encoding="utf-8")
        write_run(tmp / "run.trec", run, tag=f"hybrid-{choice['method']}")
    return {"metrics": means, "fusion": choice}


def reranker_fusion(top: int) -> Fuse:
    """`fuse` for a first-stage run and its reranked run: the reranked top `top` ordered by both scores fused
    (the reranker weighs `dense_weight`), as `rtune eval --rerank-fusion` does."""
    def fuse(first, reranked, method: str, weight: float) -> dict:
        return fuse_with_first_stage(first, reranked, top, method, weight)

    return fuse
