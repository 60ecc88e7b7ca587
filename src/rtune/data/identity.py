"""The one rule for "the same file or folder": a sha256 of the content. A folder's identity is its files' relative
paths and content hashes, without the files that describe a run rather than its result (manifests, model cards,
reports with timings) and without hidden files (locks, temporaries), so a stage rebuilt to the same result has
the same identity. Used for manifests' inputs, the pipeline's freshness keys and output checks, model
fingerprints of the embedding cache and checkpoints, and the scoring shards' key.

Hashes are memoised by (path, size, modification time): in this process, and on disk in `memo_dir` when given,
so big weights are read once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# files that describe a run rather than its result (timings, dates)
METADATA_FILES = frozenset({"manifest.json", "rtune_manifest.json", "stage_manifest.json", "README.md",
                            "mining_report.json"})
_MEMO: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def file_sha256(path: str | Path, memo_dir: Path | None = None) -> str:
    """Content hash of one file, memoised by (path, size, mtime)."""
    path = Path(path)
    key = _stat_key(path)
    if key in _MEMO:
        return _MEMO[key]
    memo = memo_dir / "fingerprints" / hashlib.sha256(repr(key).encode()).hexdigest()[:32] if memo_dir is not None else None
    if memo is not None and memo.is_file():
        saved = memo.read_text().strip()
        if len(saved) == 64:  # a memo cut short by a kill is recomputed
            _MEMO[key] = saved
            return saved
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    _MEMO[key] = digest.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(_MEMO[key])
        except OSError:  # an unwritable cache only costs the memo
            pass
    return _MEMO[key]


def identity_files(folder: Path) -> list[Path]:
    """The files that make up a folder's identity, sorted: no metadata files, nothing hidden."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in files if not f.startswith(".") and f not in METADATA_FILES]
    return sorted(out)


def content_identity(path: str | Path, memo_dir: Path | None = None) -> str:
    """sha256 of a file's content, or of a folder's identity files (relative path + content hash each)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path, memo_dir)
    digest = hashlib.sha256()
    for item in identity_files(path):
        digest.update(item.relative_to(path).as_posix().encode())
        digest.update(file_sha256(item, memo_dir).encode())
    return digest.hexdigest()
