"""The trainers' terminal output: one bar with the loss on it and one line per dev evaluation."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def concise_progress(trainer, metric: str) -> None:
    """The trainer's bar with the loss on it instead of a raw dict per logging step, and one line per dev
    evaluation; every logged value still goes to the debug log (the dev history is in the manifest)."""
    from transformers.trainer_callback import ProgressCallback

    class ConciseProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            log.debug("trainer: %s", logs)
            if self.training_bar is None:
                return
            if "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}")
            if f"eval_dev_{metric}" in logs:
                self.training_bar.write(f"epoch {state.epoch:g}: dev {metric} {logs[f'eval_dev_{metric}']:.4f}")

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ConciseProgress())
