"""Stage `mine`: training groups for the train queries, negatives sampled from a miner's rank range.

BM25 or a dense model ranks the corpus (rtune.mine.config.MINERS); each query's candidates become a group
(rtune.mine.miner); groups are written as each query batch is done, so memory stays bounded by the corpus index.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir
from rtune.data.groups import GROUPS_FILE, group_writer, groups_path, read_groups
from rtune.data.manifest import write_manifest
from rtune.data.records import TrainingGroup
from rtune.data.text import describe_rule, document_text
from rtune.errors import DataCollapsedError, InputError
from rtune.index.collapse import collapse_warning
from rtune.index.ranking import CorpusIndex, with_progress
from rtune.mine.config import MINERS, REPORT_FILE, MineConfig, check_config
from rtune.mine.false_negatives import estimate, sample_query_ids
from rtune.mine.miner import Miner
from rtune.mine.report import MiningReport
from rtune.models.names import resolve_model
from rtune.models.rerankers.registry import load_reranker
from rtune.stage import DATASET, GROUPS, MODEL, StageSpec

log = logging.getLogger(__name__)


def document_rule(config: MineConfig) -> bool:
    """Whether documents are title + text: the option, else (dense) the model's saved rule, else on."""
    model = resolve_model(config.model) if config.method == "dense" else None
    return config.resolve_settings(model).use_title


def check_not_collapsed(report: MiningReport, allow: bool) -> None:
    """Refuse to publish groups where most queries kept no negative: training on them would silently
    drop those queries (a 'stage 2' trained on a handful of rows)."""
    empty = report.queries_without_negatives
    if report.queries and empty * 2 > report.queries:
        summary = "; ".join(report.summary_lines())
        if not allow:
            raise DataCollapsedError(
                f"{empty} of {report.queries} queries kept no negative, so the training data collapsed ({summary}). "
                "Loosen the false-negative rules or the range, use --backfill random, or pass --allow-collapsed to write them anyway")
        log.warning("%d of %d queries kept no negative; writing them anyway (--allow-collapsed)", empty, report.queries)


def load_previous(path: Path | None) -> dict[str, TrainingGroup]:
    if path is None:
        return {}
    file = groups_path(path)
    groups = {g.query_id: g for g in read_groups(file) if g.query_id}
    if not groups:
        raise InputError("previous round's groups carry no query_id to match queries by", file)
    return groups


def mine(config: MineConfig, source: CorpusIndex | None = None) -> dict:
    """Run the stage: write `<output>/groups.jsonl`, the mining report and a manifest; return the report.

    Queries are ranked in batches and groups written as they are made, so memory stays bounded by the
    corpus index (for dense: the embedding matrix), not by queries x candidates.
    """
    started = time.time()
    ensure_new_output(config.output, config.overwrite)
    dataset = read_beir(config.dataset)
    rank_range = check_config(config, dataset)
    previous = load_previous(config.previous_groups)
    use_title = document_rule(config)
    texts = {doc_id: document_text(doc, use_title) for doc_id, doc in dataset.corpus.items()}
    checker = (load_reranker(config.false_negative_check, config.false_negative_kind, device=config.device)
               if config.false_negative_check else None)  # a model that does not load fails before the mining
    source = source or MINERS[config.method](config, list(texts.values()))
    miner = Miner(config, dataset, rank_range, source.name, previous, texts)
    queries = dataset.split_queries(config.split)
    qids = list(queries)
    k = min(rank_range.end, len(miner.doc_ids))
    given = [miner.given_positions(q) for q in qids]
    checked = sample_query_ids(qids, config.false_negative_sample, config.seed) if checker is not None else set()
    sampled: list[TrainingGroup] = []
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp, group_writer(tmp / GROUPS_FILE) as write:
        batches = source.rank_all([queries[q].text for q in qids], k, config.batch_size, given=given)
        for batch in with_progress(batches, len(qids), f"mining ({source.name})"):  # the bar starts once queries are encoded
            for row in range(len(batch.positions)):
                qid = qids[batch.start + row]
                if batch.positions[row][0] >= 0:
                    miner.report.note_first(miner.doc_ids[batch.positions[row][0]])
                group = miner.group(qid, batch.positions[row], batch.scores[row], batch.given_scores[row])
                write(group)
                if qid in checked and group.neg:
                    sampled.append(group)
        stats = {**miner.report.as_dict(), "false_negative_filter": miner.filter.describe(),
                 "document_text": describe_rule(use_title), "dataset_dropped": dataset.dropped_summary(),
                 "seconds": round(time.time() - started, 2)}
        check_not_collapsed(miner.report, config.allow_collapsed)
        if checker is not None:
            stats["false_negative_estimate"] = estimate(sampled, checker, config.encode_batch_size)
            found = stats["false_negative_estimate"]
            log.info("false negatives, estimated by %s on %d queries: %s of %d negatives score above their best positive",
                     checker.name, found["queries"], f"{found['share_above_best_positive']:.1%}"
                     if found["share_above_best_positive"] is not None else "none", found["negatives"])
        (tmp / REPORT_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        provenance = {"miner": source.name, "miner_scores": "pos_miner_scores / neg_miner_scores", "teacher": None,
                      "bm25_language": getattr(source, "language", None),
                      "document_text": {"use_title": use_title, "rule": describe_rule(use_title)}}
        write_manifest(tmp, "mine", {**config.model_dump(mode="json"), **provenance},
                       [config.dataset] + ([config.previous_groups] if config.previous_groups else []), started, stats)
    for line in miner.report.summary_lines():
        log.info(line)
    if miner.report.looks_collapsed():
        log.warning("%s: its negatives are the same few documents for most queries; check it with rtune eval before "
                    "training on them", collapse_warning(f"the miner ({source.name})", miner.report.top1_share(), miner.report.ranked_queries()))
    return stats


def summary(config: MineConfig, stats: dict) -> list[str]:
    """The terminal's line after `rtune mine`."""
    return [f"training groups: {config.output / GROUPS_FILE}; report: {config.output / REPORT_FILE}"]


MINE = StageSpec(
    name="mine", config=MineConfig, run=mine, produces=GROUPS,
    help="Mine negatives for the train queries and write training groups.",
    refs={"dataset": DATASET, "model": MODEL, "previous_groups": GROUPS},
    defaults=lambda settings: {"dataset": DATASET, **({"model": MODEL} if settings.get("method") == "dense" else {})},
    compute=lambda config: config.compute_identity() if config.method == "dense" else None,
    panels={
        "Input and sampling": ("dataset", "split", "method", "range", "negatives", "strategy", "window", "seed",
                               "previous_groups", "previous_fraction", "batch_size", "use_title"),
        "BM25 (--method bm25)": ("language",),
        "Dense (--method dense)": ("model", "index_type", "*encoder"),
        "False-negative filters": ("max_score_ratio", "margin", "max_score", "backfill", "allow_collapsed"),
        "Output": ("output", "overwrite"),
    },
    summary=summary,
)
