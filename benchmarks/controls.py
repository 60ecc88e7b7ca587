"""Does each stage beat the plain fine-tune? The example pipelines with `eval: {controls: true}` on SQuAD, XQuAD-vi,
MED and CACM (CACM through examples/med.yaml with its dataset swapped), each stage reported against its equal-budget
control: the same rows trained with MNRL and in-batch negatives only, same steps, seed and start model.

    python benchmarks/controls.py                      # all four sets, ~1 h on 2 free cores
    python benchmarks/controls.py --sets med cacm      # some of them
    python benchmarks/controls.py --squad-run benchmarks/out/pipeline-cpu/run   # reuse the demo's run (pipeline.py)

Every run goes through `rtune run` in a child process; a set's run folder is kept in benchmarks/out/controls/<set>
(fresh stages are skipped when it is run again, so --fresh for a timed, clean run). Writes `controls:cpu`.
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
SETS = {  # name: (pipeline, dataset)
    "squad": ("squad-cpu.yaml", DATA / "squad-v1.1" / "dev-v1.1.json"),
    "xquad-vi": ("xquad-vi.yaml", DATA / "xquad" / "xquad.vi.json"),
    "med": ("med.yaml", DATA / "med"),
    "cacm": ("med.yaml", DATA / "cacm"),
}
COLUMNS = ["ndcg@10", "map@25", "recall@10", "recall@100"]


def run(pipeline: Path, dataset: Path, run_dir: Path, fresh: bool) -> tuple[float, int]:
    """`rtune run` as users run it, with the dataset named by absolute path; (wall seconds, exit code)."""
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "rtune.cli", "run", str(pipeline), "--set", f"output={run_dir}",
               "--set", f"dataset={dataset}"]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started, code


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def section(name: str, pipeline: Path, dataset: Path, run_dir: Path, wall: float | None) -> list[str]:
    from rtune.pipeline.rows import run_rows

    rows = run_rows(run_dir)
    timing = f"{wall / 60:.1f} min" if wall is not None else "resumed in a kept run folder: no full-run time"
    lines = [f"### {name}: `rtune run examples/{pipeline.name} --set dataset={dataset}` ({timing})", "",
             "| system | kind | kept | dev nDCG@10 | " + " | ".join(f"test {c}" for c in COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        kept = "yes" if r["kept"] else f"REFUSED ({r['gate'].get('reason', '')})"
        lines.append(f"| {r['label']} | {r['kind']} | {kept} | {fmt(r['dev'].get('ndcg@10'))} | "
                     + " | ".join(fmt(r["test"].get(c)) for c in COLUMNS) + " |")
    controls = control_lines(run_dir)
    return lines + (["", *controls] if controls else ["", "(no control trained)"]) + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "controls"))
    parser.add_argument("--squad-run", default=None, help="the demo's run folder (benchmarks/pipeline.py) to reuse for SQuAD")
    parser.add_argument("--fresh", action="store_true", help="start every run folder empty")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args()
    body = ["## Each stage against its equal-budget control (`python benchmarks/controls.py`)", "",
            f"- date: {date.today().isoformat()}; machine: {machine()}",
            "- control: beside each stage that uses mined negatives or teacher scores, the same rows trained with MNRL and "
            "in-batch negatives only (group size 1), same steps, seed, learning rate and start model (`eval.controls`)",
            "- p: ranx's paired t-test on per-query nDCG@10, Holm-corrected over the run's controls, per split; verdict at 0.05",
            "- the gate (`keep_if_better`) decides on dev; test is reported, never used to decide", ""]
    for name in args.sets:
        pipeline, dataset = REPO / "examples" / SETS[name][0], SETS[name][1]
        reuse = name == "squad" and args.squad_run
        run_dir = Path(args.squad_run).resolve() if reuse else Path(args.work).resolve() / name
        resumed = reuse or (run_dir.exists() and not args.fresh)
        wall, code = run(pipeline, dataset, run_dir, fresh=args.fresh and not reuse)
        if code != 0:
            raise SystemExit(f"rtune run exited {code} for {name}; see {run_dir / 'run.log'}")
        body += section(name, pipeline, dataset, run_dir, None if resumed else wall)
        print("\n".join(body[-40:]), flush=True)
    text = "\n".join(body).rstrip()
    print(text)
    if not args.no_write:
        update_results("controls:cpu", text)


if __name__ == "__main__":
    main()
