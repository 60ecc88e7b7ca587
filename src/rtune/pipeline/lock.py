"""One run at a time per run folder, through an OS lock (filelock: `flock` on POSIX) that the kernel releases the
moment its holder dies, however it dies: no pid to check (a reused pid cannot look alive), no dead owner to take
over by unlinking (two runs cannot both take it). Who holds it is written beside it, for the message."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from rtune.errors import InputError

LOCK_NAME = ".rtune-run.lock"
OWNER_NAME = ".rtune-run.owner"


def _owner(folder: Path) -> dict:
    try:
        owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[Path]:
    """Hold the run folder's lock for the block; another live holder -> InputError naming it (pid, host, start)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _owner(folder)
        who = f"process {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}" if owner else "another process"
        raise InputError(f"another run ({who}) is writing this run folder; wait for it to finish or stop it", folder) from None
    try:
        (folder / OWNER_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}), encoding="utf-8")
        yield folder / LOCK_NAME
    finally:
        with contextlib.suppress(OSError):
            (folder / OWNER_NAME).unlink()
        lock.release()
