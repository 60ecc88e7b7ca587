"""A run folder read back as rows: one per system, with its dev and test metrics, settings, time and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rtune.pipeline.steps import read_record
from rtune.pipeline.systems import System, read_plan, read_systems


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def metrics_of(system: System, run_dir: Path, split_tag: str) -> dict[str, float]:
    """The system's means on 'dev' or 'test' ({} when not evaluated yet), without any 'reranked.' prefix."""
    means = _json(system.eval_dir(run_dir, split_tag) / "metrics.json") or {}
    prefix = system.metric_prefix()
    return {k.removeprefix(prefix): v for k, v in means.items() if k.startswith(prefix) and (prefix or "." not in k)}


def per_query_of(system: System, run_dir: Path, split_tag: str, metric: str) -> dict[str, float]:
    values = _json(system.eval_dir(run_dir, split_tag) / "per_query.json") or {}
    key = system.metric_prefix() + metric
    return {qid: v[key] for qid, v in values.items() if key in v}


def stage_record(run_dir: Path, name: str | None) -> dict:
    return read_record(run_dir / name) if name else {}


def run_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per system: label, kind, stage kind, kept, gate, fusion, seconds, peak memory, settings, dev/test metrics."""
    run_dir = Path(run_dir)
    systems, _ = read_systems(run_dir)
    plan = {s["name"]: s for s in read_plan(run_dir).get("stages", [])}
    rows = []
    for system in systems:
        record = stage_record(run_dir, system.stage if system.kind in ("stage", "reranked") else None)
        stats = record.get("stats") or {}
        fusion = _json(system.eval_dir(run_dir, "dev") / "fusion.json") if system.kind in ("hybrid", "reranked_fused") else None
        rows.append({
            "label": system.label, "kind": system.kind, "stage": (plan.get(system.stage) or {}).get("stage", ""),
            "kept": system.kept, "gate": system.gate, "fusion": fusion,
            "seconds": stats.get("seconds"), "peak_memory_mb": stats.get("peak_memory_mb"),
            "settings": record.get("config") or {}, "result": stats.get("result") or {},
            "dev": metrics_of(system, run_dir, "dev"), "test": metrics_of(system, run_dir, "test"),
        })
    return rows
