"""Stage `train`: fine-tune a bi-encoder on training groups with sentence-transformers' trainer."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.groups import read_groups
from rtune.data.manifest import path_fingerprint, write_manifest
from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, metric_names
from rtune.models.loading import display_name, load_bi_encoder
from rtune.train.config import TrainConfig
from rtune.train.examples import build_rows, sample_queries
from rtune.train.losses import build_loss
from rtune.train.precision import precision_flags

log = logging.getLogger(__name__)


def _training_arguments(config: TrainConfig, checkpoints: Path, has_dev: bool):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    strategy = "epoch" if has_dev else "no"
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio in Transformers v5
        seed=config.seed,
        data_seed=config.seed,
        # In-batch negatives must not be positives in disguise: no batch holds a text twice (any column).
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy=strategy,
        save_strategy="epoch" if has_dev else "no",
        load_best_model_at_end=has_dev,
        metric_for_best_model=f"eval_dev_{config.metric_for_best}" if has_dev else None,
        greater_is_better=True,
        save_total_limit=1 if has_dev else None,
        save_only_model=True,
        logging_steps=10,
        report_to="none",
        disable_tqdm=False,
        use_cpu=config.device == "cpu",
        **precision_flags(config.precision, config.device),
    )


def build_trainer(config: TrainConfig, model, columns: dict[str, list[str]], checkpoints: Path, evaluator=None):
    """The sentence-transformers trainer rtune runs: no-duplicates batches, per-column max lengths, our loss."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer

    from rtune.train.collator import QueryPassageCollator

    collator = QueryPassageCollator(preprocess_fn=model.preprocess, query_length=config.max_query_length,
                                    passage_length=config.max_passage_length, prompts=_prompts(config, columns))
    return SentenceTransformerTrainer(
        model=model, args=_training_arguments(config, checkpoints, evaluator is not None),
        train_dataset=Dataset.from_dict(columns), loss=build_loss(model, config), evaluator=evaluator,
        data_collator=collator,
    )


def train_bi_encoder(config: TrainConfig) -> dict:
    """Train, keep the best epoch by the dev metric, save a sentence-transformers folder at `config.output`.

    Returns a summary: rows, dev history, best epoch, throughput.
    """
    from rtune.train.evaluator import RetrievalDevEvaluator

    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    groups = sample_queries(list(read_groups(config.groups_file())), config.max_queries, config.seed)
    columns, counts = build_rows(groups, config.group_size, config.seed)
    if counts["rows"] == 0:
        raise ValueError(f"no training rows from {config.groups_file()}: every query lacks negatives "
                         f"(use --group-size 1 for in-batch negatives only)")
    if counts["rows"] < config.batch_size:
        log.warning("only %d training rows for a batch size of %d", counts["rows"], config.batch_size)
    dataset = read_beir(config.dataset) if config.dataset else None
    model = load_bi_encoder(config.model, config.device)
    evaluator = None
    if dataset is not None:
        family, k = config.metric_for_best.split("@")
        names = metric_names(dict.fromkeys([*DEFAULT_METRICS, family]), sorted(set(DEFAULT_KS) | {int(k)}))
        evaluator = RetrievalDevEvaluator(dataset, config.dev_split, names, primary=config.metric_for_best,
                                          query_prompt=config.query_prompt, document_prompt=config.document_prompt)
    else:
        log.info("no --dataset given: no dev evaluation; the last epoch is kept")
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
        base_dev = evaluator(model, epoch=0, steps=0) if evaluator else {}
        trainer = build_trainer(config, model, columns, tmp / "checkpoints", evaluator)
        train_started = time.time()
        output = trainer.train()
        train_seconds = time.time() - train_started
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        _save_prompts(model, config)
        model.save(str(tmp))
        history = evaluator.history if evaluator else []
        best = max(history[1:], key=lambda h: h[config.metric_for_best]) if len(history) > 1 else None
        summary = {
            "rows": counts,
            "train_seconds": round(train_seconds, 2),
            "train_runtime": output.metrics.get("train_runtime"),
            "rows_per_second": round(counts["rows"] * config.epochs / train_seconds, 3),
            "dev_history": history,
            "best": best,
            "base_dev": {k.removeprefix("dev_"): v for k, v in base_dev.items()},
        }
        if best and base_dev and best[config.metric_for_best] <= summary["base_dev"][config.metric_for_best]:
            log.warning("the best epoch (%s=%.4f) does not beat the base model on dev (%.4f)", config.metric_for_best,
                        best[config.metric_for_best], summary["base_dev"][config.metric_for_best])
        from rtune.train.model_card import append_lineage

        append_lineage(tmp, {**summary, "base_model": display_name(config.model), "config": config.model_dump(mode="json"),
                             "groups": path_fingerprint(config.groups_file()), "dataset": str(config.dataset or ""),
                             "dev_split": config.dev_split, "metric_for_best": config.metric_for_best})
        inputs = [config.groups_file()] + ([config.dataset] if config.dataset else [])
        write_manifest(tmp, "train", config.model_dump(mode="json"), inputs, started, summary, name="rtune_manifest.json")
    return summary


def _save_prompts(model, config: TrainConfig) -> None:
    """Keep the prompts the model was trained with, so every later stage applies them without flags."""
    prompts = dict(getattr(model, "prompts", None) or {})
    if config.query_prompt:
        prompts["query"] = config.query_prompt
    if config.document_prompt:
        prompts["document"] = config.document_prompt
    if prompts:
        model.prompts = prompts


def _prompts(config: TrainConfig, columns: dict) -> dict[str, str] | None:
    """Per-column prompts: the query prompt for the anchor, the document prompt for the rest."""
    prompts = {}
    for column in columns:
        prompt = config.query_prompt if column == "anchor" else config.document_prompt
        if prompt:
            prompts[column] = prompt
    return prompts or None
