"""The small manifest every stage writes beside its output: config, inputs, versions, figures, time."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
from pathlib import Path
from typing import Any

from rtune.data.atomic import atomic_file
from rtune.data.identity import content_identity

MANIFEST_NAME = "manifest.json"
TRACKED_PACKAGES = ("rtune", "torch", "transformers", "sentence-transformers", "bm25s", "faiss-cpu", "ir-measures", "numpy")


def path_fingerprint(path: str | Path) -> dict[str, Any]:
    """An input as a manifest records it: its path and content identity (rtune.data.identity)."""
    return {"path": str(path), "sha256": content_identity(path)}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(
    folder: str | Path,
    stage: str,
    config: dict[str, Any],
    inputs: list[str | Path],
    started: float,
    stats: dict[str, Any] | None = None,
    name: str = MANIFEST_NAME,
) -> Path:
    """Write `<folder>/<name>` atomically and return its path."""
    manifest = {
        "stage": stage,
        "config": config,
        "inputs": [path_fingerprint(p) for p in inputs],
        "versions": library_versions(),
        "stats": stats or {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 3),
    }
    target = Path(folder) / name
    with atomic_file(target) as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    return target


def read_manifest(folder: str | Path, name: str = MANIFEST_NAME) -> dict[str, Any]:
    path = Path(folder) / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
