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
    """One training line: a query, its positives and negatives (a superset of FlagEmbedding's format).

    `pos_scores` / `neg_scores` are TEACHER scores only (what FlagEmbedding's trainer distils); the miner's
    own scores and ranks live in `pos_miner_scores`, `neg_miner_scores` (None for a backfilled negative)
    and `neg_ranks`. `neg_valid_pos`, when present, lists for each negative the indices of the positives it
    may be trained against (positive-aware false-negative filtering is per positive).
    """

    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    query_id: str = ""
    pos_ids: tuple[str, ...] = ()
    neg_ids: tuple[str, ...] = ()
    pos_scores: tuple[float, ...] = ()
    neg_scores: tuple[float, ...] = ()
    pos_miner_scores: tuple[float, ...] = ()
    neg_miner_scores: tuple[float | None, ...] = ()
    neg_ranks: tuple[int, ...] = ()
    neg_sources: tuple[str, ...] = ()
    neg_valid_pos: tuple[tuple[int, ...], ...] = ()
    prompt: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


# qrels: query id -> document id -> graded relevance (BEIR / pytrec_eval shape).
Qrels = dict[str, dict[str, int]]
# a run: query id -> document id -> score (higher = better; see rtune.data.run_file for the tie order)
Run = dict[str, dict[str, float]]
