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


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """`value` if it is one of `valid` (taken from the registry itself), else a ValueError listing them."""
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"unknown {kind} '{value}'; valid: {', '.join(valid)}")
    return value
