"""Run `rtune ARGS` in-process as the tests of failure cases do: its exit status, and messages on one line."""

from __future__ import annotations

from rtune.cli import main


def run_cli(*args: str) -> int:
    """The exit status `rtune ARGS` would have (0 when main returns)."""
    try:
        main([*args])
    except SystemExit as done:
        return done.code
    return 0


def one_line(text: str) -> str:
    """`text` with every run of whitespace made one space (rich wraps long messages)."""
    return " ".join(text.split())
