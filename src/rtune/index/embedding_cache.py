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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rtune.data.atomic import make_temp_dir, owned, remove_stale_temporaries
from rtune.errors import check_choice
from rtune.models.encoder_options import DTYPES

log = logging.getLogger(__name__)



def cache_for(options) -> EmbeddingCache | None:
    """The embedding cache an EncoderOptions config asks for (`cache`, `cache_dir`), or None."""
    return EmbeddingCache(options.cache_dir) if options.cache else None


def default_cache_dir() -> Path:
    return Path(os.environ.get("RTUNE_CACHE_DIR", Path.home() / ".cache" / "rtune" / "embeddings"))


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
    """`get_or_encode(parts, texts, encode)` returns a read-only memory-mapped (n, dim) array.

    A cache folder that cannot be written degrades to no cache (a warning, then in-memory encoding);
    an entry that does not load (e.g. truncated by a full disk) is a miss, rebuilt with a warning.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path_for(self, key: str) -> Path:
        return self.folder / key

    def lookup(self, key: str, n: int | None = None) -> np.ndarray | None:
        """The entry's matrix, or None on a miss; a damaged entry (or one of the wrong length) is removed."""
        entry = self.path_for(key) / "embeddings.npy"
        if not entry.is_file():
            return None
        try:
            matrix = np.load(entry, mmap_mode="r")
            if matrix.ndim != 2 or (n is not None and matrix.shape[0] != n):
                raise ValueError(f"shape {matrix.shape}, expected {n} rows")
            return matrix
        except (ValueError, OSError) as err:
            log.warning("embedding cache entry %s is damaged (%s); encoding again", entry, err)
            shutil.rmtree(self.path_for(key), ignore_errors=True)
            return None

    def _new_temp(self, key: str) -> Path | None:
        """A temporary folder for a new entry, or None (with a warning) when the cache cannot be written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.folder)
            return make_temp_dir(self.folder, key)
        except OSError as err:
            log.warning("embedding cache %s cannot be written (%s); continuing without the cache",
                        self.folder, err.strerror or err)
            return None

    def get_or_encode(self, parts: dict, texts: Sequence[str], encode: Callable[[Sequence[str]], np.ndarray],
                      dtype: str = "float32", chunk_size: int = 8192) -> np.ndarray:
        """Cached embeddings of `texts` for the identity `parts`, encoding (in chunks) on a miss."""
        check_choice("embedding dtype", dtype, DTYPES)
        key = cache_key(**parts, texts=texts_fingerprint(texts), n=len(texts), dtype=dtype)
        cached = self.lookup(key, len(texts))
        if cached is not None:
            log.info("embedding cache hit: %d x %d %s (%s)", *cached.shape, cached.dtype, self.path_for(key))
            return cached
        started = time.time()
        tmp = self._new_temp(key)
        if tmp is None:
            return _encode_chunks(texts, encode, chunk_size, lambda shape: np.empty(shape, dtype=dtype))
        target = self.path_for(key)
        try:
            with owned(tmp):
                _encode_chunks(texts, encode, chunk_size, lambda shape: np.lib.format.open_memmap(
                    tmp / "embeddings.npy", mode="w+", dtype=dtype, shape=shape))
                meta = {**parts, "n": len(texts), "dtype": dtype, "seconds": round(time.time() - started, 2),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
                try:
                    os.replace(tmp, target)
                except OSError:  # another process published the same entry first: use theirs
                    shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        published = self.lookup(key, len(texts))
        if published is None:  # a damaged entry that cannot be removed is in the way
            log.warning("embedding cache entry %s cannot be replaced; continuing without the cache", target)
            return _encode_chunks(texts, encode, chunk_size, lambda shape: np.empty(shape, dtype=dtype))
        log.info("encoded and cached %d texts in %.1fs (%s)", len(texts), time.time() - started, target)
        return published


def _encode_chunks(texts: Sequence[str], encode: Callable[[Sequence[str]], np.ndarray], chunk_size: int,
                   allocate: Callable[[tuple[int, int]], np.ndarray]) -> np.ndarray:
    """Encode `texts` chunk by chunk into the (n, dim) array that `allocate` returns once dim is known."""
    matrix = None
    for start in range(0, len(texts), chunk_size):
        block = np.asarray(encode(texts[start : start + chunk_size]), dtype=np.float32)
        if matrix is None:
            matrix = allocate((len(texts), block.shape[1]))
        matrix[start : start + len(block)] = block
    if matrix is None:
        raise ValueError("nothing to encode: no texts")
    if isinstance(matrix, np.memmap):
        matrix.flush()
    return matrix
