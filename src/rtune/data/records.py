"""Frozen, typed records exchanged between stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Document:
    """A retrieval unit (BEIR corpus line)."""

    id: str
    text: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Query:
    """A question (BEIR queries line). `group` keys leak-free splits (e.g. the SQuAD article)."""

    id: str
    text: str
    group: str = ""


@dataclass(frozen=True, slots=True)
class TrainingGroup:
    """One training line: a query, its positives and negatives (a superset of FlagEmbedding's format)."""

    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    query_id: str = ""
    pos_ids: tuple[str, ...] = ()
    neg_ids: tuple[str, ...] = ()
    pos_scores: tuple[float, ...] = ()
    neg_scores: tuple[float, ...] = ()
    neg_ranks: tuple[int, ...] = ()
    neg_sources: tuple[str, ...] = ()
    prompt: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


# qrels: query id -> document id -> graded relevance (BEIR / pytrec_eval shape).
Qrels = dict[str, dict[str, int]]
