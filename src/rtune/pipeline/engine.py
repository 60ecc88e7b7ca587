"""The step engine: run one step of a run (a stage, an evaluation, a fusion) unless it is fresh, write its manifest
last, and say in one line what ran or was skipped and why. It knows nothing of the recipe."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from rtune.errors import InputError
from rtune.pipeline.memory import peak_mb, reset_peak
from rtune.pipeline.steps import check, forget, record
from rtune.stage import result_settings

log = logging.getLogger("rtune.pipeline")


@dataclass
class Outcome:
    """What happened to one step: ran / skipped / would run / would skip, why, and how long it took."""

    name: str
    status: str
    reason: str
    seconds: float = 0.0
    record: dict = field(default_factory=dict)

    @property
    def built(self) -> bool:
        """Whether the step's output exists and is current (or would be, in a dry run)."""
        return self.status in ("ran", "skipped", "would skip")


@dataclass
class Input:
    """One input of a step: the stage it comes from (None for a plain path or id), its path and its content
    identity (None while it is not built, in a dry run)."""

    ref: str | None
    path: str | None
    sha: str | None


def _drop_if_empty(folder: Path) -> None:
    """Remove a step folder that the failed step left empty (its outputs are atomic, so nothing else is lost)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


class StepEngine:
    """Runs steps; `outcomes` is what happened, in order. `echo` prints the one line per step."""

    def __init__(self, seed: int, dry_run: bool = False, echo: Callable[[str], None] = print) -> None:
        self.seed, self.dry_run, self.echo = seed, dry_run, echo
        self.outcomes: list[Outcome] = []

    def step(self, name: str, folder: Path, kind: str, config: BaseModel, exclude: set[str], inputs: dict[str, Input],
             outputs: dict[str, Path], work: Callable[[], dict], compute: str | None = None) -> Outcome:
        """Skip `work` when fresh, else run it and write the manifest last. The freshness key holds the settings that
        change results (without `exclude`: the reference fields, whose inputs are keyed by content), the compute
        identity and each input's content identity; no paths, so a moved run stays fresh."""
        parts = {"kind": kind, "config": result_settings(config, exclude), "compute": compute,
                 "inputs": {f: {"ref": i.ref, "sha": i.sha} for f, i in inputs.items()}}
        pending = [i.ref or f for f, i in inputs.items() if i.sha is None]
        if pending:
            return self.report(Outcome(name, "would run", f"after {', '.join(dict.fromkeys(pending))} (re)runs"))
        state = check(folder, parts, outputs)
        if state.fresh:
            return self.report(Outcome(name, "would skip" if self.dry_run else "skipped", state.reason, 0.0, state.record))
        if self.dry_run:
            return self.report(Outcome(name, "would run", state.reason))
        log.info("%s: running (%s)", name, state.reason)
        forget(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        reset_peak()
        try:
            extra = work()
        except InputError as err:  # name the step; no manifest is written, so the next run retries it
            _drop_if_empty(folder)
            raise InputError(f"step '{name}': {err.message}", err.path, err.line) from err
        except BaseException:  # interrupted, terminated, a full disk: nothing half-made stays behind
            _drop_if_empty(folder)
            raise
        stats = record(folder, kind, config.model_dump(mode="json"), [i.path for i in inputs.values() if i.path], started,
                       parts, outputs, {"seed": self.seed, "peak_memory_mb": peak_mb(),
                                        "seconds": round(time.time() - started, 2), **extra})
        return self.report(Outcome(name, "ran", state.reason, time.time() - started, stats))

    def report(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        took = f" ({outcome.seconds:.1f}s)" if outcome.status == "ran" else ""
        self.echo(f"{outcome.name:<28} {outcome.status:<10} {outcome.reason}{took}")
        log.info("%s: %s: %s%s", outcome.name, outcome.status, outcome.reason, took)
        return outcome
