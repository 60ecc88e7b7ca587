"""One run at a time per run folder: a lock file holding the owner's pid and host; a dead owner's lock is taken over."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from rtune.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".rtune-run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _create(path: Path) -> bool:
    """Create the lock file exclusively; False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
    return True


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[Path]:
    """Hold `<folder>/.rtune-run.lock` for the block. A live owner -> InputError naming its pid; a dead one
    (same host, pid gone) -> its lock is taken over with a warning."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    for _ in range(3):
        if _create(path):
            break
        owner = _read(path)
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
            log.warning("taking over the lock of a run that died (process %d, started %s): %s", pid, owner.get("started"), path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        if not owner:  # being written right now, or garbage: give the writer a moment
            time.sleep(0.2)
            if not _read(path):
                log.warning("replacing an unreadable lock file: %s", path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            continue
        raise InputError(f"another run (process {pid} on {host}, started {owner.get('started')}) is writing this run folder; "
                         f"wait for it, or delete {path} if that process is gone", folder)
    else:
        raise InputError("could not take the run lock", path)
    try:
        yield path
    finally:
        if _read(path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
