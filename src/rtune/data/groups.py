"""Training groups (one JSON line per query): FlagEmbedding's `query/pos/neg` plus ids, scores, sources."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.data.jsonl import Source, read_jsonl, require_text, source_name
from rtune.data.records import TrainingGroup
from rtune.errors import InputError

GROUPS_FILE = "groups.jsonl"


def groups_path(path: str | Path) -> Path:
    """A groups file given directly, or the groups.jsonl inside a `rtune mine` output folder."""
    path = Path(path)
    return path / GROUPS_FILE if path.is_dir() else path


# field -> (which texts it runs parallel to, what each item must be)
_LIST_FIELDS: dict[str, tuple[str, str]] = {
    "pos_ids": ("pos", "id"), "neg_ids": ("neg", "id"),
    "pos_scores": ("pos", "score"), "neg_scores": ("neg", "score"),
    "pos_miner_scores": ("pos", "score"), "neg_miner_scores": ("neg", "score_or_null"),
    "neg_ranks": ("neg", "int"), "neg_sources": ("neg", "str"), "neg_valid_pos": ("neg", "indices"),
}
_KNOWN = {"query", "pos", "neg", "query_id", "prompt", *_LIST_FIELDS}
TEACHER_FIELDS = ("pos_scores", "neg_scores")
NEGATIVE_FIELDS = ("neg", *(f for f, (texts, _) in _LIST_FIELDS.items() if texts == "neg"))


def cut_negatives(group: TrainingGroup, k: int | None) -> TrainingGroup:
    """The group with its first `k` negatives (the miner's best-ranked first) and their per-negative fields."""
    if k is None or len(group.neg) <= k:
        return group
    return dataclasses.replace(group, **{f: getattr(group, f)[:k] for f in NEGATIVE_FIELDS})


def group_to_dict(group: TrainingGroup) -> dict:
    """Serialise a group; empty optional fields are left out."""
    row: dict = {"query": group.query, "pos": list(group.pos), "neg": list(group.neg)}
    if group.query_id:
        row["query_id"] = group.query_id
    for name in _LIST_FIELDS:
        value = getattr(group, name)
        if value:
            row[name] = [list(v) if isinstance(v, tuple) else v for v in value]
    if group.prompt:
        row["prompt"] = group.prompt
    row.update(group.extra)
    return row


def _text_list(obj: dict, field: str, name: str, line: int, required: bool) -> tuple[str, ...]:
    if field not in obj:
        if required:
            raise InputError(f"missing field '{field}'", name, line)
        return ()
    value = obj[field]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"field '{field}' must be a list of strings", name, line)
    for i, text in enumerate(value):
        if not text.strip():
            raise InputError(f"field '{field}'[{i}] is empty", name, line)
    return tuple(value)


FLOAT32_MAX = 3.4028234663852886e38  # scores are used in float32: anything beyond overflows to inf there


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_score(value) -> bool:
    """A finite number that stays finite in float32, where training and scoring use it."""
    return _is_number(value) and abs(value) <= FLOAT32_MAX


def _check_item(kind: str, value, n_pos: int) -> bool:
    if kind == "score":
        return _is_score(value)
    if kind == "score_or_null":
        return value is None or _is_score(value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "indices":
        return isinstance(value, list) and all(isinstance(i, int) and 0 <= i < n_pos for i in value)
    return isinstance(value, str)  # id, str


_ITEM_WORDS = {"score": "a finite number", "score_or_null": "a finite number or null", "int": "an integer",
               "indices": "a list of positive indices", "id": "a string", "str": "a string"}


def _parallel_list(obj: dict, field: str, texts: dict[str, tuple], name: str, line: int) -> tuple:
    """A list that runs parallel to `pos` or `neg`: one valid item per text, or absent."""
    value = obj.get(field)
    if value is None or value == []:
        return ()
    side, kind = _LIST_FIELDS[field]
    if not isinstance(value, list):
        raise InputError(f"field '{field}' must be a list", name, line)
    if len(value) != len(texts[side]):
        raise InputError(f"field '{field}' has {len(value)} items for {len(texts[side])} texts in '{side}'", name, line)
    for i, item in enumerate(value):
        if kind == "id" and isinstance(item, int) and not isinstance(item, bool):
            continue
        if not _check_item(kind, item, len(texts["pos"])):
            if kind.startswith("score") and _is_number(item):  # finite in JSON, not where it is used
                raise InputError(f"field '{field}'[{i}] must be a finite number within float32's range (|x| <= 3.4e38; "
                                 f"scores are used in float32), got {item!r}", name, line)
            raise InputError(f"field '{field}'[{i}] must be {_ITEM_WORDS[kind]}, got {item!r}", name, line)
    if kind == "id":
        return tuple(str(v) for v in value)
    if kind == "indices":
        return tuple(tuple(v) for v in value)
    return tuple(float(v) if kind.startswith("score") and v is not None else v for v in value)


def read_groups(source: Source) -> Iterator[TrainingGroup]:
    """Read training groups; only `query`, `pos` (non-empty) and `neg` are required. Scores must be finite
    numbers, one per text; ids, ranks and sources likewise one per text."""
    name = source_name(source)
    count = 0
    for line, obj in read_jsonl(source):
        query = require_text(obj, "query", name, line)
        pos = _text_list(obj, "pos", name, line, required=True)
        if not pos:
            raise InputError("field 'pos' is empty: a group needs at least one positive", name, line)
        neg = _text_list(obj, "neg", name, line, required=True)
        lists = {field: _parallel_list(obj, field, {"pos": pos, "neg": neg}, name, line) for field in _LIST_FIELDS}
        extra = {k: v for k, v in obj.items() if k not in _KNOWN}
        count += 1
        yield TrainingGroup(query=query, pos=pos, neg=neg, query_id=str(obj.get("query_id") or ""),
                            prompt=str(obj.get("prompt") or ""), extra=extra, **lists)
    if count == 0:
        raise InputError("no training groups", name)


def sample_groups(items: Sequence, max_n: int | None, seed: int) -> list:
    """A seeded sample of at most `max_n` items (groups, or their positions), kept in their order; all of them
    when no cap. `rtune train`, `train-reranker`, `train-llm-reranker` and `score --max-queries` draw the same."""
    if max_n is None or max_n >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), max_n))
    return [items[i] for i in chosen]


def has_teacher_scores(group: TrainingGroup) -> bool:
    """True when every positive and negative carries a teacher score."""
    return len(group.pos_scores) == len(group.pos) and len(group.neg_scores) == len(group.neg)


@contextlib.contextmanager
def group_writer(path: str | Path) -> Iterator:
    """Stream groups to `path` atomically: `with group_writer(p) as write: write(group)`."""
    with atomic_file(path) as handle:
        def write(group: TrainingGroup) -> None:
            handle.write(json.dumps(group_to_dict(group), ensure_ascii=False) + "\n")

        yield write
