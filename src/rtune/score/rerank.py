"""Rerank a first stage's top candidates with a Reranker (cross-encoder or LLM yes-token)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rtune.score.batching import score_pairs
from rtune.score.reranker import Reranker

Run = dict[str, dict[str, float]]


def rerank_run(run: Run, queries: Mapping[str, str], corpus_texts: Mapping[str, str], reranker: Reranker,
               top_k: int, batch_size: int = 32, show_progress: bool = True) -> Run:
    """Each query's `top_k` first-stage documents re-scored by `reranker` and ranked by that score; the rest
    of the run follows in first-stage order, scored below every reranked document (so metrics at cut-offs
    beyond `top_k` stay comparable with the first stage). Pairs from all queries are scored together,
    sorted by length. A non-finite reranker score raises ValueError naming the query and document."""
    from tqdm.auto import tqdm

    if top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k}")
    ranked = {qid: sorted(docs, key=lambda d: -docs[d]) for qid, docs in run.items()}
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
    for qid, docs in ranked.items():
        floor = min(reranked[qid].values(), default=0.0)
        for j, doc_id in enumerate(docs[top_k:]):
            reranked[qid][doc_id] = floor - 1.0 - j
    return reranked
