"""results.csv: one row per system with every hyper-parameter and every metric (dev.* and test.*)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rtune.data.atomic import atomic_file

RESULTS_FILE = "results.csv"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def csv_rows(rows: list[dict]) -> list[dict[str, Any]]:
    flat = []
    for row in rows:
        out: dict[str, Any] = {"system": row["label"], "kind": row["kind"], "stage": row["stage"], "kept": row["kept"],
                               "seconds": row["seconds"], "peak_memory_mb": row["peak_memory_mb"]}
        if row.get("fusion"):
            out.update({"fusion.method": row["fusion"]["method"], "fusion.dense_weight": row["fusion"]["dense_weight"]})
        _flatten("settings", {k: v for k, v in row["settings"].items() if k not in ("output", "overwrite")}, out)
        _flatten("dev", row["dev"], out)
        _flatten("test", row["test"], out)
        flat.append(out)
    return flat


def write_results_csv(run_dir: Path, rows: list[dict]) -> Path:
    flat = csv_rows(rows)
    columns = list(dict.fromkeys(key for row in flat for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    with atomic_file(run_dir / RESULTS_FILE) as handle:
        handle.write(buffer.getvalue())
    return run_dir / RESULTS_FILE
