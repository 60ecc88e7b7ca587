"""On-disk embedding cache: encode a corpus once per (model, corpus, prompt, max length, dtype), reuse it.

Entries are `.npy` files (memory-mappable) written in chunks, so encoding a large corpus never holds the
whole float32 matrix in memory, and published atomically (temporary folder, then rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rtune.errors import check_choice

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16")


def default_cache_dir() -> Path:
    return Path(os.environ.get("RTUNE_CACHE_DIR", Path.home() / ".cache" / "rtune" / "embeddings"))


def _file_sha256(path: Path, memo_dir: Path | None) -> str:
    """Full content hash of a file, memoised by (path, size, mtime) so big weights are read once."""
    stat = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = memo_dir / "fingerprints" / memo_key if memo_dir is not None else None
    if memo is not None and memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(digest.hexdigest())
    return digest.hexdigest()


def model_fingerprint(name_or_path: str, memo_dir: Path | None = None) -> str:
    """Identity of a model's weights and settings: every file's content (model cards aside) for local
    folders; the id itself for hub models."""
    path = Path(name_or_path)
    if not path.is_dir():
        return f"id:{name_or_path}"
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")):
        digest.update(f"{item.relative_to(path)}:{_file_sha256(item, memo_dir)}".encode())
    return "sha256:" + digest.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    """Order-sensitive hash of the texts (the corpus as the model sees it)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class EmbeddingCache:
    """`get_or_encode(parts, texts, encode)` returns a read-only memory-mapped (n, dim) array."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path_for(self, key: str) -> Path:
        return self.folder / key

    def lookup(self, key: str) -> np.ndarray | None:
        entry = self.path_for(key) / "embeddings.npy"
        return np.load(entry, mmap_mode="r") if entry.is_file() else None

    def get_or_encode(self, parts: dict, texts: Sequence[str], encode: Callable[[Sequence[str]], np.ndarray],
                      dtype: str = "float32", chunk_size: int = 8192) -> np.ndarray:
        """Cached embeddings of `texts` for the identity `parts`, encoding (in chunks) on a miss."""
        check_choice("embedding dtype", dtype, DTYPES)
        key = cache_key(**parts, texts=texts_fingerprint(texts), n=len(texts), dtype=dtype)
        cached = self.lookup(key)
        if cached is not None:
            log.info("embedding cache hit: %d x %d %s (%s)", *cached.shape, cached.dtype, self.path_for(key))
            return cached
        started = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
        try:
            matrix = None
            for start in range(0, len(texts), chunk_size):
                block = np.asarray(encode(texts[start : start + chunk_size]), dtype=np.float32)
                if matrix is None:
                    matrix = np.lib.format.open_memmap(tmp / "embeddings.npy", mode="w+", dtype=dtype,
                                                       shape=(len(texts), block.shape[1]))
                matrix[start : start + len(block)] = block
            if matrix is None:
                raise ValueError("nothing to encode: no texts")
            matrix.flush()
            del matrix
            meta = {**parts, "n": len(texts), "dtype": dtype, "seconds": round(time.time() - started, 2),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            target = self.path_for(key)
            try:
                os.replace(tmp, target)
            except OSError:  # another process published the same entry first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("encoded and cached %d texts in %.1fs (%s)", len(texts), time.time() - started, target)
        return self.lookup(key)
