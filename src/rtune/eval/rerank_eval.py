"""`rtune eval --rerank MODEL`: the first stage's run reranked, scored beside the first stage."""

from __future__ import annotations

import logging

from rtune.data.records import Run
from rtune.data.text import document_text
from rtune.eval.metrics import compute_metrics
from rtune.index.rerank import fuse_with_first_stage, rerank_run
from rtune.models.rerankers.registry import load_reranker

log = logging.getLogger(__name__)

def add_reranked(config, dataset, run: Run, means: dict, per_query: dict, names: list[str]) -> tuple[dict, dict, dict[str, Run]]:
    """Rerank `run`'s top `config.rerank_top` with `config.rerank`; return the means and per-query values with
    the reranked ones added under `reranked.<metric>` (first-stage names unchanged) and, with
    `config.rerank_fusion`, the fused ones under `reranked_fused.<metric>`; and the runs by those names."""
    depth = max((len(docs) for docs in run.values()), default=0)
    if depth < config.rerank_top:
        log.info("the first stage returned at most %d documents per query; reranking those", depth)
    reranker = load_reranker(config.rerank, device=config.device, batch_size=config.encode_batch_size)
    queries = {qid: q.text for qid, q in dataset.split_queries(config.split).items()}
    needed = {doc_id for docs in run.values() for doc_id in docs}
    use_title = config.resolve_settings().use_title
    texts = {doc_id: document_text(dataset.corpus[doc_id], use_title) for doc_id in needed}
    runs = {"reranked": rerank_run(run, queries, texts, reranker, config.rerank_top, batch_size=config.encode_batch_size)}
    if config.rerank_fusion:
        runs["reranked_fused"] = fuse_with_first_stage(run, runs["reranked"], config.rerank_top, config.rerank_fusion,
                                                       config.rerank_weight)
    qrels = dataset.require_split(config.split)
    for name, scored in runs.items():
        r_means, r_per_query = compute_metrics(qrels, scored, names)
        means = {**means, **{f"{name}.{k}": v for k, v in r_means.items()}}
        per_query = {qid: {**values, **{f"{name}.{k}": v for k, v in r_per_query.get(qid, {}).items()}}
                     for qid, values in per_query.items()}
    return means, per_query, runs
