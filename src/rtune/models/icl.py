"""In-context examples for queries, bge-en-icl style.

Each example becomes `<instruct>{instruction}\\n<query>{query}\\n<response>{response}`; the blocks are joined
by a blank line and put, followed by a blank line, before the formatted query. So with the instruction
format `<instruct>{}\\n<query>{}` the model sees
`<instruct>I\\n<query>q1\\n<response>r1\\n\\n<instruct>I\\n<query>q\\n...` (add `\\n<response>` to the query
format to end queries as bge-en-icl does). Examples are a fixed set (a list, or a file: JSON Lines of
{"query", "response"}, or a JSON list of them), or drawn from the training groups with a seed
(`draw_examples`, query + its first positive); either way the set is saved with the model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rtune.errors import InputError

EXAMPLE_FORMAT = "<instruct>{instruction}\n<query>{query}\n<response>{response}"
EXAMPLE_SEPARATOR = "\n\n"
EXAMPLE_KEYS = ("query", "response")


def _check_one(example: Any, where: str, line: int | None = None) -> dict[str, str]:
    if not isinstance(example, dict) or set(example) != set(EXAMPLE_KEYS) or not all(
            isinstance(example[k], str) and example[k].strip() for k in EXAMPLE_KEYS):
        raise InputError(f"an in-context example must be {{\"query\": text, \"response\": text}} (both non-empty), "
                         f"got {json.dumps(example)[:120]}", where, line)
    return {k: example[k] for k in EXAMPLE_KEYS}


def check_examples(examples: Iterable[Any], where: str = "icl_examples") -> tuple[dict[str, str], ...]:
    """Validated {query, response} examples (a list given inline, or loaded from a settings file)."""
    return tuple(_check_one(e, where, i) for i, e in enumerate(examples, start=1))


def read_examples(path: str | Path) -> tuple[dict[str, str], ...]:
    """Examples from a JSON list or a JSON Lines file; a malformed line raises InputError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read in-context examples (--icl-examples): {err}", path) from None
    if text.lstrip().startswith("["):
        try:
            return check_examples(json.loads(text), str(path))
        except json.JSONDecodeError as err:
            raise InputError(f"not a JSON list of examples: {err.msg}", path, err.lineno) from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(_check_one(json.loads(line), str(path), number))
        except json.JSONDecodeError as err:
            raise InputError(f"not a JSON object: {err.msg}", path, number) from None
    if not examples:
        raise InputError("no in-context examples in the file (--icl-examples)", path)
    return tuple(examples)


def icl_prefix(examples: Sequence[dict[str, str]], instruction: str | None) -> str:
    """The example blocks put before a query, ending in a blank line."""
    blocks = [EXAMPLE_FORMAT.format(instruction=instruction or "", **e) for e in examples]
    return EXAMPLE_SEPARATOR.join(blocks) + EXAMPLE_SEPARATOR


def draw_examples(groups: Sequence, n: int, seed: int) -> tuple[dict[str, str], ...]:
    """`n` examples (query, first positive) from distinct training groups, drawn with `seed`."""
    usable = [g for g in groups if g.query.strip() and g.pos and g.pos[0].strip()]
    if len(usable) < n:
        raise InputError(f"--icl-sample {n} needs {n} training groups with a positive, found {len(usable)}")
    picked = random.Random(seed).sample(range(len(usable)), n)
    return tuple({"query": usable[i].query, "response": usable[i].pos[0]} for i in sorted(picked))
