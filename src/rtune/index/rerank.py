"""Rerank a first stage's top candidates with a Reranker (cross-encoder or LLM yes-token)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rtune.data.records import Run
from rtune.data.run_file import ranked
from rtune.index.fusion import RRF_K, fuse_runs
from rtune.models.rerankers.batching import score_pairs
from rtune.models.rerankers.protocol import Reranker


def rerank_run(run: Run, queries: Mapping[str, str], corpus_texts: Mapping[str, str], reranker: Reranker,
               top_k: int, batch_size: int = 32, show_progress: bool = True) -> Run:
    """Each query's `top_k` first-stage documents re-scored by `reranker` and ranked by that score; the rest
    of the run follows in first-stage order, scored below every reranked document (so metrics at cut-offs
    beyond `top_k` stay comparable with the first stage). Pairs from all queries are scored together,
    sorted by length. A non-finite reranker score raises ValueError naming the query and document."""
    from tqdm.auto import tqdm

    if top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k}")
    ranked = first_stage_order(run)
    heads = [(qid, doc_id) for qid, docs in ranked.items() for doc_id in docs[:top_k]]
    pairs = [(queries[qid], corpus_texts[doc_id]) for qid, doc_id in heads]
    with tqdm(total=len(pairs), unit="pair", desc=f"reranking with {reranker.name}", disable=not show_progress) as bar:
        scores = score_pairs(reranker, pairs, batch_size, bar.update)  # (n_pairs,)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        qid, doc_id = heads[int(bad[0])]
        raise ValueError(f"reranker {reranker.name} gave a non-finite score ({scores[bad[0]]}) for query '{qid}', document '{doc_id}'")
    reranked: Run = {qid: {} for qid in ranked}
    for (qid, doc_id), score in zip(heads, scores):
        reranked[qid][doc_id] = float(score)
    return _tail_below(reranked, ranked, top_k)


def first_stage_order(run: Run) -> dict[str, list[str]]:
    """Each query's documents in rtune's order (rtune.data.run_file.ranked), the order reranking takes its top k from."""
    return {qid: [d for d, _ in ranked(docs)] for qid, docs in run.items()}


def _tail_below(head_scores: Run, ranked: Mapping[str, list[str]], top_k: int) -> Run:
    """`head_scores` (each query's top_k) with the rest of `ranked` after them, in first-stage order."""
    for qid, docs in ranked.items():
        floor = min(head_scores[qid].values(), default=0.0)
        for j, doc_id in enumerate(docs[top_k:]):
            head_scores[qid][doc_id] = floor - 1.0 - j
    return head_scores


def fuse_with_first_stage(first: Run, reranked: Run, top_k: int, method: str = "minmax",
                          reranker_weight: float = 0.5, rrf_k: int = RRF_K) -> Run:
    """The reranked top_k of each query ordered by a fusion of the first stage's and the reranker's scores over
    those documents (rtune.index.fusion.fuse_runs: minmax = each query's scores min-max normalised then
    (1 - w) x first + w x reranker; rrf = weighted reciprocal ranks), the rest after them in first-stage order.
    Score interpolation of a reranker with its first stage is the usual remedy for a reranker trained on little
    in-domain data, whose errors differ from BM25's; `reranker_weight` 1.0 is the reranker alone (for minmax)."""
    ranked = first_stage_order(first)
    missing = next(((qid, d) for qid, docs in ranked.items() for d in docs[:top_k] if d not in reranked.get(qid, {})), None)
    if missing is not None:
        raise ValueError(f"the reranked run has no score for query '{missing[0]}', document '{missing[1]}' of the first "
                         f"stage's top {top_k}: fuse a run with the reranking of that same run and top_k")
    heads_first = {qid: {d: float(first[qid][d]) for d in docs[:top_k]} for qid, docs in ranked.items()}
    heads_reranker = {qid: {d: float(reranked[qid][d]) for d in docs[:top_k]} for qid, docs in ranked.items()}
    fused = fuse_runs(heads_first, heads_reranker, method, reranker_weight, rrf_k)
    return _tail_below({qid: dict(fused.get(qid, {})) for qid in ranked}, ranked, top_k)
