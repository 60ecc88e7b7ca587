"""Metric names users type (`ndcg@10`, `map@25`, `mrr@10`, `recall@100`, `hit@5`) -> ir-measures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rtune.data.records import Qrels, Run
from rtune.data.run_file import ranked
from rtune.errors import InputError, check_choice

# our name -> ir-measures measure family (computed by pytrec_eval, i.e. trec_eval's definitions)
METRIC_FAMILIES: dict[str, str] = {
    "ndcg": "nDCG",       # nDCG@k (trec_eval ndcg_cut)
    "map": "AP",          # MAP@k (trec_eval map_cut: AP over the top k, divided by all relevant)
    "mrr": "RR",          # MRR@k (reciprocal rank of the first relevant doc within the top k)
    "recall": "R",        # Recall@k
    "hit": "Success",     # hit@k: 1 if any relevant doc is in the top k
    "precision": "P",     # P@k
}
DEFAULT_METRICS: tuple[str, ...] = ("ndcg", "map", "mrr", "recall", "hit")
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 25, 100)



def metric_names(metrics: Iterable[str] = DEFAULT_METRICS, ks: Iterable[int] = DEFAULT_KS) -> list[str]:
    """Every `metric@k` to compute, validated against the registry."""
    names = []
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise InputError(f"cut-offs must be positive integers, got {ks}")
    for metric in metrics:
        check_choice("metric", metric, METRIC_FAMILIES)
        names.extend(f"{metric}@{k}" for k in ks)
    return names


def parse_metric(name: str):
    """`ndcg@10` -> the ir-measures measure object."""
    import ir_measures

    family, _, k = name.partition("@")
    if family not in METRIC_FAMILIES or not k.isdigit():
        raise InputError(f"unknown metric '{name}'; valid: <metric>@<k> with metric in {', '.join(METRIC_FAMILIES)}")
    return ir_measures.parse_measure(f"{METRIC_FAMILIES[family]}@{k}")


def rank_scores(docs: dict[str, float]) -> dict[str, float]:
    """One query's documents scored by their place in rtune's order (n for the first, 1 for the last): strictly
    decreasing, so a metric library's own tie rule cannot reorder what rtune ranked."""
    order = ranked(docs)
    return {doc: float(len(order) - i) for i, (doc, _) in enumerate(order)}


def compute_metrics(qrels: Qrels, run: Run, names: Sequence[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query values of each metric over the run as rtune ranks it (rtune.data.run_file.ranked). Every
    judged query counts: one missing from the run scores 0."""
    import ir_measures

    measures = {parse_metric(n): n for n in names}
    full_run = {qid: rank_scores(run.get(qid, {})) for qid in qrels}
    per_query: dict[str, dict[str, float]] = {qid: {n: 0.0 for n in names} for qid in qrels}
    for result in ir_measures.iter_calc(list(measures), qrels, {q: r for q, r in full_run.items() if r}):
        per_query[result.query_id][measures[result.measure]] = float(result.value)
    n = max(1, len(qrels))
    means = {name: sum(values[name] for values in per_query.values()) / n for name in names}
    return means, per_query
