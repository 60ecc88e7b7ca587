"""Stage `train`: fine-tune a bi-encoder on training groups with sentence-transformers' trainer."""

from __future__ import annotations

import functools
import logging
import shutil
import time
from pathlib import Path

from rtune.data.atomic import ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.groups import read_groups, sample_groups
from rtune.data.manifest import read_manifest
from rtune.errors import InputError
from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, metric_names
from rtune.models.finite import require_finite_weights
from rtune.models.names import display_name, resolve_model
from rtune.models.precision import compute_identity
from rtune.models.settings import EncoderSettings
from rtune.stage import BASE, DATASET, GROUPS, MODEL, StageSpec
from rtune.train import checkpointing
from rtune.train.config import DEFAULT_PASSAGE_LENGTH, DEFAULT_QUERY_LENGTH, TrainConfig
from rtune.train.distributed import (
    check_processes,
    discard_shared_checkpoints,
    launch,
    output_folder,
    should_launch,
    trainer_arguments,
    with_shared_checkpoints,
)
from rtune.train.examples import TrainingRows, build_rows, check_rows, no_conflicts
from rtune.train.icl import with_icl_sample
from rtune.train.lora import apply_lora, save_base_reference, use_adapter_checkpoints
from rtune.train.losses import build_loss, needs_teacher_scores, uses_in_batch_negatives
from rtune.train.model_card import record_lineage
from rtune.train.progress import concise_progress
from rtune.train.summary import dev_table
from rtune.train.teacher_scores import groups_teacher, require_teacher_scores
from rtune.train.training_arguments import shared_training_arguments

log = logging.getLogger(__name__)


def _training_arguments(config: TrainConfig, checkpoints: Path, has_dev: bool, rows: TrainingRows):
    from sentence_transformers import SentenceTransformerTrainingArguments

    from rtune.train.batch_sampler import KnownPositiveBatchSampler

    return SentenceTransformerTrainingArguments(
        per_device_eval_batch_size=config.batch_size,
        # In-batch negatives must not be positives in disguise: no batch holds a passage twice, nor a
        # known positive of any row's query; epoch e trains on its own block of rows (fresh negatives).
        # A loss over each row's own group alone (kl, margin_mse, mean_margin) has no such conflict.
        batch_sampler=functools.partial(KnownPositiveBatchSampler, rows_per_epoch=rows.rows_per_epoch, blocks=rows.epochs,
                                        keys=rows.keys if uses_in_batch_negatives(config) else no_conflicts(rows.keys)),
        **shared_training_arguments(config, checkpoints, has_dev, -(-rows.rows_per_epoch // config.batch_size) * config.epochs),
        **trainer_arguments(config.processes, config.device),
    )


def training_settings(config: TrainConfig, model, groups_manifest: dict) -> EncoderSettings:
    """The encoder settings training applies and saves: options, else the start model's saved ones, else
    the defaults (64-token queries, passages up to 256 tokens); the document rule of the groups' miner."""
    settings = config.resolve_settings(resolve_model(config.model), model)
    mined_rule = (groups_manifest.get("config") or {}).get("document_text", {}).get("use_title")
    if mined_rule is not None and config.use_title is None:
        settings = settings.override(use_title=mined_rule)
    elif mined_rule is not None and mined_rule != settings.use_title:
        raise InputError(f"the groups were mined with use_title={mined_rule} but training uses --use-title={settings.use_title}: "
                         "the model would be evaluated on other document texts than it was trained on", config.groups_file())
    passage_cap = min(DEFAULT_PASSAGE_LENGTH, model.max_seq_length or DEFAULT_PASSAGE_LENGTH)
    return settings.override(max_query_length=settings.max_query_length or DEFAULT_QUERY_LENGTH,
                             max_passage_length=settings.max_passage_length or passage_cap)


def build_trainer(config: TrainConfig, model, rows: TrainingRows, checkpoints: Path, settings: EncoderSettings,
                  evaluator=None):
    """The sentence-transformers trainer rtune runs: conflict-free batches, per-column max lengths, our loss."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer

    from rtune.train.collator import query_passage_collator

    columns = dict(rows.columns)
    columns["anchor"] = [settings.format_query(q) for q in columns["anchor"]]
    prompts = {c: (settings.query_prompt if c == "anchor" else settings.document_prompt) for c in columns if c != "label"}
    collator = query_passage_collator(model.preprocess, list(columns), settings.max_query_length, settings.max_passage_length,
                                      prompts={c: p for c, p in prompts.items() if p} or None)
    return SentenceTransformerTrainer(
        model=model, args=_training_arguments(config, checkpoints, evaluator is not None, rows),
        train_dataset=Dataset.from_dict(columns), loss=build_loss(model, config), evaluator=evaluator,
        data_collator=collator,
    )


def train_bi_encoder(config: TrainConfig) -> dict:
    """Train, keep the best epoch by the dev metric, save a sentence-transformers folder at `config.output`
    with its encoder settings (`rtune_encoder.json`). Returns a summary: rows, dev history, best epoch."""
    from rtune.train.evaluator import RetrievalDevEvaluator

    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    check_processes(config.processes, config.batch_size, config.device)
    if should_launch(config.processes):  # this process starts `processes` trainers under torchrun, and waits
        return launch("train", config, config.processes)
    config = with_shared_checkpoints(config)
    resume, _ = checkpointing.prepare(config)  # a missing, damaged or foreign checkpoint fails before any model loads
    groups = list(read_groups(config.groups_file()))
    distil = needs_teacher_scores(config.loss)
    if distil:
        require_teacher_scores(groups, config.groups_file(), config.loss, config.teacher_scores)  # before any model loads
    groups = sample_groups(groups, config.max_queries, config.seed)
    rows = build_rows(groups, config.group_size, config.seed, config.epochs, config.positives, teacher_scores=distil,
                      rows_like_group_size=config.rows_like_group_size)
    check_rows(rows, config.group_size, config.allow_collapsed, str(config.groups_file()))
    counts = rows.counts
    log.info("%d training rows per epoch from %d queries and %d positives (%s positives, fresh negatives each epoch)",
             rows.rows_per_epoch, counts["queries"], counts["positives"], config.positives)
    if rows.rows_per_epoch < config.batch_size:
        log.warning("only %d training rows for a batch size of %d", rows.rows_per_epoch, config.batch_size)
    dataset = read_beir(config.dataset) if config.dataset else None
    if dataset is not None:
        dataset.require_split(config.dev_split)
    model = apply_lora(config.load_model(config.model), config, config.model, config.seed)  # pooling/EOS/dtype; --lora-rank
    settings = training_settings(config, model, read_manifest(config.groups_file().parent))
    settings = with_icl_sample(settings, groups, config.icl_sample, config.seed, model.tokenizer)
    evaluator = None
    if dataset is not None:
        family, k = config.metric_for_best.split("@")
        names = metric_names(dict.fromkeys([*DEFAULT_METRICS, family]), sorted(set(DEFAULT_KS) | {int(k)}))
        evaluator = RetrievalDevEvaluator(dataset, config.dev_split, names, primary=config.metric_for_best,
                                          settings=settings, batch_size=config.encode_batch_size)
    else:
        log.info("no --dataset given: no dev evaluation; the last epoch is kept")
    with output_folder(config.output, config.overwrite) as tmp:
        if evaluator:
            log.info("dev evaluation of the starting model (%s) on '%s'", display_name(config.model), config.dev_split)
        base_dev = evaluator(model, epoch=0, steps=0) if evaluator else {}
        if base_dev:
            log.info("start: dev %s %.4f", config.metric_for_best, base_dev[f"dev_{config.metric_for_best}"])
        _set_widget(model, rows)
        trainer = build_trainer(config, model, rows, config.checkpoint_dir or tmp / "checkpoints", settings, evaluator)
        concise_progress(trainer, config.metric_for_best)
        use_adapter_checkpoints(trainer)
        checkpointing.save_every(trainer, config.save_steps)
        train_started = time.time()
        output, resume, steps_run = checkpointing.run(trainer, resume)
        train_seconds = time.time() - train_started
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        require_finite_weights(model, "the trained model", config.output)
        _save_prompts(model, settings)
        model.save(str(tmp))
        save_base_reference(tmp, model, config.model)
        settings.save(tmp)
        history = checkpointing.with_restored_history(evaluator.history, resume) if evaluator else []
        best = max(history[1:], key=lambda h: h[config.metric_for_best]) if len(history) > 1 else None
        summary = {
            "rows": counts,
            "train_seconds": round(train_seconds, 2),
            "train_runtime": output.metrics.get("train_runtime"),
            "rows_per_second": round(rows.rows_per_epoch * config.epochs / train_seconds, 3),
            "dev_history": history,
            "best": best,
            "base_dev": {k.removeprefix("dev_"): v for k, v in base_dev.items()},
            "encoder_settings": settings.as_dict(),
            "loss": config.loss,
            "teacher": groups_teacher(config.groups_file()) if distil else None,
            **checkpointing.training_record(trainer, resume, steps_run),
        }
        if best and base_dev and best[config.metric_for_best] <= summary["base_dev"][config.metric_for_best]:
            log.warning("the best epoch (%s=%.4f) does not beat the starting model on dev (%.4f)", config.metric_for_best,
                        best[config.metric_for_best], summary["base_dev"][config.metric_for_best])
        record_lineage(tmp, "train", config, summary, started)
    discard_shared_checkpoints(config)
    return summary


def _set_widget(model, rows: TrainingRows) -> None:
    """The model card's widget from the first training rows (sentence-transformers would otherwise sample and
    sort the dataset under a "Computing widget examples" bar)."""
    columns = rows.columns
    texts = [c for c in columns if c not in ("anchor", "label")]
    model.model_card_data.widget = [{"source_sentence": columns["anchor"][i], "sentences": [columns[c][i] for c in texts]}
                                    for i in range(min(5, len(columns["anchor"])))]


def _save_prompts(model, settings: EncoderSettings) -> None:
    """Keep the prompts in sentence-transformers' own config too, so `SentenceTransformer(path)` users get them."""
    prompts = dict(getattr(model, "prompts", None) or {})
    for key, value in (("query", settings.query_prompt), ("document", settings.document_prompt)):
        if value:
            prompts[key] = value
        else:
            prompts.pop(key, None)
    model.prompts = prompts


def summary(config: TrainConfig, result: dict) -> list:
    """The terminal's dev table and closing line after `rtune train`."""
    table = dev_table(config, result, f"dev metrics ({config.dev_split}); all metrics in {config.output}/rtune_manifest.json")
    return [*([table] if table is not None else []),
            f"model saved to {config.output} ({result['rows']['rows']} rows, {result['rows_per_second']:.2f} rows/s)"]


TRAIN = StageSpec(
    name="train", config=TrainConfig, run=train_bi_encoder, produces=MODEL,
    help="Fine-tune a bi-encoder on training groups (dev-evaluated every epoch).",
    refs={"dataset": DATASET, "groups": GROUPS, "model": MODEL},
    defaults=lambda settings: {"dataset": DATASET, "groups": GROUPS, "model": BASE},
    compute=lambda config: compute_identity(config.device, config.precision),
    panels={
        "Input": ("groups", "dataset", "dev_split", "model", "max_queries", "metric_for_best"),
        "Encoder": ("*encoder",),
        "Checkpoints and resumption": ("checkpoint_dir", "save_steps", "resume_from_checkpoint"),
        "Output": ("output", "overwrite"),
    },
    summary=summary,
)
