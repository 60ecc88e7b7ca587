"""Hybrid retrieval: fuse a lexical and a dense run ({qid: {doc: score}}) through ranx.

Two methods, both by ranx: `rrf` (reciprocal rank fusion, Cormack et al. 2009; k=60), weighted by running
ranx's weighted sum over the reciprocal-rank scores ranx's own `rrf` would give each run, and `minmax`
(each query's scores min-max normalised, then a weighted sum). `dense_weight` is the dense run's weight,
the lexical run gets 1 - dense_weight; for rrf a weight of 0.5 is plain RRF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rtune.errors import check_choice
from rtune.eval.metrics import Run

FUSION_METHODS = ("rrf", "minmax")
RRF_K = 60
DEFAULT_WEIGHTS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _ranx_run(run: Mapping[str, Mapping[str, float]], name: str):
    from ranx import Run as RanxRun

    return RanxRun({qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()}, name=name)


def _reciprocal_ranks(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Each document's 1 / (k + rank) within its query (rank 1 = best score; ties broken by doc id)."""
    out: Run = {}
    for qid, docs in run.items():
        ordered = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
        out[qid] = {doc: 1.0 / (k + rank) for rank, (doc, _) in enumerate(ordered, start=1)}
    return out


def fuse_runs(lexical: Run, dense: Run, method: str = "minmax", dense_weight: float = 0.5, k: int = RRF_K) -> Run:
    """The fused run, each query's documents from either run (a document missing from one run gets 0 there).
    A query present in only one run (or empty in one) keeps that run's documents, scaled by its weight."""
    check_choice("fusion method", method, FUSION_METHODS)
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense weight must be within 0..1, got {dense_weight}")
    from ranx import fuse

    if method == "rrf":
        lexical, dense, norm = _reciprocal_ranks(lexical, k), _reciprocal_ranks(dense, k), None
    else:
        norm = "min-max"
    both = sorted(q for q in set(lexical) & set(dense) if lexical[q] and dense[q])
    weights = [1.0 - dense_weight, dense_weight]
    fused: Run = {}
    if both:
        runs = [_ranx_run({q: lexical[q] for q in both}, "lexical"), _ranx_run({q: dense[q] for q in both}, "dense")]
        fused = {q: dict(docs) for q, docs in fuse(runs, norm=norm, method="wsum", params={"weights": weights}).to_dict().items()}
    for weight, run in zip(weights, (lexical, dense)):
        for qid, docs in run.items():
            if qid not in fused and docs:
                fused[qid] = _scaled(docs, weight, norm is not None)
    return fused


def _scaled(docs: Mapping[str, float], weight: float, minmax: bool) -> dict[str, float]:
    """One run's documents alone: (min-max normalised when `minmax`) times `weight`, order kept."""
    if not minmax:
        return {d: weight * s for d, s in docs.items()}
    low, high = min(docs.values()), max(docs.values())
    span = (high - low) or 1.0
    return {d: weight * (s - low) / span for d, s in docs.items()}


def fusion_grid(weights: Sequence[float] = DEFAULT_WEIGHTS) -> list[tuple[str, float]]:
    """Every (method, dense weight) pair tried on dev (rrf at 0.5 is plain RRF)."""
    return [(method, float(w)) for method in FUSION_METHODS for w in weights]


def top_k(run: Run, k: int) -> Run:
    """Each query's k best documents (ties by doc id, so the cut is deterministic)."""
    return {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]) for q, docs in run.items()}


class HybridRanker:
    """A Ranker (rtune.eval.rankers) that fuses a lexical and a dense ranker's top k with `fuse_runs`."""

    def __init__(self, lexical, dense, method: str = "minmax", dense_weight: float = 0.5) -> None:
        check_choice("fusion method", method, FUSION_METHODS)
        self.lexical, self.dense, self.method, self.dense_weight = lexical, dense, method, dense_weight
        self.name = f"{lexical.name}+{dense.name} ({method}, dense weight {dense_weight:g})"

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        fused = fuse_runs(self.lexical.rank(queries, k), self.dense.rank(queries, k), self.method, self.dense_weight)
        return top_k(fused, k)
