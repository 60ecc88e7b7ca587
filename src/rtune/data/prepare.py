"""Stage `prepare`: raw data (SQuAD json, BEIR folder, QA pairs) -> a split BEIR dataset folder."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtune.data.atomic import atomic_dir, ensure_new_output
from rtune.data.beir import read_beir, read_corpus, write_beir
from rtune.data.dataset import RetrievalDataset
from rtune.data.jsonl import write_jsonl
from rtune.data.manifest import write_manifest
from rtune.data.qa_pairs import read_qa_pairs
from rtune.data.splits import SplitFractions, check_leaks, cross_split_report, split_dataset
from rtune.data.squad import read_squad
from rtune.errors import InputError
from rtune.stage import DATASET, PIPELINE_DATASET, StageSpec

log = logging.getLogger(__name__)
UNANSWERABLE_FILE = "unanswerable.jsonl"

InputFormat = Literal["auto", "squad", "beir", "qa-pairs"]


class PrepareConfig(BaseModel):
    """Everything `rtune prepare` needs."""

    model_config = ConfigDict(extra="forbid")

    input: Path = Field(description="raw data: SQuAD-style .json, a BEIR folder or QA-pairs .jsonl")
    output: Path = Field(description="new BEIR folder (corpus, queries, qrels/<split>.tsv, split report, manifest)")
    format: InputFormat = Field("auto", description="input format (auto: from the path)")
    corpus: Path | None = Field(None, description="corpus.jsonl that QA-pair lines point into by doc_id")
    language: str = Field("en", description="language of the texts (ISO code, e.g. en, de, vi), recorded in the manifest: "
                          "mine and eval run BM25 in it unless given --language")
    split_by: Literal["group", "query"] = Field("group", description="keep each group (SQuAD: article) or each query "
                                                "text + positive within one split")
    train: float = Field(0.7, description="share of groups/queries in train")
    dev: float = Field(0.1, description="share of groups/queries in dev")
    test: float = Field(0.2, description="share of groups/queries in test")
    resplit: bool = Field(False, description="BEIR input: pool its splits and split again")
    seed: int = Field(42, description="seed of the split")
    allow_leaks: bool = Field(False, description="write the dataset even when a query text with the same positive is in two splits")
    unanswerable: Literal["skip", "keep"] = Field(
        "skip", description="SQuAD questions without an answer (is_impossible, no answers): skip them (counted), or keep "
        "them apart in unanswerable.jsonl (never as queries: they have no positive)")
    overwrite: bool = Field(False, description="replace an existing --output")


def detect_format(path: Path) -> str:
    """Guess the input format from what is on disk."""
    if not path.exists():
        raise InputError("input not found (expected a BEIR folder, SQuAD .json or QA-pairs .jsonl)", path)
    if path.is_dir():
        return "beir"
    if path.suffix == ".jsonl":
        return "qa-pairs"
    if path.suffix == ".json":
        return "squad"
    raise InputError("cannot tell the format (expected a BEIR folder, SQuAD .json or QA-pairs .jsonl); pass --format", path)


def load_raw(config: PrepareConfig) -> tuple[RetrievalDataset, bool]:
    """Read the input; return the dataset and whether it still needs splitting."""
    fmt = config.format if config.format != "auto" else detect_format(config.input)
    if fmt == "squad":
        return read_squad(config.input), True
    if fmt == "qa-pairs":
        corpus = read_corpus(config.corpus) if config.corpus else None
        return read_qa_pairs(config.input, corpus), True
    dataset = read_beir(config.input)
    return dataset, config.resplit


def prepare(config: PrepareConfig) -> dict:
    """Run the stage; returns the report (sizes, cross-split texts) that is also saved in the manifest."""
    started = time.time()
    ensure_new_output(config.output, config.overwrite)  # before any work
    dataset, needs_split = load_raw(config)
    fractions = SplitFractions(train=config.train, dev=config.dev, test=config.test)
    if needs_split:
        dataset = split_dataset(dataset, fractions, by=config.split_by, seed=config.seed)
    else:
        log.info("keeping the BEIR folder's own splits (%s); pass --resplit to split again", ", ".join(dataset.qrels))
    report = cross_split_report(dataset)
    check_leaks(report, config.allow_leaks, str(config.input))
    stats = {"documents": len(dataset.corpus), **report.as_dict(), "dropped": dataset.dropped_summary()}
    if dataset.unanswerable():
        log.warning("%d question(s) have no answer (is_impossible, or no answers): %s", len(dataset.unanswerable()),
                    "kept apart in unanswerable.jsonl" if config.unanswerable == "keep" else "skipped (--unanswerable keep "
                    "writes them to unanswerable.jsonl)")
    if any(d["kind"] != "unanswerable" for d in dataset.dropped):
        dropped = stats["dropped"]
        log.warning("dropped %d empty document(s), %d judgement(s) of them and %d query(ies) left without a positive "
                    "(listed in split_report.json)", dropped["documents"], dropped["judgements"], dropped["queries"])
    with atomic_dir(config.output, overwrite=config.overwrite) as tmp:
        write_beir(tmp, dataset)
        if config.unanswerable == "keep" and dataset.unanswerable():
            write_jsonl(tmp / UNANSWERABLE_FILE, ({"_id": d["id"], "text": d["text"], "group": d["group"],
                                                   "paragraph": d["paragraph"]} for d in dataset.unanswerable()))
        (tmp / "split_report.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        inputs = [config.input] + ([config.corpus] if config.corpus else [])
        write_manifest(tmp, "prepare", config.model_dump(mode="json"), inputs, started, stats)
    return stats


def summary(config: PrepareConfig, stats: dict) -> list[str]:
    """The terminal's lines after `rtune prepare`."""
    sizes = ", ".join(f"{split} {counts['queries']}" for split, counts in stats["sizes"].items())
    lines = [f"{config.output}: {stats['documents']} documents; queries per split: {sizes}",
             f"query texts judged in more than one split (different positives, allowed): {stats['queries_texts_in_several_splits']}"]
    if stats["true_leaks"]:
        lines.append(f"true leaks kept because --allow-leaks was given: {stats['true_leaks']}")
    unanswerable = stats["dropped"].get("unanswerable", 0)
    if unanswerable:
        where = f"kept apart in {UNANSWERABLE_FILE}" if config.unanswerable == "keep" else "skipped"
        lines.append(f"questions without an answer (not queries: no positive): {unanswerable}, {where}")
    return lines


PREPARE = StageSpec(
    name="prepare", config=PrepareConfig, run=prepare, produces=DATASET,
    help="Convert raw data (SQuAD json, BEIR folder, QA-pairs jsonl) into a split BEIR dataset.",
    refs={"input": DATASET}, defaults=lambda settings: {"input": PIPELINE_DATASET}, positional=("input",),
    panels={"Input": ("input", "format", "corpus", "language"),
            "Split": ("split_by", "train", "dev", "test", "resplit", "seed", "allow_leaks"),
            "Output": ("output", "overwrite")},
    summary=summary,
)
