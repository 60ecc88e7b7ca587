"""Atomic writes: a file or folder appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rtune.errors import InputError

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]
# `.<name>.pid<pid>@<host>.<random>.tmp`: the owner is in the name, so a later run can tell a dead run's
# leftovers from a live run's work in progress.
_OWNED = re.compile(r"\.pid(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.(?P<rest>[^.]+)\.tmp$")
_LIVE: set[str] = set()  # temporaries this process is using right now


def _umask_mode(directory: bool) -> int:
    """The permissions a plain open()/mkdir() would give (tempfile uses 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def temp_prefix(name: str) -> str:
    """Prefix of a temporary owned by this process: `.<name>.pid<pid>@<host>.`."""
    return f".{name}.pid{os.getpid()}@{_HOST}."


def _owner_alive(pid: int, host: str, path: Path) -> bool:
    """Whether the process that made `path` may still be using it (unknown hosts count as alive)."""
    if host != _HOST:
        return True
    if pid == os.getpid():
        return str(path) in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_temporaries(folder: Path, prefix: str = ".") -> list[tuple[Path, int]]:
    """(path, owner pid) of each temporary in `folder` whose name starts with `prefix` and whose owner is gone."""
    try:
        entries = [entry for entry in folder.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = _OWNED.search(entry.name)
        if match and not _owner_alive(int(match["pid"]), match["host"], entry):
            stale.append((entry, int(match["pid"])))
    return stale


def remove_stale_temporaries(folder: str | Path, prefix: str = ".", final: str | Path | None = None) -> list[Path]:
    """Delete what killed runs left in `folder` (never a live process's temporary) and log each one.

    `final` is the output these temporaries were for: a previous output that a killed run had moved
    aside (`....old.tmp`) is put back when nothing took its place, never deleted.
    """
    removed = []
    for entry, pid in stale_temporaries(Path(folder), prefix):
        if entry.name.endswith(".old.tmp") and final is not None and not os.path.lexists(final):
            os.replace(entry, final)
            log.warning("restored %s from %s (an interrupted run had moved it aside)", final, entry)
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except OSError as err:
            log.warning("could not remove %s left by an interrupted run (process %d): %s", entry, pid, err)
            continue
        log.info("removed %s, left by an interrupted run (process %d)", entry, pid)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def owned(path: str | Path) -> Iterator[None]:
    """Mark `path` as this process's live temporary for the duration of the block."""
    _LIVE.add(str(path))
    try:
        yield
    finally:
        _LIVE.discard(str(path))


def make_temp_dir(folder: Path, name: str) -> Path:
    """A new temporary folder in `folder`, named after `name` and this process (see `temp_prefix`)."""
    return Path(tempfile.mkdtemp(prefix=temp_prefix(name), suffix=".tmp", dir=folder))


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it over `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
    try:
        with owned(tmp), os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.chmod(tmp, _umask_mode(directory=False))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(path: str | Path, what: str = "output", inside: bool = False) -> None:
    """Fail before any work, with an InputError naming `path`, when `path` cannot be created (or, with
    `inside`, written into as a folder): a file in the way, a read-only folder or file system.
    Probes with a real temporary folder, so it also holds for root and read-only mounts."""
    path = Path(path)
    existing = path if inside else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write the {what} here: {existing} is a file, not a folder", path)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rtune-write-check.", dir=existing))
    except OSError as err:
        raise InputError(f"cannot write the {what} here: {existing}: {err.strerror or err}", path) from None


def check_output_not_input(output: str | Path, inputs: dict[str, str | Path]) -> None:
    """Refuse an output that is, or contains, one of the inputs: `--overwrite` would delete it.
    `inputs` maps option names to paths (those that do not exist are ignored)."""
    out = Path(output).expanduser().resolve()
    for option, value in inputs.items():
        path = Path(value).expanduser()
        if not path.exists():
            continue
        path = path.resolve()
        if path == out or out in path.parents:
            relation = "is" if path == out else "contains"
            raise InputError(f"the output {relation} the input given as --{option.replace('_', '-')} ({path}); "
                             "replacing it would delete that input: choose another --output", output)


def ensure_new_output(path: str | Path, overwrite: bool) -> None:
    """Refuse to replace something the user already has unless they said `overwrite`, and fail early
    when the output cannot be written at all."""
    path = Path(path)
    if path.exists() and not overwrite and (path.is_file() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    check_writable(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside `path`; move it into place when the block succeeds.

    An existing non-empty `path` is only replaced when `overwrite` is set; the old one is removed
    after the new one is complete.
    """
    path = Path(path)
    ensure_new_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, f".{path.name}.", final=path)
    tmp = make_temp_dir(path.parent, path.name)
    os.chmod(tmp, _umask_mode(directory=True))
    try:
        with owned(tmp):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ensure_new_output(path, overwrite)  # something may have appeared there while we worked
    if path.exists():
        old = path.with_name(f"{temp_prefix(path.name)}old.tmp")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)
