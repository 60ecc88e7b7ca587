"""Stage `train-reranker`: fine-tune a cross-encoder on training groups with sentence-transformers'
CrossEncoder trainer; dev evaluation reranks a first stage's top candidates every epoch; best epoch kept."""

from __future__ import annotations

import functools
import logging
import shutil
import time
from pathlib import Path

from rtune.data.atomic import ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.dataset import RetrievalDataset
from rtune.data.groups import read_groups, sample_groups
from rtune.data.manifest import read_manifest
from rtune.data.text import document_text
from rtune.errors import InputError
from rtune.eval.evaluate import EvalConfig, build_ranker, evaluate_ranker
from rtune.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, metric_names
from rtune.models.finite import require_finite_weights
from rtune.models.names import check_model_name, resolve_model
from rtune.models.precision import compute_identity
from rtune.stage import DATASET, GROUPS, MODEL, RERANKER, StageSpec
from rtune.train import checkpointing
from rtune.train.cross_encoder_config import RerankerTrainConfig
from rtune.train.distributed import (
    check_processes,
    discard_shared_checkpoints,
    launch,
    output_folder,
    should_launch,
    trainer_arguments,
    with_shared_checkpoints,
)
from rtune.train.examples import RowKeys, build_rows, check_rows, no_conflicts
from rtune.train.model_card import record_lineage
from rtune.train.progress import concise_progress
from rtune.train.reranker_losses import IN_BATCH, LAYOUTS, build_reranker_loss
from rtune.train.reranker_rows import reranker_columns
from rtune.train.summary import reranker_dev_table
from rtune.train.training_arguments import shared_training_arguments

log = logging.getLogger(__name__)


def load_reranker_base(name: str, max_length: int, device: str | None = None, seed: int = 42):
    """A one-logit CrossEncoder from a cross-encoder (its head kept) or an encoder (a new head, seeded)."""
    from sentence_transformers import CrossEncoder
    from transformers import set_seed

    resolved = resolve_model(name)
    check_model_name(resolved)
    path = Path(resolved)
    if path.is_dir() and not any(path.iterdir()):
        raise InputError("model folder is empty", resolved)
    set_seed(seed)  # the initial weights of a new head
    try:
        model = CrossEncoder(resolved, num_labels=1, max_length=max_length, device=device)
    except Exception as err:  # the loaders raise many types (OSError, ValueError, size mismatches...)
        raise InputError(f"model does not load as a one-score cross-encoder: {type(err).__name__}: {err}", resolved) from err
    positions = getattr(model.config, "max_position_embeddings", None) or max_length
    model.max_seq_length = min(max_length, positions)  # never past the position table
    return model


def document_rule(config: RerankerTrainConfig) -> bool:
    """use_title: the option, else the rule the groups were mined with, else on (the rtune default)."""
    if config.use_title is not None:
        return config.use_title
    mined = (read_manifest(config.groups_file().parent).get("config") or {}).get("document_text", {}).get("use_title")
    return True if mined is None else bool(mined)


def dev_evaluator(config: RerankerTrainConfig, dataset: RetrievalDataset, use_title: bool):
    """(evaluator, first-stage dev metrics): the first stage ranks the dev queries once, `rtune eval`'s way."""
    from rtune.train.rerank_evaluator import RerankDevEvaluator

    family, k = config.metric_for_best.split("@")
    names = metric_names(dict.fromkeys([*DEFAULT_METRICS, family]), sorted(set(DEFAULT_KS) | {int(k)}))
    first = EvalConfig(dataset=config.dataset, model=config.first_stage, split=config.dev_split, language=config.language,
                       use_title=use_title, device=config.device, encode_batch_size=config.eval_batch_size)
    means, _, run = evaluate_ranker(build_ranker(first, dataset), dataset, config.dev_split, names, depth=config.rerank_top)
    log.info("first stage %s on %s: %s", config.first_stage, config.dev_split,
             ", ".join(f"{m}={means[m]:.4f}" for m in names if m.endswith("@10")))
    queries = {qid: q.text for qid, q in dataset.split_queries(config.dev_split).items()}
    texts = {doc_id: document_text(dataset.corpus[doc_id], use_title) for docs in run.values() for doc_id in docs}
    evaluator = RerankDevEvaluator(run, queries, texts, dataset.require_split(config.dev_split), names,
                                   primary=config.metric_for_best, top_k=config.rerank_top, batch_size=config.eval_batch_size)
    return evaluator, means


def _training_arguments(config: RerankerTrainConfig, checkpoints: Path, has_dev: bool, per_epoch: int, keys: list[RowKeys]):
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    from rtune.train.batch_sampler import KnownPositiveBatchSampler

    # epoch e trains on its own block of rows (fresh negatives), shuffled; with in-batch negatives (mnrl) no batch
    # holds a passage twice or another row's known positive
    sampler = functools.partial(KnownPositiveBatchSampler, keys=keys, rows_per_epoch=per_epoch, blocks=config.epochs)
    steps = -(-per_epoch // config.batch_size) * config.epochs
    return CrossEncoderTrainingArguments(batch_sampler=sampler, **shared_training_arguments(config, checkpoints, has_dev, steps),
                                         **trainer_arguments(config.processes, config.device))


def train_cross_encoder(config: RerankerTrainConfig) -> dict:
    """Train, keep the best epoch by the reranked dev metric, save a CrossEncoder folder at `config.output`
    with a lineage model card and `rtune_manifest.json`. Returns rows, dev history, best epoch, first stage."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    check_processes(config.processes, config.batch_size, config.device)
    if should_launch(config.processes):  # this process starts `processes` trainers under torchrun, and waits
        return launch("train-reranker", config, config.processes)
    config = with_shared_checkpoints(config)
    resume, _ = checkpointing.prepare(config)  # a missing, damaged or foreign checkpoint fails before any model loads
    groups = sample_groups(list(read_groups(config.groups_file())), config.max_queries, config.seed)
    rows = build_rows(groups, config.group_size, config.seed, config.epochs, config.positives)
    check_rows(rows, config.group_size, config.allow_collapsed, str(config.groups_file()))
    layout = LAYOUTS[config.loss]
    columns, per_epoch = reranker_columns(rows, layout)
    keys = rows.keys if config.loss in IN_BATCH else no_conflicts(range(per_epoch * config.epochs))
    log.info("%d training %s per epoch from %d queries and %d positives (fresh negatives each epoch)", per_epoch,
             {"pairs": "pairs", "lists": "groups", "tuples": "rows"}[layout], rows.counts["queries"], rows.counts["positives"])
    use_title = document_rule(config)
    dataset = read_beir(config.dataset) if config.dataset else None
    check_model_name(resolve_model(config.model))  # a missing folder fails before the first stage runs
    evaluator, first_dev = None, {}
    if dataset is not None:
        evaluator, first_dev = dev_evaluator(config, dataset, use_title)
    model = load_reranker_base(config.model, config.max_length, config.device, config.seed)
    if evaluator is None:
        log.info("no --dataset given: no dev evaluation; the last epoch is kept")
    with output_folder(config.output, config.overwrite) as tmp:
        base_dev = evaluator(model, epoch=0, steps=0) if evaluator else {}
        checkpoints = config.checkpoint_dir or tmp / "checkpoints"
        trainer = CrossEncoderTrainer(model=model, args=_training_arguments(config, checkpoints, evaluator is not None, per_epoch, keys),
                                      train_dataset=Dataset.from_dict(columns), evaluator=evaluator,
                                      loss=build_reranker_loss(config.loss, model, config.group_size - 1, config.in_batch_negatives))
        train_started = time.time()
        concise_progress(trainer, config.metric_for_best)
        checkpointing.save_every(trainer, config.save_steps)
        _, resume, steps_run = checkpointing.run(trainer, resume)
        train_seconds = time.time() - train_started
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        require_finite_weights(model, "the trained reranker", config.output)
        model.save(str(tmp))
        history = checkpointing.with_restored_history(evaluator.history, resume) if evaluator else []
        best = max(history[1:], key=lambda h: h[config.metric_for_best]) if len(history) > 1 else None
        summary = {
            "rows": rows.counts,
            "examples_per_epoch": per_epoch,
            "train_seconds": round(train_seconds, 2),
            "examples_per_second": round(per_epoch * config.epochs / train_seconds, 3),
            "loss": config.loss,
            "dev_history": history,
            "best": best,
            "base_dev": {k.removeprefix("dev_"): v for k, v in base_dev.items()},
            "first_stage": {"ranker": config.first_stage, "rerank_top": config.rerank_top, "dev": first_dev} if evaluator else None,
            "document_text": {"use_title": use_title},
            **checkpointing.training_record(trainer, resume, steps_run),
        }
        if best and first_dev and best[config.metric_for_best] <= first_dev[config.metric_for_best]:
            log.warning("the best epoch's reranking (%s=%.4f) does not beat the first stage alone on dev (%.4f)",
                        config.metric_for_best, best[config.metric_for_best], first_dev[config.metric_for_best])
        record_lineage(tmp, "train-reranker", config, summary, started)
    discard_shared_checkpoints(config)
    return summary


def summary(config: RerankerTrainConfig, result: dict) -> list:
    """The terminal's dev table and closing line after `rtune train-reranker`."""
    table = reranker_dev_table(config, result)
    return [*([table] if table is not None else []),
            f"reranker saved to {config.output} ({result['examples_per_epoch']} {config.loss} examples per epoch, "
            f"{result['examples_per_second']:.2f}/s)"]


# what a reranker training stage may refer to, and what a pipeline fills in (train-llm-reranker shares them)
RERANKER_REFS = {"dataset": DATASET, "groups": GROUPS, "first_stage": MODEL, "model": (RERANKER, MODEL)}  # model: base too


def reranker_defaults(settings) -> dict:
    return {"dataset": DATASET, "groups": GROUPS, "first_stage": MODEL}


def training_compute(config) -> str:
    return compute_identity(config.device, config.precision)


TRAIN_RERANKER = StageSpec(
    name="train-reranker", config=RerankerTrainConfig, run=train_cross_encoder, produces=RERANKER,
    help="Fine-tune a cross-encoder (reranker) on training groups; dev evaluation reranks a first stage's top candidates.",
    refs=RERANKER_REFS, defaults=reranker_defaults, compute=training_compute, summary=summary,
)
