"""Shared benchmark plumbing: run a step in its own process (wall time, peak RSS), machine facts, RESULTS.md."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import re
import resource
import time
import traceback
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def peak_rss_mb() -> float:
    """This process's own peak resident memory. VmHWM belongs to the address space made at exec, while
    ru_maxrss also keeps the parent's high-water mark from before the exec, so VmHWM where Linux has it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(queue, fn, args, kwargs):
    try:
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        wall = time.perf_counter() - started
        queue.put(("ok", value, wall, peak_rss_mb()))
    except BaseException:  # report, don't hang the parent
        queue.put(("error", traceback.format_exc(), 0.0, 0.0))


def run_step(name: str, fn, *args, **kwargs) -> dict:
    """Run `fn` in a fresh spawned process; return {'value', 'wall_s', 'peak_mb'} (peak RSS of that process)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, fn, args, kwargs))
    process.start()
    status, value, wall, peak = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"step {name} failed:\n{value}")
    print(f"  {name}: {wall:.1f}s, peak {peak:.0f} MB", flush=True)
    return {"value": value, "wall_s": round(wall, 2), "peak_mb": round(peak, 1)}


def steps_table(steps: dict) -> list[str]:
    """Markdown rows: wall time and peak memory of each step."""
    return ["| step | wall s | peak MB |", "|---|---|---|",
            *(f"| {step} | {v['wall_s']:.1f} | {v['peak_mb']:.0f} |" for step, v in steps.items())]


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} GPU + {os.cpu_count()} CPU cores ({cpu})"
    except ImportError:
        pass
    return f"CPU only: {os.cpu_count()} cores ({cpu}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"


def update_results(section: str, body: str) -> None:
    """Replace (or append) the block between <!-- section --> markers in RESULTS.md."""
    start, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n\nEach section is written by the script it names; rerun that command to refresh it.\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def paired_tests(pairs: dict[str, tuple[dict, dict]], metric: str = "ndcg@10") -> dict[str, dict]:
    """label -> wins / losses / ties, mean difference, p and Holm-adjusted p of system a over system b, for each
    (a, b) pair of per-query eval values ({qid: {metric: value}}), corrected over all the pairs given
    (rtune.eval.significance: ranx's paired t-test)."""
    from rtune.eval.significance import compare_pairs

    results = compare_pairs([(label, {q: v[metric] for q, v in b.items()}, {q: v[metric] for q, v in a.items()})
                             for label, (a, b) in pairs.items()])
    return {r.label: {"wins": r.wins, "losses": r.losses, "ties": r.ties, "mean_diff": r.mean_difference,
                      "p": 1.0 if r.p_value is None else r.p_value, "p_holm": 1.0 if r.p_adjusted is None else r.p_adjusted}
            for r in results}


def control_lines(run_dir: Path) -> list[str]:
    """Markdown rows: each stage of a run folder against its equal-budget control (the run's own paired test, Holm-
    corrected over its controls), or nothing when the run trained no controls."""
    from rtune.pipeline.report import against_controls
    from rtune.pipeline.systems import read_systems

    systems, meta = read_systems(run_dir)
    rows = against_controls(run_dir, systems, meta.get("metric", "ndcg@10"))
    if not rows:
        return []
    return ["| stage | split | mean diff vs control | wins | losses | ties | p | p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
            *(f"| {r['stage']} | {r['split']} | {r['mean_difference']:+.4f} | {r['wins']} | {r['losses']} | {r['ties']} | "
              f"{_p(r['p_value'])} | {_p(r['p_adjusted'])} | {r['verdict']} |" for r in rows)]


def _p(value: float | None) -> str:
    return "-" if value is None else ("<0.0001" if value < 1e-4 else f"{value:.4f}")
