"""JSON Lines reading with errors that name the file and line; atomic writing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from rtune.data.atomic import atomic_file
from rtune.errors import InputError

Source = str | Path | IO[str]


def source_name(source: Source) -> str:
    """A printable name for a path or a file-like object."""
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", "<stream>")


def open_text(source: Source) -> IO[str]:
    """Open a path for reading UTF-8 text, or pass a file-like object through."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError("file not found", path)
        return open(path, encoding="utf-8")
    return source


def json_reason(err: json.JSONDecodeError) -> str:
    """`Expecting value at column 3`: the parser's message with its position, and no `at at`."""
    return f"{err.msg.removesuffix(' at')} at column {err.colno}"


def not_utf8(err: UnicodeDecodeError, name: str) -> InputError:
    """The error for a file that is not UTF-8 text, naming it."""
    return InputError(f"not UTF-8 text ({err.reason}: byte 0x{err.object[err.start]:02x}); save the file as UTF-8", name)


def read_jsonl(source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for every non-blank line; a malformed line raises InputError."""
    name = source_name(source)
    handle = open_text(source)
    try:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"malformed JSON ({json_reason(err)})", name, number) from None
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, got {type(obj).__name__}", name, number)
            yield number, obj
    except UnicodeDecodeError as err:
        raise not_utf8(err, name) from None
    finally:
        if handle is not source:
            handle.close()


def require_text(obj: dict[str, Any], field: str, name: str, line: int, allow_empty: bool = False) -> str:
    """Return `obj[field]` as a string, or raise InputError naming the file, line and field."""
    if field not in obj:
        raise InputError(f"missing field '{field}'", name, line)
    value = obj[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field.endswith("id"):
        value = str(value)
    if not isinstance(value, str):
        raise InputError(f"field '{field}' must be a string, got {type(value).__name__}", name, line)
    if not allow_empty and not value.strip():
        raise InputError(f"field '{field}' is empty", name, line)
    return value


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically; return how many were written."""
    count = 0
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
