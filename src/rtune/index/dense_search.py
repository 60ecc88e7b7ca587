"""Search a (possibly memory-mapped, float16) embedding matrix without copying it whole.

`exact`: FAISS brute force block by block (`faiss.knn` + `ResultHeap`), so memory is one float32 block
plus the results, whatever the corpus size. `ivf` / `hnsw`: FAISS approximate indexes (fp16 storage)
for corpora where a full scan per query batch is too slow.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from rtune.errors import check_choice

log = logging.getLogger(__name__)

BLOCK_ROWS = 32_768


def _release_pages(matrix: np.ndarray, start: int, stop: int) -> None:
    """Drop rows [start, stop) of a memory-mapped matrix from this process's resident memory.

    The file's pages stay in the OS page cache (the next pass reads them back at memory speed); only
    our mapping lets go, so a scan over a matrix larger than RAM keeps the process at one block.
    """
    mapping = getattr(matrix, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not matrix.flags.c_contiguous:
        return
    import mmap

    row_bytes = matrix.strides[0]
    first = matrix.offset + start * row_bytes
    last = matrix.offset + stop * row_bytes
    first -= first % mmap.PAGESIZE
    if last > first:
        mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def exact_search(queries: np.ndarray, matrix: np.ndarray, k: int, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (positions, scores) by inner product, best first. queries: (nq, d) float32; matrix: (n, d),
    e.g. a float16 memory-mapped .npy read block by block (memory: one float32 block + the results). FAISS on the
    CPU; where FAISS is not installed (or a GPU is there), torch's matrix product and top-k, block by block."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is None or _cuda_available():
        return torch_exact_search(queries, matrix, k, block_rows)
    k = min(k, matrix.shape[0])
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for start in range(0, matrix.shape[0], block_rows):
        stop = min(start + block_rows, matrix.shape[0])
        block = np.empty((stop - start, matrix.shape[1]), dtype=np.float32)  # (b, d)
        block[...] = matrix[start:stop]  # converts in place: no intermediate copy
        scores, positions = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, positions + start)
        _release_pages(matrix, start, stop)
    heap.finalize()
    return heap.I, heap.D


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_exact_search(queries: np.ndarray, matrix: np.ndarray, k: int, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """`exact_search` through torch (on the GPU when there is one): each block's top k merged into a running top k.
    Ties between blocks keep the earlier position, as FAISS's heap does."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    k = min(k, matrix.shape[0])
    q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=device)  # (nq, d)
    best_scores = torch.full((len(q), 0), float("-inf"), device=device)
    best_positions = torch.zeros((len(q), 0), dtype=torch.int64, device=device)
    for start in range(0, matrix.shape[0], block_rows):
        stop = min(start + block_rows, matrix.shape[0])
        block = torch.as_tensor(np.ascontiguousarray(matrix[start:stop], dtype=np.float32), device=device)  # (b, d)
        scores = q @ block.T  # (nq, b)
        top = torch.topk(scores, min(k, stop - start), dim=1)
        merged_scores = torch.cat([best_scores, top.values], dim=1)
        merged_positions = torch.cat([best_positions, top.indices + start], dim=1)
        keep = torch.topk(merged_scores, min(k, merged_scores.shape[1]), dim=1, sorted=True)
        best_scores, best_positions = keep.values, torch.gather(merged_positions, 1, keep.indices)
        _release_pages(matrix, start, stop)
    return best_positions.cpu().numpy(), best_scores.float().cpu().numpy()


def _factory_string(index_type: str, n: int) -> str:
    if index_type == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))  # FAISS wants >= 39 training points per list
        return f"IVF{nlist},SQfp16"
    check_choice("index type", index_type, INDEX_TYPES)
    return "HNSW32,SQfp16"


class ApproximateIndex:
    """A FAISS approximate index built from the matrix in blocks (training on a seeded sample)."""

    def __init__(self, matrix: np.ndarray | None, index_type: str, seed: int = 0, nprobe: int = 32, ef_search: int = 256,
                 block_rows: int = BLOCK_ROWS, index=None) -> None:
        """Build over `matrix`, or wrap a ready FAISS `index` (e.g. one read by `load`)."""
        import faiss

        check_choice("index type", index_type, INDEX_TYPES[1:])
        self.index_type, self.seed, self.nprobe, self.ef_search = index_type, seed, nprobe, ef_search
        self.index = index if index is not None else self._build(matrix, block_rows)
        if index_type == "ivf":
            faiss.extract_index_ivf(self.index).nprobe = nprobe
        else:
            faiss.ParameterSpace().set_index_parameter(self.index, "efSearch", ef_search)

    def _build(self, matrix: np.ndarray, block_rows: int):
        import faiss

        n, dim = matrix.shape
        index = faiss.index_factory(dim, _factory_string(self.index_type, n), faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            sample = np.sort(np.random.default_rng(self.seed).choice(n, size=min(n, 100_000), replace=False))
            index.train(np.ascontiguousarray(matrix[sample], dtype=np.float32))
        threads = faiss.omp_get_max_threads()
        if self.index_type == "hnsw":
            faiss.omp_set_num_threads(1)  # parallel HNSW insertion depends on thread timing; one thread is reproducible
        try:
            for start in range(0, n, block_rows):
                index.add(np.ascontiguousarray(matrix[start : start + block_rows], dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(threads)
        log.info("built FAISS %s index over %d vectors", _factory_string(self.index_type, n), n)
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.index.ntotal))
        return positions, scores

    __call__ = search

    def save(self, path: Path) -> None:
        """Write the FAISS index to `path` (its search parameters are recorded by the caller)."""
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, index_type: str, nprobe: int = 32, ef_search: int = 256) -> ApproximateIndex:
        import faiss

        return cls(None, index_type, nprobe=nprobe, ef_search=ef_search, index=faiss.read_index(str(path)))


class ExactIndex:
    """Brute-force inner product over the (possibly memory-mapped) matrix, block by block."""

    index_type = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(queries, self.matrix, k)

    __call__ = search


INDEX_TYPES: tuple[str, ...] = ("exact", "ivf", "hnsw")


def make_searcher(matrix: np.ndarray, index_type: str = "exact", seed: int = 0) -> ExactIndex | ApproximateIndex:
    """A searcher over `matrix` with the chosen index type: `searcher(queries, k) -> (positions, scores)`."""
    check_choice("index type", index_type, INDEX_TYPES)
    if index_type == "exact":
        return ExactIndex(matrix)
    return ApproximateIndex(matrix, index_type, seed=seed)
