"""Training groups (one JSON line per query): FlagEmbedding's `query/pos/neg` plus ids, scores, sources."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
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


_LIST_FIELDS = ("pos_ids", "neg_ids", "pos_scores", "neg_scores", "neg_ranks", "neg_sources")
_KNOWN = {"query", "pos", "neg", "query_id", "prompt", *_LIST_FIELDS}


def group_to_dict(group: TrainingGroup) -> dict:
    """Serialise a group; empty optional fields are left out."""
    row: dict = {"query": group.query, "pos": list(group.pos), "neg": list(group.neg)}
    if group.query_id:
        row["query_id"] = group.query_id
    for name in _LIST_FIELDS:
        value = getattr(group, name)
        if value:
            row[name] = list(value)
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


def read_groups(source: Source) -> Iterator[TrainingGroup]:
    """Read training groups; only `query`, `pos` (non-empty) and `neg` are required."""
    name = source_name(source)
    count = 0
    for line, obj in read_jsonl(source):
        query = require_text(obj, "query", name, line)
        pos = _text_list(obj, "pos", name, line, required=True)
        if not pos:
            raise InputError("field 'pos' is empty: a group needs at least one positive", name, line)
        neg = _text_list(obj, "neg", name, line, required=True)
        lists = {}
        for field in _LIST_FIELDS:
            value = obj.get(field) or []
            if not isinstance(value, list):
                raise InputError(f"field '{field}' must be a list", name, line)
            expected = len(pos) if field.startswith("pos") else len(neg)
            if value and len(value) != expected:
                raise InputError(f"field '{field}' has {len(value)} items for {expected} texts", name, line)
            lists[field] = tuple(value)
        extra = {k: v for k, v in obj.items() if k not in _KNOWN}
        count += 1
        yield TrainingGroup(query=query, pos=pos, neg=neg, query_id=str(obj.get("query_id") or ""),
                            prompt=str(obj.get("prompt") or ""), extra=extra, **lists)
    if count == 0:
        raise InputError("no training groups", name)


@contextlib.contextmanager
def group_writer(path: str | Path) -> Iterator:
    """Stream groups to `path` atomically: `with group_writer(p) as write: write(group)`."""
    with atomic_file(path) as handle:
        def write(group: TrainingGroup) -> None:
            handle.write(json.dumps(group_to_dict(group), ensure_ascii=False) + "\n")

        yield write
