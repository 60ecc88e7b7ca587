"""Stage `train-llm-reranker`: LoRA fine-tuning of an LLM yes-token reranker on training groups.

The objective is FlagEmbedding's reranker loss: each group is 1 positive + (group_size - 1) negatives,
every pair is scored with the logit of the "Yes" token after the prompt (exactly as `rtune score` reads
it: the same input builder and token helper), and cross-entropy over the group's scores puts the
positive first (listwise softmax). The output is an adapter folder (plus tokenizer, `rtune_adapter.json`
naming the base and `rtune_reranker.json` with the prompt settings); `rtune merge` makes it a full model
that `rtune score --teacher llm` reads.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

from pydantic import ConfigDict, Field

from rtune.score.config import ScoreConfig
from rtune.score.dtype import Precision
from rtune.train.lora import LoraOptions

log = logging.getLogger(__name__)
_SCORE_FIELDS = ScoreConfig.model_fields


class LLMRerankerTrainConfig(LoraOptions):
    """Everything `rtune train-llm-reranker` needs (LoRA options as for `rtune train`; a rank is required)."""

    model_config = ConfigDict(extra="forbid")

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
    # the prompt options of `rtune score`, declared once there: what training reads is what scoring reads
    query_prefix: str = _SCORE_FIELDS["query_prefix"]
    passage_prefix: str = _SCORE_FIELDS["passage_prefix"]
    separator: str = _SCORE_FIELDS["separator"]
    prompt: str = _SCORE_FIELDS["prompt"]
    yes_word: str = _SCORE_FIELDS["yes_word"]
    max_queries: int | None = Field(None, ge=1, description="cap on training groups (a seeded sample)")
    precision: Precision = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU")
    device: str | None = Field(None, description="cpu, cuda... [default: cuda when visible]")
    seed: int = Field(42, description="seed for sampling and training")
    overwrite: bool = Field(False, description="replace an existing --output")

    def groups_file(self) -> Path:
        from rtune.data.groups import groups_path

        return groups_path(self.groups)


def sample_group(group, size: int, rng: random.Random) -> tuple[str, list[str]]:
    """One positive and `size - 1` negatives (drawn with replacement when the group has fewer)."""
    positive = rng.choice(group.pos)
    negatives = list(group.neg)
    picked = rng.sample(negatives, size - 1) if len(negatives) >= size - 1 else [rng.choice(negatives) for _ in range(size - 1)]
    return positive, picked


def group_loss(teacher, batch: list[tuple[str, str, list[str]]]):
    """Listwise cross-entropy of the yes-token logits: (groups, group_size) scores, the positive at column 0."""
    import torch

    rows = [teacher.input_ids(q, p) for q, pos, negs in batch for p in (pos, *negs)]
    ids, mask, positions = teacher._batch(rows)  # each (groups * group_size, longest), left-padded
    logits = teacher.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    scores = logits[:, -1, teacher.yes_id].float().view(len(batch), -1)  # (groups, group_size)
    target = torch.zeros(len(batch), dtype=torch.long, device=scores.device)  # the positive is column 0
    return torch.nn.functional.cross_entropy(scores, target)


def build_teacher(config: LLMRerankerTrainConfig):
    """The scoring-stage reranker with a fresh trainable LoRA adapter on its causal LM."""
    from rtune.models.adapter import require_peft
    from rtune.models.gguf import as_dense_model
    from rtune.score.llm import LLMRerankerTeacher
    from rtune.train.lora import enable_gradient_checkpointing

    peft = require_peft()
    teacher = LLMRerankerTeacher(config.model, device=config.device, precision=config.precision, max_length=config.max_length,
                                 query_prefix=config.query_prefix, passage_prefix=config.passage_prefix,
                                 separator=config.separator, prompt=config.prompt, yes_word=config.yes_word,
                                 gguf_file=config.gguf_file)
    as_dense_model(teacher.model)  # a GGUF base: dequantised weights, no quantizer left to refuse training
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(teacher.model)
    teacher.model = peft.get_peft_model(teacher.model, config.lora_config(task_type="CAUSAL_LM"))
    return teacher


def train_llm_reranker(config: LLMRerankerTrainConfig) -> dict:
    """Train the adapter and save it at `config.output`; returns a summary with the loss per step."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from rtune.data.atomic import atomic_dir, ensure_new_output
    from rtune.data.groups import read_groups
    from rtune.data.manifest import write_manifest
    from rtune.errors import InputError
    from rtune.train.examples import sample_queries

    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    groups = [g for g in sample_queries(list(read_groups(config.groups_file())), config.max_queries, config.seed) if g.neg]
    if not groups:
        raise InputError("no training group has a negative: the listwise loss needs at least one", config.groups_file())
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    teacher = build_teacher(config)
    steps_per_epoch = -(-len(groups) // config.batch_size)
    optimizer = torch.optim.AdamW([p for p in teacher.model.parameters() if p.requires_grad], lr=config.learning_rate)
    total = steps_per_epoch * config.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    losses: list[float] = []
    teacher.model.train()
    for _ in range(config.epochs):
        order = rng.sample(range(len(groups)), len(groups))
        for start in range(0, len(order), config.batch_size):
            batch = [(groups[i].query, *sample_group(groups[i], config.group_size, rng)) for i in order[start:start + config.batch_size]]
            loss = group_loss(teacher, batch)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(round(float(loss.detach()), 5))
        log.info("epoch done: mean loss %.4f", sum(losses[-steps_per_epoch:]) / steps_per_epoch)
    teacher.model.eval()
    summary = {"groups": len(groups), "steps": len(losses), "losses": losses, "train_seconds": round(time.time() - started, 2)}
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
        save_reranker_adapter(teacher, config, tmp)
        write_manifest(tmp, "train-llm-reranker", config.model_dump(mode="json"), [config.groups_file()], started, summary,
                       name="rtune_manifest.json")
    return summary


def save_reranker_adapter(teacher, config: LLMRerankerTrainConfig, folder: Path) -> None:
    """Adapter + tokenizer + base reference + the prompt settings the scores depend on."""
    from rtune.data.atomic import atomic_file
    from rtune.models.adapter import write_base_reference
    from rtune.models.merge import RERANKER_SETTINGS

    teacher.model.save_pretrained(str(folder))
    teacher.tokenizer.save_pretrained(str(folder))
    write_base_reference(folder, str(Path(config.model) / config.gguf_file) if config.gguf_file else config.model)
    settings = {k: v for k, v in teacher.settings().items() if k not in ("model", "gguf_file", "dtype")}
    with atomic_file(folder / RERANKER_SETTINGS) as handle:
        handle.write(json.dumps(settings, indent=2) + "\n")
