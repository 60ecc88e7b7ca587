"""Atomic writes: a file or folder appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rtune.errors import InputError, OutOfSpace

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
    except OSError as err:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if err.errno in FULL_DISK and not isinstance(err, OutOfSpace):
            raise out_of_space(err, path, written) from err
        raise
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


# files that mark a folder as rtune's own output (a stage's manifest, a model folder's, a saved index, a run folder)
RTUNE_MARKERS = ("manifest.json", "rtune_manifest.json", "retriever.json", ".rtune-run")


def written_by_rtune(path: Path) -> bool:
    """Whether the folder `path` is an rtune output, which `--overwrite` may replace."""
    return path.is_dir() and any((path / marker).is_file() for marker in RTUNE_MARKERS)


def ensure_new_output(path: str | Path, overwrite: bool) -> None:
    """Refuse to replace something the user already has: an existing non-empty output needs `overwrite`, and
    even then only a folder rtune wrote (one of RTUNE_MARKERS) is replaced, never a file or a folder of the user's
    own, nor the folder the process runs in; fail early when the output cannot be written at all."""
    path = Path(path)
    resolved = path.expanduser().resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise InputError("the output is the current folder (or holds it): choose a new folder for the output", path)
    if path.exists() and (path.is_file() or any(path.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
        if not written_by_rtune(path):
            what = "a file" if path.is_file() else "a folder that rtune did not write (it has no rtune manifest)"
            raise InputError(f"--overwrite replaces only an output rtune wrote, and this is {what}: choose another "
                             "output, or move it away yourself", path)
    check_writable(resolved)


def folder_size(path: Path) -> int:
    """Bytes of the files under `path` (what a partial output had reached)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def out_of_space(err: OSError, output: Path, written: int) -> OutOfSpace:
    """The OutOfSpace error for a write into `output` that failed with ENOSPC after `written` bytes."""
    try:
        free = shutil.disk_usage(output.parent if output.parent.exists() else Path.cwd()).free
    except OSError:
        free = 0
    return OutOfSpace(errno.ENOSPC, f"no space left on the device for {output}: the output had reached {written / 1e6:.1f} MB "
                                    f"when the disk filled ({free / 1e6:.1f} MB free now); free at least that much and run "
                                    "again (nothing partial was kept, and a previous output is left as it was)", str(output))


FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside `path` (beside its resolved place, so `.` or `..` work); move it
    into place when the block succeeds.

    An existing non-empty `path` is only replaced when `overwrite` is set and rtune wrote it; the old one is removed
    after the new one is complete. A full disk raises OutOfSpace naming the output; the temporary is removed and a
    previous output kept.
    """
    path = Path(path).expanduser().resolve()
    ensure_new_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, f".{path.name}.", final=path)
    tmp = make_temp_dir(path.parent, path.name)
    os.chmod(tmp, _umask_mode(directory=True))
    try:
        with owned(tmp):
            yield tmp
    except OSError as err:
        if err.errno in FULL_DISK and not isinstance(err, OutOfSpace):
            written = folder_size(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            raise out_of_space(err, path, written) from err
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
