"""`rtune`: the command line, a thin layer over the stage registry and the pipeline."""

from __future__ import annotations

from rtune.cli.main import main

__all__ = ["main"]
