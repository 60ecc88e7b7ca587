"""`rtune compare` inputs: eval folders (metrics.json), run folders (results.csv) and results.csv files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rtune.errors import InputError
from rtune.pipeline.results_csv import RESULTS_FILE


def _csv_rows(path: Path, label: str, split: str) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                values = {k.split(".", 1)[1]: float(v) for k, v in row.items() if k and k.startswith(f"{split}.") and v not in ("", None)}
                if values:
                    rows[f"{label}/{row.get('system', '?')}"] = values
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
        raise InputError(f"not a results.csv ({err})", path) from None
    return rows


def load_rows(paths: list[str], labels: list[str] | None = None, split: str = "test") -> dict[str, dict[str, float]]:
    """Label -> metrics for each path: an `rtune eval` folder (its metrics.json), an `rtune run` folder or its
    results.csv (one row per system, `split` metrics). `labels` defaults to the paths themselves."""
    rows: dict[str, dict[str, float]] = {}
    for label, given in zip(labels or paths, paths):
        path = Path(given)
        if path.is_dir() and (path / RESULTS_FILE).is_file():
            rows.update(_csv_rows(path / RESULTS_FILE, label, split))
        elif path.is_file() and path.suffix == ".csv":
            rows.update(_csv_rows(path, label, split))
        elif (path / "metrics.json").is_file():
            try:
                rows[label] = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise InputError(f"not a metrics file ({err})", path / "metrics.json") from None
        else:
            raise InputError("no metrics.json or results.csv here (is it an `rtune eval --output` or `rtune run` folder?)", path)
    return rows
