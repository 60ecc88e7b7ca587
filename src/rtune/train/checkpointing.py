"""Resumable training for `rtune train` and `rtune train-reranker`: the checkpoint options, the check of a
checkpoint before any model loads, a checkpoint every N optimiser steps beside the per-epoch best-model ones,
and what a resumed run restores (the dev history) and records (the step it resumed from, the loss history).

A resumed run equals an uninterrupted one with the same seed: the trainer restores the weights, optimiser,
scheduler and RNG states, skips the batches the checkpoint already trained, and rtune's batch sampler
rebuilds the same seeded batches for the epoch it resumes in (as many in every epoch, so that the trainer's
step -> (epoch, batch) arithmetic holds).
"""

from __future__ import annotations

import json
import logging
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from rtune.data.atomic import atomic_file
from rtune.data.identity import content_identity
from rtune.errors import InputError
from rtune.index.embedding_cache import default_cache_dir
from rtune.models.finite import require_finite_loss
from rtune.models.names import resolve_model
from rtune.models.precision import compute_identity
from rtune.stage import result_settings

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
# what the trainer needs besides the weights to continue exactly (saved unless save_only_model)
RESUME_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")
IDENTITY_FILE = "rtune_checkpoints.json"


class CheckpointOptions(BaseModel):
    """The checkpoint options of the training stages."""
    checkpoint_dir: Path | None = Field(
        None, description="folder for resumable checkpoints, kept after training [default: a temporary folder "
        "inside the output, removed at the end]")
    save_steps: int | None = Field(
        None, ge=1, description="also save a resumable checkpoint every N optimiser steps (with or without a dev set; "
        "the latest one and the best epoch's are kept)")
    resume_from_checkpoint: Path | None = Field(
        None, description="continue an interrupted training from this checkpoint-N folder (same options and data): "
        "weights, optimiser, scheduler, RNG states and the batches not yet trained")

    def resumable(self) -> bool:
        """Whether checkpoints carry optimiser, scheduler and RNG states (else the weights only, as a per-epoch
        best-model checkpoint needs)."""
        return self.save_steps is not None or self.checkpoint_dir is not None


def checkpoint_step(path: Path) -> int:
    """N of a `checkpoint-N` folder (-1 for another name)."""
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if path.name.startswith("checkpoint-") and tail.isdigit() else -1


def _check_safetensors(path: Path) -> None:
    """The header parses and the file is as long as the header says (a cut-off write fails here)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError("truncated header")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise ValueError("truncated header")
        header = json.loads(handle.read(length))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size != 8 + length + end:
        raise ValueError(f"{size} bytes where the header describes {8 + length + end}")


def check_checkpoint(path: str | Path) -> int:
    """The global step of a complete, resumable trainer checkpoint; an InputError naming `path` and what is
    missing or damaged otherwise. Reads headers only (no model loads)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError("checkpoint folder does not exist" if not path.exists() else "checkpoint is not a folder", path)
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
        step = int(state["global_step"])
    except FileNotFoundError:
        raise InputError(f"not a trainer checkpoint: no {TRAINER_STATE} (an interrupted save?)", path) from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"corrupt checkpoint: {TRAINER_STATE} is unreadable ({type(err).__name__}: {err})", path) from None
    missing = [name for name in RESUME_FILES if not (path / name).is_file()]
    if missing:
        raise InputError(f"checkpoint cannot be resumed: no {', '.join(missing)} (saved with the weights only; "
                         "resumable checkpoints come from --save-steps or --checkpoint-dir)", path)
    weights = sorted(path.rglob("*.safetensors")) + sorted(path.rglob("*.bin"))
    if not weights:
        raise InputError("corrupt checkpoint: no model weights (*.safetensors / *.bin)", path)
    for item in [path / name for name in RESUME_FILES] + weights:
        try:
            if item.suffix == ".safetensors":
                _check_safetensors(item)
            elif not zipfile.is_zipfile(item):  # torch.save's format; a cut-off file has no central directory
                raise ValueError("not a complete torch file")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"corrupt checkpoint: {item.name}: {err}", path) from None
    return step


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`; damaged ones (a kill during a save) are logged and skipped."""
    for candidate in sorted(folder.glob("checkpoint-*"), key=checkpoint_step, reverse=True):
        if checkpoint_step(candidate) < 0:
            continue
        try:
            check_checkpoint(candidate)
        except InputError as err:
            log.warning("skipping %s", err)
            continue
        return candidate
    return None


# identity of the training a checkpoint folder belongs to -----------------------------------------------------------
def run_identity(config) -> dict:
    """What a checkpoint depends on: the settings that change training (rtune.stage.result_settings), the device
    type and precision it trains in, the groups' content and the start model's (a hub id: the id)."""
    model = Path(resolve_model(config.model))
    return {"config": result_settings(config), "compute": compute_identity(config.device, config.precision),
            "groups_sha256": content_identity(config.groups_file()),
            "model": content_identity(model, default_cache_dir()) if model.exists() else f"id:{config.model}"}


def identity_changes(folder: Path, identity: dict) -> list[str]:
    """What differs between the training that wrote the checkpoints in `folder` and `identity` ([] when the same,
    or when `folder` records none)."""
    path = folder / IDENTITY_FILE
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return [f"{IDENTITY_FILE} is unreadable"]
    changes = [f"{k}: {old['config'].get(k)!r} -> {v!r}" for k, v in identity["config"].items() if old.get("config", {}).get(k) != v]
    changes += [f"{k}: {old.get(k)} -> {identity[k]}" for k in ("compute",) if old.get(k) != identity[k]]
    changes += [f"{k} changed" for k in ("groups_sha256", "model") if old.get(k) != identity[k]]
    return changes


def claim(folder: Path, identity: dict) -> None:
    """Record in `folder` which training its checkpoints belong to."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / IDENTITY_FILE) as handle:
        json.dump(identity, handle, indent=2, sort_keys=True)


@dataclass(frozen=True)
class Resume:
    """A checked checkpoint to continue from, with the trainer's log up to it (read before training, since
    the trainer may rotate the checkpoint away once it saves newer ones)."""
    checkpoint: Path
    step: int
    log_history: tuple[dict, ...] = ()

    def record(self) -> dict:
        return {"checkpoint": self.checkpoint.name, "path": str(self.checkpoint), "step": self.step}


def prepare(config) -> tuple[Resume | None, dict | None]:
    """Before any model loads: check `resume_from_checkpoint` (complete, and written by this same training), and
    claim `checkpoint_dir`. Returns the checkpoint to resume from and the run's identity (None without either)."""
    if config.resume_from_checkpoint is None and config.checkpoint_dir is None:
        return None, None
    identity = run_identity(config)
    resume = None
    if config.resume_from_checkpoint is not None:
        checkpoint = Path(config.resume_from_checkpoint)
        step = check_checkpoint(checkpoint)
        changes = identity_changes(checkpoint.parent, identity)
        if changes:
            raise InputError(f"checkpoint was written by another training ({'; '.join(changes)}): resume it with the "
                             "options and data it started with, or train from the start", checkpoint)
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
        resume = Resume(checkpoint, step, tuple(state.get("log_history") or ()))
    if config.checkpoint_dir is not None:
        changes = identity_changes(Path(config.checkpoint_dir), identity)
        if changes and any(p.name.startswith("checkpoint-") for p in Path(config.checkpoint_dir).iterdir()):
            raise InputError(f"--checkpoint-dir holds checkpoints of another training ({'; '.join(changes)}): "
                             "choose an empty folder or remove them", config.checkpoint_dir)
        claim(Path(config.checkpoint_dir), identity)
    return resume, identity


# during training --------------------------------------------------------------------------------------------------------
def save_every(trainer, steps: int | None) -> None:
    """Also save a checkpoint every `steps` optimiser steps. The per-epoch evaluation and best-epoch checkpoints
    stay as they are (transformers ties a steps save strategy to a steps evaluation for load_best_model_at_end)."""
    if not steps:
        return
    from transformers import TrainerCallback

    class SaveEverySteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            # a step that ends an epoch saves at the epoch's end, after its dev evaluation: a checkpoint saved
            # before it would resume without that evaluation (and its best-epoch bookkeeping)
            if state.global_step % steps == 0 and not float(state.epoch or 0).is_integer():
                control.should_save = True

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.global_step % steps == 0:
                control.should_save = True

    trainer.add_callback(SaveEverySteps())


def stop_on_non_finite_loss(trainer) -> None:
    """Stop the training, naming the step, as soon as a logged training loss is NaN or infinite."""
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                require_finite_loss(float(logs["loss"]), state.global_step, state.max_steps)

    trainer.add_callback(StopOnNonFiniteLoss())


def run(trainer, resume: Resume | None) -> tuple[object, Resume | None, int]:
    """`trainer.train()`, from `resume` if given. Returns the trainer's output, the resumption used and the optimiser
    steps this call ran (counted, not inferred). The trainer maps the checkpoint's global step to (epoch, batch) by
    the batch count of the first epoch; rtune's batch sampler gives every epoch that many batches, so the
    resumption lands on the batch after the checkpoint's."""
    from transformers import TrainerCallback

    if resume is not None:
        log.info("resuming from %s (step %d): its weights, optimiser, scheduler and RNG states, and the batches "
                 "after it", resume.checkpoint, resume.step)

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    counter = CountSteps()
    trainer.add_callback(counter)
    stop_on_non_finite_loss(trainer)
    output = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume else None)
    return output, resume, counter.steps


def training_record(trainer, resume: Resume | None, steps_run: int) -> dict:
    """The summary fields of a training: optimiser steps in all, this run's, the checkpoint it resumed from
    (None for a run from the start), the loss history and whether the loss fell (a warning when it did not)."""
    history = loss_history(trainer.state.log_history)
    trend = loss_trend(history)
    if trend is not None and not trend["fell"]:
        log.warning("the training loss did not fall (%.4f over the first logged steps, %.4f over the last): the model "
                    "probably learned little; a new head or a language the base does not know may need a higher learning "
                    "rate, more steps or another base", trend["first"], trend["last"])
    return {"optimizer_steps": trainer.state.global_step, "steps_run": steps_run,
            "resumed_from": resume.record() if resume else None, "loss_history": history, "loss_trend": trend}


def loss_trend(history: list[dict], share: float = 0.2, min_points: int = 5, tolerance: float = 0.03) -> dict | None:
    """Mean loss over the first and the last `share` of the logged points, and whether it fell by more than
    `tolerance` (relative); None with fewer than `min_points` points."""
    if len(history) < min_points:
        return None
    n = max(1, int(len(history) * share))
    first = sum(h["loss"] for h in history[:n]) / n
    last = sum(h["loss"] for h in history[-n:]) / n
    return {"first": round(first, 4), "last": round(last, 4), "fell": last < first * (1 - tolerance)}


# after training ----------------------------------------------------------------------------------------------------------
def loss_history(log_history: list[dict]) -> list[dict]:
    """The training loss the trainer logged: [{"step", "epoch", "loss"}] (a resumed run's includes the steps
    before its checkpoint; the first value after a resume averages the steps since the checkpoint)."""
    return [{"step": int(e["step"]), "epoch": float(e.get("epoch", 0.0)), "loss": float(e["loss"])}
            for e in log_history if "loss" in e and "step" in e]


def restored_dev_history(resume: Resume | None, name: str = "dev") -> list[dict]:
    """The dev evaluations of the run a checkpoint came from, up to its step, as an evaluator's history rows
    ({"epoch", "steps", metric: value}); [] without a resumption."""
    if resume is None:
        return []
    prefix = f"eval_{name}_"
    rows = []
    for entry in resume.log_history:
        metrics = {k.removeprefix(prefix): v for k, v in entry.items() if k.startswith(prefix)}
        if metrics and entry.get("step", 0) <= resume.step:
            rows.append({"epoch": entry.get("epoch"), "steps": entry.get("step"), **metrics})
    return rows


def with_restored_history(history: list[dict], resume: Resume | None) -> list[dict]:
    """An evaluator's history (the start model's row first) with the evaluations before the checkpoint put back."""
    restored = restored_dev_history(resume)
    return history[:1] + restored + history[1:] if restored and history else history
