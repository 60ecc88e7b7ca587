"""Hybrid baselines: BM25 + a dense run fused (rtune.eval.fusion), method and weight chosen on dev only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rtune.data.atomic import atomic_dir
from rtune.eval.fusion import fuse_runs, fusion_grid, top_k
from rtune.eval.metrics import compute_metrics
from rtune.eval.run_file import read_run, write_run

FUSION_FILE = "fusion.json"


def choose_fusion(lexical, dense, qrels, names: list[str], metric: str, weights: Sequence[float]) -> dict:
    """Try every (method, dense weight) on dev; the best by `metric` (ties: the first in grid order)."""
    grid = []
    for method, weight in fusion_grid(weights):
        means, _ = compute_metrics(qrels, fuse_runs(lexical, dense, method, weight), [metric])
        grid.append({"method": method, "dense_weight": weight, metric: means[metric]})
    best = max(grid, key=lambda row: row[metric])  # max keeps the first of equal values
    return {"method": best["method"], "dense_weight": best["dense_weight"], "metric": metric, "grid": grid}


def fused_eval(output: Path, lexical_dir: Path, dense_dir: Path, qrels, names: list[str], depth: int,
               choice: dict | None = None, metric: str = "ndcg@10", weights: Sequence[float] = ()) -> dict:
    """Fuse two eval outputs' run.trec; with no `choice`, pick it on these (dev) runs. Writes metrics.json,
    per_query.json, run.trec and fusion.json to `output`; returns {'metrics', 'fusion'}."""
    lexical, dense = read_run(lexical_dir / "run.trec"), read_run(dense_dir / "run.trec")
    choice = choice or choose_fusion(lexical, dense, qrels, names, metric, weights)
    run = top_k(fuse_runs(lexical, dense, choice["method"], choice["dense_weight"]), depth)
    means, per_query = compute_metrics(qrels, run, names)
    with atomic_dir(output, overwrite=True) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(means, indent=2) + "\n", encoding="utf-8")
        (tmp / "per_query.json").write_text(json.dumps(per_query) + "\n", encoding="utf-8")
        (tmp / FUSION_FILE).write_text(json.dumps(choice, indent=2) + "\n", encoding="utf-8")
        write_run(tmp / "run.trec", run, tag=f"hybrid-{choice['method']}")
    return {"metrics": means, "fusion": choice}
