"""Where a run's messages go: details to `<run>/run.log`, warnings and one line per step to the terminal."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "run.log"


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """Terminal handlers show warnings only inside the block (the runner prints one line per step instead)."""
    handlers = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
    levels = {h: h.level for h in handlers}
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in levels.items():
            handler.setLevel(level)


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[Path]:
    """rtune's INFO messages (and above) appended to `<run_dir>/run.log` inside the block."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("rtune")
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield run_dir / LOG_FILE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
