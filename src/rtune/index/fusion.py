"""Hybrid retrieval: fuse a lexical and a dense run ({qid: {doc: score}}) through ranx.

Two methods, both by ranx: `rrf` (reciprocal rank fusion, Cormack et al. 2009; k=60), weighted by running
ranx's weighted sum over the reciprocal-rank scores ranx's own `rrf` would give each run, and `minmax`
(each query's scores min-max normalised, then a weighted sum). `dense_weight` is the dense run's weight,
the lexical run gets 1 - dense_weight; for rrf a weight of 0.5 is plain RRF.

`fused_top_k` is the one hybrid code path: `rtune eval --hybrid` (HybridRanker) and the Retriever's hybrid mode
(rtune.index.retriever, with HybridSettings) both rank with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rtune.data.manifest import read_manifest
from rtune.data.records import Run
from rtune.data.run_file import ranked
from rtune.errors import InputError, check_choice

FUSION_METHODS = ("rrf", "minmax")
RRF_K = 60
DEFAULT_WEIGHTS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_CANDIDATES = 100


def check_weight(weight, name: str = "dense_weight") -> float:
    """`weight` as a float, or an InputError naming `name` when it is not a number within 0..1."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise InputError(f"{name} must be a number within 0..1, got {weight!r}")
    return float(weight)


@dataclass(frozen=True)
class HybridSettings:
    """BM25 + dense fusion, as `rtune eval --hybrid bm25 --fusion METHOD --dense-weight W` does it.

    method: rrf or minmax; dense_weight: the dense run's weight within 0..1 (BM25 gets 1 - it); rrf_k: RRF's k;
    candidates: each run's depth before fusion (at least the number of hits asked for; `rtune eval` fuses each
    run's top max(--ks)); language: BM25's stemmer/stopwords (None: the prepared dataset's recorded language when
    the corpus is given as its corpus.jsonl, else en).
    """
    method: str = "minmax"
    dense_weight: float = 0.5
    rrf_k: int = RRF_K
    candidates: int = DEFAULT_CANDIDATES
    language: str | None = None

    def __post_init__(self) -> None:
        check_choice("hybrid method", self.method, FUSION_METHODS)
        object.__setattr__(self, "dense_weight", check_weight(self.dense_weight))
        for name, low in (("rrf_k", 0), ("candidates", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"hybrid {name} must be an integer of at least {low}, got {value!r}")
        if self.language is not None and (not isinstance(self.language, str) or not self.language):
            raise InputError(f"hybrid language must be a language code such as 'en', got {self.language!r}")

    def depth(self, k: int) -> int:
        """Each run's depth when k fused hits are wanted."""
        return max(k, self.candidates)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, source: str | Path | None = None) -> HybridSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown hybrid setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}", source)
        try:
            return cls(**data)
        except InputError as err:
            raise InputError(err.message, source) from None

    @classmethod
    def from_record(cls, path: str | Path, **overrides) -> HybridSettings:
        """The fusion a run chose on dev: a pipeline hybrid baseline's `fusion.json` (or the eval folder holding it,
        `<run>/baselines/hybrid-<model>/eval-dev/output`), or an `rtune eval --hybrid` output folder (its manifest's
        --fusion, --dense-weight and BM25 language). `overrides` (e.g. candidates) replace what was read."""
        path = Path(path)
        file = path / "fusion.json" if path.is_dir() else path
        if file.is_file():
            try:
                record = json.loads(file.read_text(encoding="utf-8"))
                settings = cls(method=record["method"], dense_weight=record["dense_weight"])
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
                raise InputError(f"not a fusion record ({type(err).__name__}: {err})", file) from None
            except InputError as err:
                raise InputError(err.message, file) from None
        else:
            config = (read_manifest(path).get("config") or {}) if path.is_dir() else {}
            if not config.get("hybrid"):
                raise InputError("no fusion record here: expected a fusion.json or an `rtune eval --hybrid` output "
                                 "folder", path)
            try:
                settings = cls(method=config["fusion"], dense_weight=config["dense_weight"], language=config.get("language"))
            except KeyError as err:
                raise InputError(f"the eval manifest lacks {err}", path / "manifest.json") from None
            except InputError as err:
                raise InputError(err.message, path / "manifest.json") from None
        return replace(settings, **overrides)


def _ranx_run(run: Mapping[str, Mapping[str, float]], name: str):
    from ranx import Run as RanxRun

    return RanxRun({qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()}, name=name)


def ranks(docs: Mapping[str, float]) -> dict[str, int]:
    """Each document's rank within one query's run (1 = best score; ties broken by doc id), as fusion sees it."""
    ordered = ranked(docs)
    return {doc: rank for rank, (doc, _) in enumerate(ordered, start=1)}


def _reciprocal_ranks(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Each document's 1 / (k + rank) within its query (see `ranks`)."""
    return {qid: {doc: 1.0 / (k + rank) for doc, rank in ranks(docs).items()} for qid, docs in run.items()}


def fuse_runs(lexical: Run, dense: Run, method: str = "minmax", dense_weight: float = 0.5, k: int = RRF_K) -> Run:
    """The fused run, each query's documents from either run (a document missing from one run gets 0 there).
    A query present in only one run (or empty in one) keeps that run's documents, scaled by its weight."""
    check_choice("fusion method", method, FUSION_METHODS)
    check_weight(dense_weight)
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
    """Each query's k best documents, in rtune's order (rtune.data.run_file.ranked: ties by doc id)."""
    return {q: dict(ranked(docs)[:k]) for q, docs in run.items()}


def fused_top_k(lexical: Run, dense: Run, settings: HybridSettings, k: int) -> Run:
    """The hybrid ranking of `rtune eval --hybrid` and of the Retriever: the two runs (each query's candidates)
    fused by `settings`, then each query's k best."""
    return top_k(fuse_runs(lexical, dense, settings.method, settings.dense_weight, settings.rrf_k), k)


class HybridRanker:
    """A Ranker (rtune.index.rankers) that fuses a lexical and a dense ranker's top k with `fused_top_k`."""
    def __init__(self, lexical, dense, method: str = "minmax", dense_weight: float = 0.5, rrf_k: int = RRF_K) -> None:
        self.settings = HybridSettings(method=method, dense_weight=dense_weight, rrf_k=rrf_k)
        self.lexical, self.dense, self.method, self.dense_weight = lexical, dense, method, self.settings.dense_weight
        self.name = f"{lexical.name}+{dense.name} ({method}, dense weight {dense_weight:g})"

    def rank(self, queries: Mapping[str, str], k: int) -> Run:
        """Each run's top k (the evaluation depth) fused, cut to k."""
        return fused_top_k(self.lexical.rank(queries, k), self.dense.rank(queries, k), self.settings, k)
