"""Stage `train-llm-reranker`: LoRA fine-tuning of an LLM yes-token reranker on training groups.

The objective is FlagEmbedding's reranker loss: each group is 1 positive + (group_size - 1) negatives,
every pair is scored with the logit of the "Yes" token after the prompt (exactly as `rtune score` reads
it: the same input builder and token helper), and cross-entropy over the group's scores puts the
positive first (listwise softmax). With `--dataset`, every epoch is evaluated as `rtune train-reranker`
evaluates (the same evaluator: a first stage's top candidates for the dev queries reranked, scored over the
whole corpus's qrels) and the best epoch's adapter is kept. The output is an adapter folder (plus tokenizer,
`rtune_adapter.json` naming the base and `rtune_reranker.json` with the prompt settings), which
`rtune score --teacher llm` reads as it is, or after `rtune merge`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict, Field

from rtune.data.atomic import atomic_file, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.groups import read_groups, sample_groups
from rtune.data.manifest import write_manifest
from rtune.models.adapter import require_peft, write_base_reference
from rtune.models.finite import require_finite_loss, require_finite_weights
from rtune.models.gguf import as_dense_model
from rtune.models.precision import Precision
from rtune.models.rerankers.llm import RERANKER_SETTINGS, LLMPromptOptions, LLMReranker
from rtune.stage import RERANKER, StageSpec
from rtune.train.cross_encoder import RERANKER_REFS, dev_evaluator, document_rule, reranker_defaults, training_compute
from rtune.train.cross_encoder_config import RerankerTrainConfig
from rtune.train.distributed import (
    check_processes,
    data_parallel,
    distributed,
    launch,
    mean_over_processes,
    output_folder,
    process_device,
    process_share,
    should_launch,
    unwrap,
)
from rtune.train.examples import build_rows, check_rows
from rtune.train.lora import LoraOptions, enable_gradient_checkpointing
from rtune.train.stage_checks import TrainingStageChecks
from rtune.train.summary import reranker_dev_table

log = logging.getLogger(__name__)
_RERANKER_FIELDS = RerankerTrainConfig.model_fields


class LLMRerankerTrainConfig(LLMPromptOptions, LoraOptions, TrainingStageChecks):
    """Everything `rtune train-llm-reranker` needs (LoRA options as for `rtune train`; a rank is required)."""

    model_config = ConfigDict(extra="forbid")
    NEUTRAL: ClassVar[frozenset[str]] = frozenset({"processes"})

    groups: Path = Field(description="training groups: a groups.jsonl or a `rtune mine` output folder")
    output: Path = Field(description="folder for the adapter (merge it with `rtune merge`)")
    model: str = Field(description="causal LM to fine-tune: folder, hub id, or a folder holding --gguf-file")
    gguf_file: str | None = Field(None, description="GGUF file inside --model")
    lora_rank: int = Field(8, ge=1, description="LoRA rank of the adapter")
    group_size: int = Field(8, ge=2, description="pairs per group: 1 positive + (group_size - 1) negatives")
    epochs: int = Field(1, ge=1, description="passes over the groups")
    batch_size: int = Field(4, ge=1, description="groups per optimiser step")
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps with a linear warm-up")
    max_length: int = Field(512, ge=8, description="tokens of query + passage (the prompt is added on top)")
    max_queries: int | None = Field(None, ge=1, description="cap on training groups (a seeded sample)")
    allow_collapsed: bool = Field(False, description="train even when most queries have no (allowed) negative")
    processes: int = Field(1, ge=1, description="train on this many processes (GPUs; on CPU, gloo processes) under torchrun, "
                           "each taking an equal share of every batch of groups")
    # the dev evaluation of `rtune train-reranker`, declared once there
    dataset: Path | None = _RERANKER_FIELDS["dataset"]
    dev_split: str = _RERANKER_FIELDS["dev_split"]
    first_stage: str = _RERANKER_FIELDS["first_stage"]
    rerank_top: int = _RERANKER_FIELDS["rerank_top"]
    language: str = _RERANKER_FIELDS["language"]
    metric_for_best: str = _RERANKER_FIELDS["metric_for_best"]
    eval_batch_size: int = _RERANKER_FIELDS["eval_batch_size"]
    use_title: bool | None = _RERANKER_FIELDS["use_title"]
    precision: Precision = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU")
    device: str | None = Field(None, description="cpu, cuda... [default: cuda when visible]")
    seed: int = Field(42, description="seed for sampling and training")
    overwrite: bool = Field(False, description="replace an existing --output")


def group_loss(teacher, batch: list[tuple[str, str, list[str]]]):
    """Listwise cross-entropy of the yes-token logits: (groups, group_size) scores, the positive at column 0."""
    import torch

    rows = [teacher.input_ids(q, p) for q, pos, negs in batch for p in (pos, *negs)]
    ids, mask, positions = teacher._batch(rows)  # each (groups * group_size, longest), left-padded
    logits = teacher.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    scores = logits[:, -1, teacher.yes_id].float().view(len(batch), -1)  # (groups, group_size)
    target = torch.zeros(len(batch), dtype=torch.long, device=scores.device)  # the positive is column 0
    return torch.nn.functional.cross_entropy(scores, target)


def trainable_reranker(config: LLMRerankerTrainConfig):
    """The scoring-stage reranker with a fresh trainable LoRA adapter on its causal LM."""
    peft = require_peft()
    teacher = LLMReranker(config.model, device=config.device, precision=config.precision, max_length=config.max_length,
                                 query_prefix=config.query_prefix, passage_prefix=config.passage_prefix,
                                 separator=config.separator, prompt=config.prompt, yes_word=config.yes_word,
                                 gguf_file=config.gguf_file, batch_size=config.eval_batch_size)
    as_dense_model(teacher.model)  # a GGUF base: dequantised weights, no quantizer left to refuse training
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(teacher.model)
    teacher.model = peft.get_peft_model(teacher.model, config.lora_config(task_type="CAUSAL_LM"))
    return teacher


def train_llm_reranker(config: LLMRerankerTrainConfig) -> dict:
    """Train the adapter and save it at `config.output`; returns a summary with the loss per step and, with
    `config.dataset`, the dev history (the start, then each epoch), the best epoch (the one saved) and the
    first stage's own dev metrics."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    check_processes(config.processes, config.batch_size, config.device)
    if should_launch(config.processes):  # this process starts `processes` trainers under torchrun, and waits
        return launch("train-llm-reranker", config, config.processes)
    groups = sample_groups(list(read_groups(config.groups_file())), config.max_queries, config.seed)
    # the rows bi-encoder and cross-encoder training use: one positive per query per epoch, cycling, and negatives
    # drawn afresh each epoch among those the miner allowed for that positive (neg_valid_pos); collapse is an error
    rows = build_rows(groups, config.group_size, config.seed, config.epochs, positives="sample")
    check_rows(rows, config.group_size, config.allow_collapsed, str(config.groups_file()))
    evaluator, first_dev = None, {}
    if config.dataset is not None:  # the first stage ranks the dev queries once, before any model loads
        evaluator, first_dev = dev_evaluator(config, read_beir(config.dataset), document_rule(config))
    else:
        log.info("no --dataset given: no dev evaluation; the last epoch is kept")
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    teacher = trainable_reranker(config.model_copy(update={"device": process_device(config.device)}))
    if distributed():  # every process takes its share of each batch; DDP averages the gradients
        teacher.model = data_parallel(teacher.model)
    steps_per_epoch = -(-rows.rows_per_epoch // config.batch_size)
    optimizer = torch.optim.AdamW([p for p in teacher.model.parameters() if p.requires_grad], lr=config.learning_rate)
    total = steps_per_epoch * config.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    losses: list[float] = []
    base_dev = _evaluate(teacher, evaluator, 0, 0) if evaluator else {}
    best, kept = None, None  # the best epoch's history entry and its adapter weights
    train_started = time.time()
    negatives = [c for c in rows.columns if c.startswith("negative_")]
    for epoch in range(1, config.epochs + 1):
        teacher.model.train()
        block = range((epoch - 1) * rows.rows_per_epoch, epoch * rows.rows_per_epoch)  # this epoch's rows
        order = rng.sample(list(block), len(block))
        for start in range(0, len(order), config.batch_size):
            share = process_share(order[start:start + config.batch_size])
            if not share:  # a tail too short to split across the processes
                continue
            batch = [(rows.columns["anchor"][i], rows.columns["positive"][i], [rows.columns[c][i] for c in negatives])
                     for i in share]
            loss = group_loss(teacher, batch)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(round(mean_over_processes(float(loss.detach())), 5))
            require_finite_loss(losses[-1], len(losses), total, config.output)
        log.info("epoch %d done: mean loss %.4f", epoch, sum(losses[-steps_per_epoch:]) / steps_per_epoch)
        if evaluator is not None:
            entry = _evaluate(teacher, evaluator, epoch, len(losses))
            if best is None or entry[config.metric_for_best] > best[config.metric_for_best]:
                best, kept = entry, adapter_weights(teacher.model)
    train_seconds = time.time() - train_started
    teacher.model.eval()
    history = evaluator.history if evaluator else []
    if best is not None:
        restore_weights(teacher.model, kept)
        log.info("kept epoch %g: dev %s %.4f", best["epoch"], config.metric_for_best, best[config.metric_for_best])
        if best[config.metric_for_best] <= first_dev[config.metric_for_best]:
            log.warning("the best epoch's reranking (%s=%.4f) does not beat the first stage alone on dev (%.4f)",
                        config.metric_for_best, best[config.metric_for_best], first_dev[config.metric_for_best])
    summary = {"groups": len(groups), "rows": rows.counts, "steps": len(losses), "losses": losses, "train_seconds": round(train_seconds, 2),
               "dev_history": history, "best": best,
               "base_dev": {k.removeprefix("dev_"): v for k, v in base_dev.items()},
               "first_stage": {"ranker": config.first_stage, "rerank_top": config.rerank_top, "dev": first_dev} if evaluator else None}
    teacher.model = unwrap(teacher.model)
    require_finite_weights(teacher.model, "the trained reranker", config.output)
    with output_folder(config.output, config.overwrite) as tmp:
        save_reranker_adapter(teacher, config, tmp)
        write_manifest(tmp, "train-llm-reranker", config.model_dump(mode="json"), [config.groups_file()], started, summary,
                       name="rtune_manifest.json")
    return summary


def _evaluate(teacher, evaluator, epoch: int, steps: int) -> dict:
    """The dev evaluation of the model as it is now (eval mode: no dropout); returns the history entry it adds."""
    teacher.model.eval()
    evaluator(teacher, epoch=epoch, steps=steps)
    return evaluator.history[-1]


def adapter_weights(model) -> dict:
    """A copy of the trainable (adapter) weights: {name: tensor}."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def restore_weights(model, weights: dict) -> None:
    """Put back the weights copied by adapter_weights."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in weights:
                p.copy_(weights[name])


def save_reranker_adapter(teacher, config: LLMRerankerTrainConfig, folder: Path) -> None:
    """Adapter + tokenizer + base reference + the prompt settings the scores depend on."""
    teacher.model.save_pretrained(str(folder))
    teacher.tokenizer.save_pretrained(str(folder))
    write_base_reference(folder, str(Path(config.model) / config.gguf_file) if config.gguf_file else config.model)
    settings = {k: v for k, v in teacher.settings().items() if k not in ("model", "gguf_file", "dtype")}
    with atomic_file(folder / RERANKER_SETTINGS) as handle:
        handle.write(json.dumps(settings, indent=2) + "\n")


def summary(config: LLMRerankerTrainConfig, result: dict) -> list:
    """The terminal's dev table and closing line after `rtune train-llm-reranker`."""
    table = reranker_dev_table(config, result)
    return [*([table] if table is not None else []),
            f"adapter saved to {config.output} ({result['steps']} steps, last loss {result['losses'][-1]:.4f}); "
            f"score with it: rtune score --model {config.output}, or merge it: rtune merge {config.output} --output MERGED"]


TRAIN_LLM_RERANKER = StageSpec(
    name="train-llm-reranker", config=LLMRerankerTrainConfig, run=train_llm_reranker, produces=RERANKER,
    help="Fine-tune an LLM yes-token reranker with LoRA on training groups (listwise over each group).",
    refs=RERANKER_REFS, defaults=reranker_defaults, compute=training_compute, summary=summary,
)
