"""Training throughput, rtune vs plain sentence-transformers, at equal settings, robust to a noisy machine.

Same base model (all-MiniLM-L6-v2), the same (query, paragraph) pairs (the stage-1 CPU budget's 700 SQuAD
train queries), MultipleNegativesRankingLoss with in-batch negatives, no-duplicates batches, batch 32,
lr 5e-5, 1 epoch, 128 tokens. The two trainers alternate (peer, rtune, peer, rtune, ...) so that drifts
in machine load hit both alike; the figure is the ratio of medians, with every run listed.

    python benchmarks/throughput.py --repeats 3     # about 7 minutes on 2 CPU cores

Needs `benchmarks/stage1.py --budget cpu` to have prepared and mined SQuAD. Writes the `throughput`
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, update_results  # noqa: E402
from peer_sentence_transformers import train_peer  # noqa: E402
from stage1 import BUDGETS, REPO, step_train, write_peer_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "stage1-cpu" / "squad-dev"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rtune.models.names import resolve_model

    budget, work = BUDGETS["cpu"], Path(args.work)
    mined = work / "bm25"
    if not (mined / "groups.jsonl").is_file():
        raise SystemExit(f"no mined groups at {mined}: run benchmarks/stage1.py --budget cpu first")
    pairs = work / "throughput_pairs.jsonl"
    rows = write_peer_pairs(str(mined), str(pairs), budget)
    base = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs: dict[str, list[float]] = {"peer": [], "rtune": []}
    for i in range(args.repeats):
        peer = run_step(f"peer_{i}", train_peer, str(pairs), base, str(work / "tp_peer"), budget.epochs, budget.batch_size,
                        budget.learning_rate, budget.warmup_ratio, budget.max_passage_length, budget.seed)
        runs["peer"].append(peer["value"]["rows_per_second"])
        ours = run_step(f"rtune_{i}", step_train, str(mined), None, str(work / "tp_rtune"), base, budget, 1)
        runs["rtune"].append(ours["value"]["rows_per_second"])
    peer_median, rtune_median = statistics.median(runs["peer"]), statistics.median(runs["rtune"])
    text = "\n".join([
        "## Training throughput (`python benchmarks/throughput.py`)", "",
        f"- date: {started}", f"- machine: {machine()}",
        f"- command: `python benchmarks/throughput.py --repeats {args.repeats}` (after `benchmarks/stage1.py --budget cpu`)",
        f"- data: {rows} (query, paragraph) pairs from SQuAD dev train queries; batch {budget.batch_size}, 1 epoch, "
        f"{budget.max_passage_length} tokens, MNRL in-batch negatives, no-duplicates batches; runs alternate peer / rtune",
        "", "| trainer | pairs/s per run | median |", "|---|---|---|",
        f"| plain sentence-transformers | {', '.join(f'{v:.2f}' for v in runs['peer'])} | {peer_median:.2f} |",
        f"| rtune | {', '.join(f'{v:.2f}' for v in runs['rtune'])} | {rtune_median:.2f} |",
        "", f"rtune / peer, ratio of medians: **{rtune_median / peer_median:.2f}x** (goal >= 0.95x).",
    ])
    print("\n" + text)
    if not args.no_write:
        update_results("throughput", text)


if __name__ == "__main__":
    main()
