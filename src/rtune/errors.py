"""The one error type for bad user input: it names the file, the line (or id) and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class InputError(ValueError):
    """Bad user input. `str(err)` reads `path:line: message` so a person can jump to the spot."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class Interrupted(Exception):
    """The user interrupted a stage (Ctrl-C); carries what was running and where it would have written."""

    def __init__(self, stage: str, output: str | Path | None = None) -> None:
        self.stage = stage
        self.output = None if output is None else str(output)
        where = f" to {self.output}" if self.output else ""
        super().__init__(f"interrupted: rtune {stage} stopped before finishing; nothing was written{where}")


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """`value` if it is one of `valid` (taken from the registry itself), else an InputError listing them."""
    valid = list(valid)
    if value not in valid:
        raise InputError(f"unknown {kind} '{value}'; valid: {', '.join(valid)}")
    return value


class DataCollapsedError(InputError):
    """A stage's data collapsed (most queries without negatives, far fewer rows than queries): it stops
    rather than exiting 0 with a model trained on a handful of rows."""


class OutOfSpace(OSError):
    """An output could not be written because its file system is full: the environment's fault, not the input's
    and not a bug. Says which output, how far it got and how much room is left."""

    def __str__(self) -> str:
        return str(self.strerror)
