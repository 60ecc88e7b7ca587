"""The trainer arguments every rtune training stage shares (bi-encoder, cross-encoder)."""

from __future__ import annotations

from pathlib import Path

from rtune.train.precision import precision_flags


def shared_training_arguments(config, checkpoints: Path, has_dev: bool) -> dict:
    """Keyword arguments for a sentence-transformers TrainingArguments class: epochs, batch size, learning
    rate and warm-up, seeds, with a dev set an evaluation and a checkpoint each epoch and the best epoch by
    `dev_<metric_for_best>` loaded at the end; quiet logging, the device and mixed precision."""
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
        "save_total_limit": 1 if has_dev else None,
        "save_only_model": True,
        "logging_steps": 10,
        "report_to": "none",
        "disable_tqdm": False,
        "dataloader_pin_memory": False,
        "use_cpu": config.device == "cpu",
        **precision_flags(config.precision, config.device),
    }
