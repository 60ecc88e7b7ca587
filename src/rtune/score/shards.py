"""Resumable work: finished shards of scores in a hidden folder beside the output, keyed by config + input.

Each shard file holds the scores of `shard_size` consecutive groups and is written atomically, so after a
SIGKILL every shard file present is complete. A changed config or input gives a different folder name,
so stale work is never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from rtune.data.atomic import atomic_file


def work_dir(output: Path, key: dict) -> Path:
    """`<output parent>/.<output name>.score-<hash of key>`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return output.parent / f".{output.name}.score-{digest}"


class ShardStore:
    """Shard files `shard-000000.json`: {"first": group index, "pos_scores": [[...]], "neg_scores": [[...]]}."""

    def __init__(self, folder: Path, key: dict) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        key_file = folder / "key.json"
        if not key_file.is_file():
            with atomic_file(key_file) as handle:
                json.dump(key, handle, indent=2, default=str)

    def path(self, index: int) -> Path:
        return self.folder / f"shard-{index:06d}.json"

    def read(self, index: int, first: int, count: int) -> tuple[list, list] | None:
        """The shard's (pos_scores, neg_scores) when it is finished and matches, else None."""
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("first") != first or len(data.get("pos_scores", [])) != count or len(data.get("neg_scores", [])) != count:
            return None
        return data["pos_scores"], data["neg_scores"]

    def write(self, index: int, first: int, pos_scores: list, neg_scores: list) -> None:
        with atomic_file(self.path(index)) as handle:
            json.dump({"first": first, "pos_scores": pos_scores, "neg_scores": neg_scores}, handle)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
