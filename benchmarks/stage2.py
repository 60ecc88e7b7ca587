"""Stage-2 benchmark: hard negatives mined with the stage-1 model, with and without the false-negative filter.

Runs after `benchmarks/stage1.py --budget B` and reuses its data and stage-1 models. For each dataset:
mine 15 negatives from ranks 2-200 with the stage-1 model (a) with the positive-aware filter (drop
candidates scoring above 0.95 x the positive) and (b) without it; continue training from the stage-1
checkpoint on the same training queries with the same budget; evaluate on the test split beside stage 1.

    python benchmarks/stage2.py --budget cpu    # about 15 minutes on 2 CPU cores

Writes the `stage2:<budget>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, steps_table, update_results  # noqa: E402
from stage1 import BUDGETS, COLUMNS, DATASETS, REPO, Budget, step_eval, step_train  # noqa: E402

VARIANTS = {"filter 0.95": 0.95, "no filter": None}


def step_mine_dense(dataset: str, out: str, model: str, budget: Budget, ratio: float | None, cache: str) -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    report = mine(MineConfig(dataset=dataset, output=out, method="dense", model=model, range=budget.rank_range,
                             negatives=budget.negatives, seed=budget.seed, max_score_ratio=ratio, cache_dir=cache,
                             overwrite=True))
    return {k: report[k] for k in ("dropped_by_rule", "short_queries", "positive_rank")}


def run_dataset(name: str, budget: Budget, work: Path) -> dict:
    _, language = DATASETS[name]
    folder = work / name
    data, stage1 = str(folder / "data"), str(folder / "stage1")
    if not Path(stage1).is_dir():
        raise SystemExit(f"no stage-1 model at {stage1}: run benchmarks/stage1.py --budget first")
    print(f"\n== {name} ==", flush=True)
    metrics = {"rtune stage 1 (BM25 negatives)": run_step("eval_stage1", step_eval, data, stage1, language)["value"]}
    steps, mining = {}, {}
    for label, ratio in VARIANTS.items():
        tag = label.replace(" ", "_").replace(".", "")
        mined, model = str(folder / f"dense_{tag}"), str(folder / f"stage2_{tag}")
        steps[f"mine_{tag}"] = run_step(f"mine_{tag}", step_mine_dense, data, mined, stage1, budget, ratio, os.environ["RTUNE_CACHE_DIR"])
        mining[label] = steps[f"mine_{tag}"]["value"]
        steps[f"train_{tag}"] = run_step(f"train_{tag}", step_train, mined, None, model, stage1, budget, budget.group_size)
        metrics[f"rtune stage 2, {label}"] = run_step(f"eval_{tag}", step_eval, data, model, language)["value"]
    return {"metrics": metrics, "mining": mining,
            "steps": {k: {"wall_s": v["wall_s"], "peak_mb": v["peak_mb"]} for k, v in steps.items()}}


def render(results: dict, budget_name: str, budget: Budget, command: str, started: str, total_s: float) -> str:
    from rtune.eval.report import markdown_table

    lines = [f"## Stage 2 (`--budget {budget_name}`)", "", f"- date: {started}", f"- machine: {machine()}",
             f"- command: `{command}` (after `python benchmarks/stage1.py --budget {budget_name}`)",
             f"- total wall time: {total_s / 60:.1f} min",
             "- stage 2 = the stage-1 checkpoint trained again on the same training queries and budget, with "
             f"{budget.group_size - 1} negative(s) sampled per query from {budget.negatives} mined by the stage-1 model from ranks {budget.rank_range}; "
             "filter = drop candidates scoring above 0.95 x the positive",
             f"- budget: {json.dumps(asdict(budget))}", ""]
    for name, result in results.items():
        lines += [f"### {name} (test split)", "", markdown_table(result["metrics"], COLUMNS), ""]
        for label, report in result["mining"].items():
            rank = report["positive_rank"]
            lines.append(f"- mining, {label}: dropped {report['dropped_by_rule']}, short queries {report['short_queries']}, "
                         f"positive at rank 1 under the stage-1 model {rank['at_rank_1']:.1%}")
        lines += ["", *steps_table(result["steps"])]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    budget = BUDGETS[args.budget]
    work = Path(args.work) / f"stage1-{args.budget}"
    os.environ["RTUNE_CACHE_DIR"] = str(work / "cache")  # stage 1's cache: its evaluations are reused here
    started, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time()
    results = {name: run_dataset(name, budget, work) for name in args.datasets.split(",")}
    text = render(results, args.budget, budget, "python benchmarks/stage2.py " + " ".join(sys.argv[1:]), started, time.time() - t0)
    print("\n" + text)
    (work / "stage2_results.json").write_text(json.dumps(results, indent=2))
    if not args.no_write:
        update_results(f"stage2:{args.budget}", text)


if __name__ == "__main__":
    main()
