"""TREC run files (`qid Q0 docid rank score tag`, readable by any IR tool) and rtune's one order of a run.

A run is ranked one way everywhere in rtune: score descending, ties by document id ascending (`ranked`). Run files
are written in that order with the rank column and the scores as exact as Python holds them (the shortest text
that reads back to the same float), so a run read back from its file is the run that was written: a pipeline's
hybrids fuse exactly what `rtune eval --hybrid` fuses. (trec_eval itself breaks exact score ties by docno
descending; rtune's metrics follow rtune's order, see rtune.eval.metrics.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.data.records import Run
from rtune.errors import InputError


def ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """One query's (document id, score) pairs in rtune's order: score descending, ties by document id ascending."""
    return sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))


def write_run(path: str | Path, run: Run, tag: str = "rtune") -> None:
    """Write a run atomically, each query's documents in rtune's order, scores exact."""
    tag = "_".join(tag.split()) or "rtune"
    with atomic_file(path) as handle:
        for qid, docs in run.items():
            for rank, (doc_id, score) in enumerate(ranked(docs), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {float(score)!r} {tag}\n")


def read_run(path: str | Path) -> Run:
    run: Run = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(f"expected 6 columns (qid Q0 docid rank score tag), got {len(parts)}", path, number)
            try:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
            except ValueError:
                raise InputError(f"score '{parts[4]}' is not a number", path, number) from None
    return run
