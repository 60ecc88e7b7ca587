"""The trainer arguments every rtune training stage shares (bi-encoder, cross-encoder)."""

from __future__ import annotations

from pathlib import Path

from rtune.models.precision import precision_flags


def logging_steps(total_steps: int | None) -> int:
    """Every 10 optimiser steps, more often in short runs (at least about 20 points of loss history)."""
    return 10 if total_steps is None else max(1, min(10, total_steps // 20))


def shared_training_arguments(config, checkpoints: Path, has_dev: bool, total_steps: int | None = None) -> dict:
    """Keyword arguments for a sentence-transformers TrainingArguments class: epochs, batch size, learning
    rate and warm-up, seeds, with a dev set an evaluation and a checkpoint each epoch and the best epoch by
    `dev_<metric_for_best>` loaded at the end; quiet logging, the device and mixed precision. With the
    checkpoint options (`config.resumable()`), checkpoints also hold the optimiser, scheduler and RNG states
    and the latest one is kept (beside the best epoch's); `checkpointing.save_every` adds the step saves."""
    resumable = bool(getattr(config, "resumable", lambda: False)())
    return {
        "output_dir": str(checkpoints),
        "num_train_epochs": config.epochs,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a ratio in Transformers v5
        "seed": config.seed,
        "data_seed": config.seed,
        "eval_strategy": "epoch" if has_dev else "no",
        "save_strategy": "epoch" if has_dev else "no",
        "load_best_model_at_end": has_dev,
        "metric_for_best_model": f"eval_dev_{config.metric_for_best}" if has_dev else None,
        "greater_is_better": True,
        "save_total_limit": 1 if has_dev or resumable else None,
        "save_only_model": not resumable,
        "logging_steps": logging_steps(total_steps),
        "logging_nan_inf_filter": False,  # a NaN loss is logged as NaN (the filter logged it as 0), and stops training
        "report_to": "none",
        "disable_tqdm": False,
        "dataloader_pin_memory": False,
        "use_cpu": config.device == "cpu",
        **precision_flags(config.precision, config.device),
    }
