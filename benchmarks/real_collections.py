"""Multi-positive collections: MED and CACM (BEIR layout, 9-51 judged documents per query, title-only records).

Trains on each collection's `train` queries and reports its `test` split: BM25, the base MiniLM, stage 1
trained on every (query, positive) pair vs on one positive per query, and stage 2 (negatives mined by the
stage-1 model with the per-positive 0.95 ratio filter, trained from stage 1). With 15-28 test queries the
figures are noisy, so each system also gets per-query wins / losses / ties on nDCG@10 against a reference
and a paired t-test p-value (ranx), Holm-corrected over the comparisons.

    python benchmarks/real_collections.py            # about 15 minutes on 2 CPU cores

Writes benchmarks/out/real-collections/results.json and the `real-collections` section of RESULTS.md.
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
from common import machine, paired_tests, run_step, steps_table, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
DATASETS = ("med", "cacm")
COLUMNS = ["ndcg@10", "map@25", "mrr@10", "recall@10", "recall@100"]
BASE = "sentence-transformers/all-MiniLM-L6-v2"
BUDGET = {"group_size": 2, "epochs": 1, "batch_size": 32, "learning_rate": 5e-5, "max_passage_length": 256,
          "negatives": 15, "range": "2-200", "seed": 42}


def step_prepare(raw: str, out: str) -> dict:
    from rtune.data.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(input=raw, output=out, overwrite=True))  # keeps the collection's train/test split


def step_mine(dataset: str, out: str, model: str | None) -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    dense = {"method": "dense", "model": model, "max_score_ratio": 0.95} if model else {}
    report = mine(MineConfig(dataset=dataset, output=out, range=BUDGET["range"], negatives=BUDGET["negatives"],
                             seed=BUDGET["seed"], overwrite=True, **dense))
    keys = ("queries", "negatives_kept", "queries_without_negatives", "short_queries", "dropped_by_rule")
    return {**{k: report[k] for k in keys}, "not_retrieved": report["positive_rank"]["not_retrieved_in_top_200"],
            "positives": report["positive_rank"]["positives"]}


def step_train(groups: str, out: str, model: str, positives: str) -> dict:
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    summary = train_bi_encoder(TrainConfig(
        groups=groups, output=out, model=model, positives=positives, group_size=BUDGET["group_size"],
        epochs=BUDGET["epochs"], batch_size=BUDGET["batch_size"], learning_rate=BUDGET["learning_rate"],
        max_passage_length=BUDGET["max_passage_length"], seed=BUDGET["seed"], overwrite=True))
    return {"rows": summary["rows"], "train_seconds": summary["train_seconds"]}


def step_eval(dataset: str, model: str, out: str) -> dict:
    from rtune.eval.evaluate import EvalConfig, evaluate

    means = evaluate(EvalConfig(dataset=dataset, model=model, split="test", output=out, overwrite=True,
                                max_passage_length=BUDGET["max_passage_length"]))
    return {"means": means, "per_query": json.loads((Path(out) / "per_query.json").read_text())}


def run_dataset(name: str, work: Path) -> dict:
    raw = DATA / name
    if not raw.is_dir():
        raise SystemExit(f"missing data: {raw} (set RTUNE_DATA)")
    folder = work / name
    data = str(folder / "data")
    print(f"\n== {name} ({raw}) ==", flush=True)
    steps = {"prepare": run_step("prepare", step_prepare, str(raw), data)}
    steps["mine_bm25"] = run_step("mine_bm25", step_mine, data, str(folder / "bm25"), None)
    systems = {"BM25": "bm25", "base MiniLM": BASE}
    for label, positives in (("stage 1, every positive", "all"), ("stage 1, one positive per query", "sample")):
        tag = "stage1_" + positives
        steps[f"train_{tag}"] = run_step(f"train_{tag}", step_train, str(folder / "bm25"), str(folder / tag), BASE, positives)
        systems[label] = str(folder / tag)
    stage1 = str(folder / "stage1_all")
    steps["mine_dense"] = run_step("mine_dense", step_mine, data, str(folder / "dense"), stage1)
    steps["train_stage2"] = run_step("train_stage2", step_train, str(folder / "dense"), str(folder / "stage2"), stage1, "all")
    systems["stage 2 (from stage 1, dense negatives, filter 0.95)"] = str(folder / "stage2")
    evals = {}
    for i, (label, model) in enumerate(systems.items()):
        evals[label] = steps[f"eval_{i}"] = run_step(f"eval_{i}", step_eval, data, model, str(folder / "eval" / str(i)))
    values = {label: e["value"] for label, e in evals.items()}
    labels = list(values)
    pairs = {f"{labels[i]} vs base MiniLM": (values[labels[i]]["per_query"], values["base MiniLM"]["per_query"])
             for i in range(2, len(labels))}
    pairs["stage 1, every positive vs one positive per query"] = (values[labels[2]]["per_query"], values[labels[3]]["per_query"])
    pairs["stage 2 vs stage 1, every positive"] = (values[labels[4]]["per_query"], values[labels[2]]["per_query"])
    pairs["BM25 vs base MiniLM"] = (values["BM25"]["per_query"], values["base MiniLM"]["per_query"])
    comparisons = paired_tests(pairs)
    return {
        "metrics": {label: v["means"] for label, v in values.items()},
        "comparisons": comparisons,
        "training": {k.removeprefix("train_"): v["value"] for k, v in steps.items() if k.startswith("train_")},
        "mining": {k.removeprefix("mine_"): v["value"] for k, v in steps.items() if k.startswith("mine_")},
        "split_sizes": steps["prepare"]["value"]["sizes"],
        "steps": {k: {"wall_s": v["wall_s"], "peak_mb": v["peak_mb"]} for k, v in steps.items()},
    }


def render(results: dict, command: str, started: str, total_s: float) -> str:
    from rtune.eval.report import markdown_table

    lines = ["## Multi-positive collections: MED and CACM (CPU budget)", "",
             f"- date: {started}", f"- machine: {machine()}", f"- command: `{command}`",
             f"- total wall time: {total_s / 60:.1f} min",
             "- data: ../shared/data/med and cacm (BEIR layout), trained on `train`, reported on `test`; document text = "
             "title + text (CACM's title-only records are their title); no dev split, so the last epoch is kept",
             f"- budget: {json.dumps(BUDGET)}; stage 1 = all-MiniLM-L6-v2 + MNRL with 1 BM25 negative per row (fresh each epoch) "
             "+ in-batch negatives, batches without another positive of a row's query; 'one positive per query' = `--positives sample`; "
             "stage 2 = negatives mined by stage 1 with `--max-score-ratio 0.95` (per positive), trained from stage 1", ""]
    for name, result in results.items():
        sizes = result["split_sizes"]
        lines += [f"### {name.upper()} (train {sizes['train']['queries']} queries / {sizes['train']['judgements']} judgements, "
                  f"test {sizes['test']['queries']} / {sizes['test']['judgements']})", "",
                  markdown_table(result["metrics"], COLUMNS), "",
                  "| comparison (nDCG@10, per test query) | wins | losses | ties | mean diff | paired t-test p | p (Holm) |",
                  "|---|---|---|---|---|---|---|"]
        for label, c in result["comparisons"].items():
            lines.append(f"| {label} | {c['wins']} | {c['losses']} | {c['ties']} | {c['mean_diff']:+.4f} | {c['p']:.3f} | {c['p_holm']:.3f} |")
        lines.append("")
        for label, t in result["training"].items():
            rows = t["rows"]
            lines.append(f"- training {label}: {rows['rows']} rows per epoch from {rows['queries']} queries and {rows['positives']} "
                         f"positives; queries without negatives {rows['queries_without_negatives']}, positives without an allowed "
                         f"negative {rows['positives_without_allowed_negatives']}; {t['train_seconds']:.0f} s")
        for label, m in result["mining"].items():
            lines.append(f"- mining {label}: {m['negatives_kept']} negatives kept for {m['queries']} queries; short queries "
                         f"{m['short_queries']}, with none {m['queries_without_negatives']}; positives not retrieved in the top 200: "
                         f"{m['not_retrieved']} of {m['positives']}; dropped {m['dropped_by_rule']}")
        lines += ["", *steps_table(result["steps"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "real-collections"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    shutil.rmtree(work / "cache", ignore_errors=True)
    os.environ["RTUNE_CACHE_DIR"] = str(work / "cache")
    started, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time()
    results = {name: run_dataset(name, work) for name in args.datasets.split(",")}
    text = render(results, "python benchmarks/real_collections.py " + " ".join(sys.argv[1:]), started, time.time() - t0)
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print("\n" + text)
    if not args.no_write:
        update_results("real-collections", text)


if __name__ == "__main__":
    main()
