"""One step of a run (a stage, or an evaluation of a model on a split): its freshness key, the check that it
is fresh, and the manifest written last, with the hashes of its outputs.

A step is fresh when its manifest exists, its key (config without the volatile fields + the content hashes of
its inputs) is unchanged, and every output still hashes to what the manifest recorded. Anything else (no
manifest after a crash, a changed setting, an upstream change, an edited or truncated output) re-runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtune.data.manifest import read_manifest, write_manifest

STEP_MANIFEST = "stage_manifest.json"
_FINGERPRINTS: dict[tuple, str] = {}


def _signature(path: Path) -> tuple:
    """Cheap identity of a file or folder's current state (names, sizes, mtimes), to memoise content hashes."""
    if path.is_file():
        stat = path.stat()
        return (str(path), stat.st_size, stat.st_mtime_ns)
    items = []
    for root, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            items.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
    return (str(path), tuple(sorted(items)))


# Files that describe a run rather than its result (timings, dates): left out of a stage's identity, so a stage
# rebuilt to the same result does not make everything downstream stale. Integrity checks hash every file.
METADATA_FILES = frozenset({"manifest.json", "rtune_manifest.json", "README.md", "mining_report.json"})


def _hash(path: Path, skip: frozenset[str]) -> str:
    from rtune.data.manifest import file_sha256

    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in skip):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(file_sha256(item).encode())
    return digest.hexdigest()


def content_hash(path: str | Path, identity: bool = False) -> str:
    """sha256 of a file or of a folder's files (every file; with `identity`, not the METADATA_FILES), memoised
    per state of the files."""
    path = Path(path)
    key = (_signature(path), identity)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _hash(path, METADATA_FILES if identity else frozenset())
    return _FINGERPRINTS[key]


def value_hash(value: str) -> str:
    """Hash of a path's content, or `id:<value>` for a hub id / name (the packaged default model resolves to its folder)."""
    from rtune.models.loading import resolve_model

    resolved = resolve_model(value) if value != "bm25" else value
    return content_hash(resolved, identity=True) if Path(resolved).exists() else f"id:{value}"


def step_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Freshness:
    fresh: bool
    reason: str
    record: dict


def _changes(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} {json.dumps(old.get(k), default=str)} -> {json.dumps(new.get(k), default=str)}" for k in keys
            if old.get(k) != new.get(k)]


def check(folder: Path, parts: dict[str, Any], outputs: dict[str, Path]) -> Freshness:
    """Whether the step in `folder` is fresh for `parts` ({'config': ..., 'inputs': {field: {'ref', 'sha'}}})."""
    manifest = read_manifest(folder, STEP_MANIFEST)
    stats = manifest.get("stats") or {}
    if not manifest:
        partial = folder.is_dir() and any(folder.iterdir())  # outputs or a killed run's temporaries
        return Freshness(False, "no manifest: an earlier run stopped before finishing" if partial else "never ran", {})
    old = stats.get("key_parts") or {}
    if stats.get("key") != step_key(parts):
        changed = _changes(old.get("config") or {}, parts["config"])
        if changed:
            return Freshness(False, "config changed: " + "; ".join(changed)[:300], stats)
        inputs = [name + (f" ({new.get('ref')})" if new.get("ref") else "")
                  for name, new in parts["inputs"].items() if (old.get("inputs") or {}).get(name) != new]
        return Freshness(False, "input changed: " + (", ".join(inputs) or "unknown"), stats)
    for name, path in outputs.items():
        if not path.exists() or content_hash(path) != (stats.get("outputs") or {}).get(name):
            return Freshness(False, f"output '{name}' differs from its manifest (corrupted or partial): rebuilding", stats)
    return Freshness(True, "fresh: config and inputs unchanged", stats)


def forget(folder: Path) -> None:
    """Remove the step's manifest before re-running it, so a crash midway never leaves a stale 'fresh' step."""
    try:
        (folder / STEP_MANIFEST).unlink()
    except FileNotFoundError:
        pass


def record(folder: Path, kind: str, config: dict, input_paths: list[str | Path], started: float, parts: dict[str, Any],
           outputs: dict[str, Path], extra: dict[str, Any]) -> dict:
    """Write the step's manifest (last, atomically) with the hashes of its outputs; return its stats."""
    import time

    stats = {"key": step_key(parts), "key_parts": parts,
             "outputs": {name: content_hash(path) for name, path in outputs.items()},
             "identity": {name: content_hash(path, identity=True) for name, path in outputs.items()},
             "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_manifest(folder, kind, config, [p for p in input_paths if Path(p).exists()], started, stats, name=STEP_MANIFEST)
    return stats


def read_record(folder: Path) -> dict:
    """The full manifest of the step in `folder` ({} when it never finished)."""
    return read_manifest(folder, STEP_MANIFEST)
