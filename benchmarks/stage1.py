"""Stage-1 benchmark: BM25, the base MiniLM, rtune's stage-1 model and a plain sentence-transformers peer.

For each dataset (SQuAD v1.1 dev, XQuAD-vi; split by article, test = 20% of articles, the whole corpus
searched) it reports test-split nDCG@10, MAP@25, MRR@10, Recall@10/100 of every system, the wall time and
peak memory of each step, and training throughput of rtune vs the peer at equal settings (pairs, same
queries, same hyper-parameters), all measured in this one run.

    python benchmarks/stage1.py --budget cpu    # about 15-20 minutes on 2 CPU cores
    python benchmarks/stage1.py --budget full   # every train query, 3 epochs, dev-selected: for a GPU

Writes benchmarks/out/stage1-<budget>/results.json and the `stage1:<budget>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, steps_table, update_results  # noqa: E402
from peer_sentence_transformers import train_peer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
DATASETS = {"squad-dev": ("squad-v1.1/dev-v1.1.json", "en"), "xquad-vi": ("xquad/xquad.vi.json", "vi")}
COLUMNS = ["ndcg@10", "map@25", "mrr@10", "recall@10", "recall@100"]


@dataclass(frozen=True)
class Budget:
    max_queries: int | None
    epochs: int
    batch_size: int
    group_size: int
    learning_rate: float
    max_passage_length: int
    dev_eval: bool
    warmup_ratio: float = 0.1
    max_query_length: int = 64
    negatives: int = 15
    rank_range: str = "2-200"
    seed: int = 42


BUDGETS = {
    "cpu": Budget(max_queries=700, epochs=1, batch_size=32, group_size=2, learning_rate=5e-5, max_passage_length=128, dev_eval=False),
    "full": Budget(max_queries=None, epochs=3, batch_size=64, group_size=4, learning_rate=5e-5, max_passage_length=256, dev_eval=True),
}


# ---- steps (module-level so a spawned process can run them) ----

def step_prepare(raw: str, out: str) -> dict:
    from rtune.data.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(input=raw, output=out, split_by="group", train=0.7, dev=0.1, test=0.2, overwrite=True))


def step_mine(dataset: str, out: str, language: str, budget: Budget) -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    return mine(MineConfig(dataset=dataset, output=out, range=budget.rank_range, negatives=budget.negatives,
                           language=language, seed=budget.seed, overwrite=True))


EVAL_PASSAGE_LENGTH = 256  # every dense system is evaluated at MiniLM's full length, whatever it trained at


def step_eval(dataset: str, model: str, language: str) -> dict:
    from rtune.eval.evaluate import EvalConfig, evaluate

    return evaluate(EvalConfig(dataset=dataset, model=model, split="test", language=language, ks=[1, 5, 10, 25, 100],
                               max_passage_length=EVAL_PASSAGE_LENGTH))


def step_train(groups: str, dataset: str | None, out: str, model: str, budget: Budget, group_size: int) -> dict:
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    summary = train_bi_encoder(TrainConfig(
        groups=groups, dataset=dataset, output=out, model=model, group_size=group_size, epochs=budget.epochs,
        batch_size=budget.batch_size, learning_rate=budget.learning_rate, warmup_ratio=budget.warmup_ratio,
        max_query_length=budget.max_query_length, max_passage_length=budget.max_passage_length,
        max_queries=budget.max_queries, seed=budget.seed, overwrite=True))
    return {k: summary[k] for k in ("rows", "train_seconds", "rows_per_second", "best")}


def write_peer_pairs(groups: str, out: str, budget: Budget) -> int:
    """The exact (query, positive) pairs rtune trains on, for the peer."""
    from rtune.data.groups import read_groups, sample_groups
    from rtune.train.examples import build_rows

    chosen = sample_groups(list(read_groups(Path(groups) / "groups.jsonl")), budget.max_queries, budget.seed)
    columns = build_rows(chosen, group_size=1, seed=budget.seed).columns
    with open(out, "w", encoding="utf-8") as handle:
        for anchor, positive in zip(columns["anchor"], columns["positive"]):
            handle.write(json.dumps({"anchor": anchor, "positive": positive}, ensure_ascii=False) + "\n")
    return len(columns["anchor"])


def run_dataset(name: str, budget: Budget, work: Path, base_model: str) -> dict:
    raw, language = DATASETS[name]
    raw_path = DATA / raw
    if not raw_path.is_file():
        raise SystemExit(f"missing data: {raw_path} (set RTUNE_DATA)")
    folder = work / name
    data, mined = str(folder / "data"), str(folder / "bm25")
    print(f"\n== {name} ({raw_path}) ==", flush=True)
    steps = {"prepare": run_step("prepare", step_prepare, str(raw_path), data)}
    steps["mine_bm25"] = run_step("mine_bm25", step_mine, data, mined, language, budget)
    metrics = {"BM25": run_step("eval_bm25", step_eval, data, "bm25", language)}
    steps["eval_bm25"] = metrics["BM25"]
    metrics["base MiniLM"] = steps["eval_base"] = run_step("eval_base", step_eval, data, base_model, language)
    dev = data if budget.dev_eval else None
    steps["train_stage1"] = run_step("train_stage1", step_train, mined, dev, str(folder / "stage1"), base_model, budget, budget.group_size)
    metrics["rtune stage 1 (BM25 negatives)"] = steps["eval_stage1"] = run_step("eval_stage1", step_eval, data, str(folder / "stage1"), language)
    pairs = folder / "peer_pairs.jsonl"
    write_peer_pairs(mined, str(pairs), budget)
    from rtune.models.names import resolve_model

    # the peer is plain sentence-transformers: give it the folder the base id resolves to (no hub here)
    steps["train_peer"] = run_step("train_peer", train_peer, str(pairs), resolve_model(base_model), str(folder / "peer"), budget.epochs,
                                   budget.batch_size, budget.learning_rate, budget.warmup_ratio, budget.max_passage_length, budget.seed)
    metrics["peer: plain sentence-transformers MNRL"] = steps["eval_peer"] = run_step("eval_peer", step_eval, data, str(folder / "peer"), language)
    # throughput at equal settings: rtune on the same pairs (group size 1, no dev eval), right after the peer
    steps["train_rtune_pairs"] = run_step("train_rtune_pairs", step_train, mined, None, str(folder / "rtune_pairs"), base_model, budget, 1)
    return {
        "metrics": {system: step["value"] for system, step in metrics.items()},
        "steps": {k: {"wall_s": v["wall_s"], "peak_mb": v["peak_mb"]} for k, v in steps.items()},
        "split_sizes": steps["prepare"]["value"]["sizes"],
        "training": {"stage1": steps["train_stage1"]["value"], "peer": steps["train_peer"]["value"],
                     "rtune_pairs": steps["train_rtune_pairs"]["value"]},
    }


def render(results: dict, budget_name: str, budget: Budget, command: str, started: str, total_s: float) -> str:
    from rtune.eval.report import markdown_table

    lines = [f"## Stage 1 (`--budget {budget_name}`)", "",
             f"- date: {started}", f"- machine: {machine()}", f"- command: `{command}`",
             f"- total wall time: {total_s / 60:.1f} min",
             f"- data: SQuAD v1.1 dev and XQuAD-vi from ../shared/data, split by article 70/10/20 (seed {budget.seed}); "
             "the whole corpus is searched; figures are on the test split",
             f"- budget: {json.dumps(asdict(budget))}",
             f"- stage 1 = all-MiniLM-L6-v2 + MultipleNegativesRankingLoss with {budget.group_size - 1} BM25 negative(s) per query "
             f"(sampled from {budget.negatives} mined from ranks {budget.rank_range}) + in-batch negatives; peer = the same base, loss and hyper-parameters on the same "
             "queries with in-batch negatives only (benchmarks/peer_sentence_transformers.py)",
             f"- document text = title + text (the rtune default); every dense system is evaluated with passages of up to {EVAL_PASSAGE_LENGTH} tokens "
             "(an explicit --max-passage-length, overriding the 128 saved by training at this budget)", ""]
    for name, result in results.items():
        sizes = result["split_sizes"]
        lines += [f"### {name} (train {sizes['train']['queries']} / dev {sizes['dev']['queries']} / test {sizes['test']['queries']} queries)", "",
                  markdown_table(result["metrics"], COLUMNS), ""]
        training = result["training"]
        peer, pairs = training["peer"]["rows_per_second"], training["rtune_pairs"]["rows_per_second"]
        lines += [f"Training throughput at equal settings (pairs, {training['peer']['rows']} rows, batch {budget.batch_size}): "
                  f"rtune {pairs:.2f} pairs/s vs peer {peer:.2f} pairs/s = **{pairs / peer:.2f}x**. "
                  f"Stage 1 with {budget.group_size - 1} hard negative(s) per row: {training['stage1']['rows_per_second']:.2f} rows/s.", ""]
        lines += steps_table(result["steps"])
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out"), help="scratch folder for data and models")
    parser.add_argument("--base-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    budget = BUDGETS[args.budget]
    work = Path(args.work) / f"stage1-{args.budget}"
    # a cache of this run's own, empty at the start: every step's time is a cold machine's
    shutil.rmtree(work / "cache", ignore_errors=True)
    os.environ["RTUNE_CACHE_DIR"] = str(work / "cache")
    started, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time()
    results = {name: run_dataset(name, budget, work, args.base_model) for name in args.datasets.split(",")}
    total = time.time() - t0
    command = "python benchmarks/stage1.py " + " ".join(sys.argv[1:])
    (work / "results.json").write_text(json.dumps({"budget": asdict(budget), "results": results}, indent=2))
    text = render(results, args.budget, budget, command.strip(), started, total)
    print("\n" + text)
    if not args.no_write:
        update_results(f"stage1:{args.budget}", text)


if __name__ == "__main__":
    main()
