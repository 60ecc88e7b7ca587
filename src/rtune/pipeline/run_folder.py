"""A run folder is rtune's: a marker file says so. `rtune run` writes only into an empty or missing folder or one
that carries the marker (or, from before the marker, a plan.json), and never into, or around, one of its inputs:
a folder of the user's own files, or the dataset folder, is refused before any work."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rtune import __version__
from rtune.data.atomic import atomic_file, check_writable
from rtune.errors import InputError

MARKER = ".rtune-run"
LEGACY_MARKERS = ("plan.json",)  # run folders written before the marker existed


def is_run_folder(folder: Path) -> bool:
    return (folder / MARKER).is_file() or any((folder / name).is_file() for name in LEGACY_MARKERS)


def _inputs(plan) -> dict[str, Path]:
    """The paths a plan reads: the dataset, a base model folder and every path-valued stage setting."""
    paths = {"pipeline field 'dataset'": Path(plan.pipeline.dataset)}
    if Path(plan.pipeline.base_model).exists():
        paths["pipeline field 'base_model'"] = Path(plan.pipeline.base_model)
    for stage in plan.stages:
        for name, value in stage.settings.items():
            if isinstance(value, (str, Path)) and str(value) and Path(value).exists():
                paths[f"stage '{stage.name}' field '{name}'"] = Path(value)
    return paths


def check_run_folder(folder: Path, plan) -> None:
    """Refuse, before any work: a folder that is not empty and not an rtune run folder, a run folder equal to or
    inside an input, an input inside the run folder (a later clean-up would take it), or an unwritable place."""
    run = folder.expanduser().resolve()
    for where, path in _inputs(plan).items():
        resolved = path.expanduser().resolve()
        if resolved == run or resolved in run.parents or (run in resolved.parents and not is_run_folder(run)):
            relation = "is" if resolved == run else "is inside" if resolved in run.parents else "holds"
            raise InputError(f"the run folder {relation} the input given as {where} ({path}): choose another "
                             "'output' in the pipeline", folder)
    if folder.exists() and not folder.is_dir():
        raise InputError("the run folder is a file; choose another 'output' in the pipeline", folder)
    if folder.is_dir() and any(folder.iterdir()) and not is_run_folder(folder):
        raise InputError("this folder is not empty and is not an rtune run folder (it has no .rtune-run marker); rtune "
                         "would write its stages, reports and log among your files: choose an empty or new folder as "
                         "'output' in the pipeline (or --set output=FOLDER)", folder)
    check_writable(folder, "run folder", inside=folder.is_dir())


def mark_run_folder(folder: Path) -> None:
    """Create the folder if needed and leave the marker that makes it an rtune run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).is_file():
        with atomic_file(folder / MARKER) as handle:
            json.dump({"rtune": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
