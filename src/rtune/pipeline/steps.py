"""One step of a run (a stage, or an evaluation of a model on a split): its freshness key, the check that it
is fresh, and the manifest written last, with the hashes of its outputs.

A step is fresh when its manifest exists, its key (the settings that change results, the compute identity and
the content identities of its inputs, rtune.data.identity) is unchanged, and every output still has the identity
the manifest recorded. Anything else (no manifest after a crash, a changed setting, an upstream change, another
device or precision, an edited or truncated output) re-runs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtune.data.identity import content_identity
from rtune.data.manifest import read_manifest, write_manifest
from rtune.models.names import resolve_model

STEP_MANIFEST = "stage_manifest.json"


def value_hash(value: str) -> str:
    """Hash of a path's content, or `id:<value>` for a hub id / name (the packaged default model resolves to its folder)."""
    resolved = resolve_model(value) if value != "bm25" else value
    return content_identity(resolved) if Path(resolved).exists() else f"id:{value}"


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
        if old.get("compute") != parts.get("compute"):
            return Freshness(False, f"device or precision changed: {old.get('compute')} -> {parts.get('compute')}", stats)
        inputs = [name + (f" ({new.get('ref')})" if new.get("ref") else "")
                  for name, new in parts["inputs"].items() if (old.get("inputs") or {}).get(name) != new]
        return Freshness(False, "input changed: " + (", ".join(inputs) or "unknown"), stats)
    for name, path in outputs.items():
        if not path.exists() or content_identity(path) != output_hashes(stats).get(name):
            return Freshness(False, f"output '{name}' differs from its manifest (corrupted or partial): rebuilding", stats)
    return Freshness(True, "fresh: config and inputs unchanged", stats)


def output_hashes(stats: dict) -> dict[str, str]:
    """The content identity of each output a step's manifest recorded (manifests of rtune 0.1's first runs kept it
    under `identity`, beside whole-folder hashes under `outputs`)."""
    return stats.get("identity") or stats.get("outputs") or {}


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
             "outputs": {name: content_identity(path) for name, path in outputs.items()},
             "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_manifest(folder, kind, config, [p for p in input_paths if Path(p).exists()], started, stats, name=STEP_MANIFEST)
    return stats


def read_record(folder: Path) -> dict:
    """The full manifest of the step in `folder` ({} when it never finished)."""
    return read_manifest(folder, STEP_MANIFEST)
