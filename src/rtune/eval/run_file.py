"""TREC run files: `qid Q0 docid rank score tag`, readable by any IR tool."""

from __future__ import annotations

from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.errors import InputError
from rtune.eval.metrics import Run


def write_run(path: str | Path, run: Run, tag: str = "rtune") -> None:
    """Write a run atomically, each query's documents by descending score."""
    tag = "_".join(tag.split()) or "rtune"
    with atomic_file(path) as handle:
        for qid, docs in run.items():
            for rank, (doc_id, score) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1]), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


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
