"""Why BM25 hard negatives lose to the plain fine-tune on XQuAD-vi, and which default wins: stage 1 variants from the
same base model on the same queries (benchmarks/pipelines/xquad-vi-variants.yaml: the example's rank range 2-50 with
one hard negative per row at lr 5e-5, then ranks 10-100, lr 2e-5, three hard negatives per row), each against the
plain fine-tune (in-batch negatives only, the same rows) at its learning rate, with ranx's paired t-test on the
per-query nDCG@10 of the test split (Holm-corrected over the variants). Writes `hard-negatives:xquad-vi`.

    python benchmarks/hard_negatives.py          # about 25 minutes on 2 free CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, update_results  # noqa: E402
from pipeline import DATA, REPO, run  # noqa: E402

PIPELINE = REPO / "benchmarks" / "pipelines" / "xquad-vi-variants.yaml"
CONTROL_OF = {"hard_2_50": "control_lr5e5", "hard_10_100": "control_lr5e5", "hard_gs4": "control_lr5e5",
              "hard_lr2e5": "control_lr2e5"}
METRIC = "ndcg@10"


def per_query(run_dir: Path, stage: str, split: str) -> dict[str, float]:
    values = json.loads((run_dir / stage / f"eval-{split}" / "output" / "per_query.json").read_text(encoding="utf-8"))
    return {qid: v[METRIC] for qid, v in values.items()}


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def main() -> None:
    from rtune.eval.significance import compare_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    run_dir = Path(args.work).resolve() / "xquad-vi-variants"
    wall, code = run(PIPELINE, run_dir, fresh=True, overrides=[f"dataset={DATA / 'xquad' / 'xquad.vi.json'}"],
                     dataset_override=False)
    if code != 0:
        raise SystemExit(f"rtune run exited {code}; see {run_dir / 'run.log'}")
    stages = ["control_lr5e5", "control_lr2e5", *CONTROL_OF]
    rows = {s: {split: per_query(run_dir, s, split) for split in ("dev", "test")} for s in stages}
    tests = {split: {r.label: r for r in compare_pairs([(s, rows[CONTROL_OF[s]][split], rows[s][split]) for s in CONTROL_OF])}
             for split in ("dev", "test")}
    lines = ["## Hard negatives against the plain fine-tune on XQuAD-vi (`python benchmarks/hard_negatives.py`)", "",
             f"- date: {date.today().isoformat()}; machine: {machine()}; wall time {wall / 60:.1f} min",
             f"- pipeline: `{PIPELINE.relative_to(REPO)}` (XQuAD-vi split by article 60/20/20, seed 42; all-MiniLM-L6-v2; "
             "every variant from the base model on the same queries, 2 epochs, batch 32, passages 256 tokens)",
             f"- p: ranx's paired t-test on per-query {METRIC}, Holm-corrected over the {len(CONTROL_OF)} variants, per split",
             "", f"| system | dev {METRIC} | test {METRIC} | test diff vs its control | p (Holm) | dev diff | p (Holm) |",
             "|---|---|---|---|---|---|---|"]
    for stage in stages:
        dev, test = mean(rows[stage]["dev"]), mean(rows[stage]["test"])
        if stage in CONTROL_OF:
            t, d = tests["test"][stage], tests["dev"][stage]
            fmt = lambda r: f"{r.mean_difference:+.4f} | {'-' if r.p_adjusted is None else f'{r.p_adjusted:.3g}'}"  # noqa: E731
            lines.append(f"| {stage} (vs {CONTROL_OF[stage]}) | {dev:.4f} | {test:.4f} | {fmt(t)} | {fmt(d)} |")
        else:
            lines.append(f"| {stage} | {dev:.4f} | {test:.4f} | - | - | - | - |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        update_results("hard-negatives:xquad-vi", text)


if __name__ == "__main__":
    main()
