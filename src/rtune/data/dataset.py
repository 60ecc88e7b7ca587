"""A retrieval dataset in memory: corpus, queries and qrels per split, with validation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from rtune.data.records import Document, Qrels, Query
from rtune.errors import InputError

SPLITS = ("train", "dev", "test")


@dataclass
class RetrievalDataset:
    """Corpus + queries + qrels per split. Ids are unique; every qrel names a known query and document."""

    corpus: dict[str, Document]
    queries: dict[str, Query]
    qrels: dict[str, Qrels] = field(default_factory=dict)
    name: str = ""
    dropped: list[dict] = field(default_factory=list)  # empty documents, their judgements, queries left without a positive,
    # questions without an answer (kind "unanswerable")

    def unanswerable(self) -> list[dict]:
        """The questions set aside because they have no answer (SQuAD 2.0's impossible ones)."""
        return [d for d in self.dropped if d["kind"] == "unanswerable"]

    def split_queries(self, split: str) -> dict[str, Query]:
        """The queries judged in `split`, in qrels order."""
        return {qid: self.queries[qid] for qid in self.require_split(split)}

    def require_split(self, split: str) -> Qrels:
        """The qrels of `split`, or a clear error listing the splits this dataset has."""
        if split not in self.qrels:
            have = ", ".join(sorted(self.qrels)) or "none"
            raise InputError(f"dataset has no '{split}' split (it has: {have})", self.name or None)
        return self.qrels[split]

    def positives(self, split: str, query_id: str) -> list[str]:
        """Document ids judged relevant (score > 0) for a query."""
        return [doc for doc, rel in self.qrels[split][query_id].items() if rel > 0]

    def dropped_summary(self) -> dict:
        """Counts and examples of what reading dropped (for reports and manifests)."""
        kinds = {"document": "documents", "judgement": "judgements", "query": "queries", "unanswerable": "unanswerable"}
        summary: dict = {name: sum(d["kind"] == kind for d in self.dropped) for kind, name in kinds.items()}
        summary["details"] = self.dropped[:100]
        return summary


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive key for 'identical text' checks."""
    return " ".join(text.split()).casefold()


def text_digest(text: str) -> bytes:
    """Collision-resistant, deterministic key of a text up to case and whitespace."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


def check_split_disjoint(qrels: dict[str, Qrels], where: str | None = None) -> None:
    """A query id may be judged in one split only."""
    seen: dict[str, str] = {}
    for split, table in qrels.items():
        for qid in table:
            if qid in seen:
                raise InputError(f"query '{qid}' is judged in both '{seen[qid]}' and '{split}'", where)
            seen[qid] = split
