"""The README's main job as a benchmark: `rtune run` on an example pipeline (SQuAD v1.1 dev at the CPU budget by
default), from a fresh run folder, timed end to end; it keeps the run's report and records each system's dev and
test metrics, each stage's wall time and peak memory, the hybrid baselines and the keep_if_better decisions.

    python benchmarks/pipeline.py                                  # examples/squad-cpu.yaml, ~15-20 min on 2 free cores
    python benchmarks/pipeline.py --pipeline examples/squad-full.yaml --budget full   # on a GPU

The run folder (report.md, report.html, results.csv) stays in benchmarks/out/pipeline-<budget>/run. Writes the
`pipeline:<budget>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import control_lines, machine, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
COLUMNS = ["ndcg@10", "map@25", "mrr@10", "recall@10", "recall@100"]


def run(pipeline: Path, run_dir: Path, fresh: bool, overrides: list[str], dataset_override: bool = True) -> tuple[float, int]:
    """`rtune run` in a child process (the CLI users run), with an empty embedding cache of its own (as on a fresh
    machine) unless resuming; (wall seconds, exit code)."""
    cache = run_dir.parent / "embedding-cache"
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    squad = [f"--set=dataset={DATA / 'squad-v1.1' / 'dev-v1.1.json'}"] if dataset_override else []
    command = [sys.executable, "-m", "rtune.cli", "run", str(pipeline), "--set", f"output={run_dir}", *squad,
               *(f"--set={o}" for o in overrides)]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "RTUNE_CACHE_DIR": str(cache)})
    if code == 0:
        print(f"wall time of the whole run: {time.perf_counter() - started:.1f} s", flush=True)
    return time.perf_counter() - started, code


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def body(pipeline: Path, run_dir: Path, wall: float, budget: str, overrides: list[str]) -> str:
    from rtune.pipeline.rows import run_rows, stage_record
    from rtune.pipeline.systems import read_plan

    rows = run_rows(run_dir)
    plan = read_plan(run_dir)
    lines = [f"## Pipeline ({budget} budget): `rtune run {pipeline.relative_to(REPO)}`", "",
             f"- date: {date.today().isoformat()}; machine: {machine()}",
             f"- command: `python benchmarks/pipeline.py --pipeline {pipeline.relative_to(REPO)} --budget {budget}"
             + "".join(f" --set {o}" for o in overrides) + "` (a fresh run folder and an empty embedding cache)",
             f"- data: SQuAD v1.1 dev ({DATA / 'squad-v1.1' / 'dev-v1.1.json'}), split by article 70/10/20 as the pipeline declares",
             f"- wall time of the whole run: {wall / 60:.1f} min", "",
             "| system | kind | kept | dev nDCG@10 | " + " | ".join(f"test {c}" for c in COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        kept = "yes" if r["kept"] else f"REFUSED ({r['gate'].get('reason', '')})"
        fusion = f" ({r['fusion']['method']}, dense weight {r['fusion']['dense_weight']} chosen on dev)" if r.get("fusion") else ""
        lines.append(f"| {r['label']}{fusion} | {r['kind']} | {kept} | {fmt(r['dev'].get('ndcg@10'))} | "
                     + " | ".join(fmt(r["test"].get(c)) for c in COLUMNS) + " |")
    controls = control_lines(run_dir)
    if controls:
        lines += ["", "Each stage against its equal-budget control (the same rows, MNRL with in-batch negatives only, "
                  "same steps, seed and start model), paired t-test on per-query nDCG@10:", "", *controls]
    lines += ["", "| stage | kind | wall s | peak MiB |", "|---|---|---|---|"]
    for stage in plan.get("stages", []):
        stats = stage_record(run_dir, stage["name"]).get("stats") or {}
        seconds, peak = stats.get("seconds"), stats.get("peak_memory_mb")
        lines.append(f"| {stage['name']} | {stage['stage']} | {'-' if seconds is None else f'{seconds:.1f}'} | "
                     f"{'-' if peak is None else f'{peak:.0f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=str(REPO / "examples" / "squad-cpu.yaml"))
    parser.add_argument("--budget", default="cpu", help="the section's name: cpu or full")
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--resume", action="store_true", help="keep the run folder (fresh stages are skipped; the time is not a full run's)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="a pipeline override (repeatable)")
    parser.add_argument("--body-out", default=None, help="also write the section's text to this file")
    args = parser.parse_args()
    pipeline = Path(args.pipeline).resolve()
    run_dir = Path(args.work).resolve() / f"pipeline-{args.budget}" / "run"
    wall, code = run(pipeline, run_dir, fresh=not args.resume, overrides=args.set)
    if code != 0:
        raise SystemExit(f"rtune run exited {code}; see {run_dir / 'run.log'}")
    text = body(pipeline, run_dir, wall, args.budget, args.set)
    print(text)
    if args.body_out:
        Path(args.body_out).write_text(text + "\n", encoding="utf-8")
    if not args.no_write and not args.resume:
        update_results(f"pipeline:{args.budget}", text)


if __name__ == "__main__":
    main()
