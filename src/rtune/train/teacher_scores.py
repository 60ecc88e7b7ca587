"""Teacher scores for distillation: every group must carry them, and the teacher is named in the lineage."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rtune.data.groups import has_teacher_scores
from rtune.data.manifest import read_manifest
from rtune.data.records import TrainingGroup
from rtune.errors import InputError

log = logging.getLogger(__name__)


def _line_numbers(path: Path) -> list[int]:
    """1-based line number of each group (read_groups skips blank lines)."""
    with open(path, encoding="utf-8") as handle:
        return [number for number, line in enumerate(handle, start=1) if line.strip()]


def require_teacher_scores(groups: Sequence[TrainingGroup], path: Path, loss: str, scale: str = "logits") -> None:
    """InputError naming `path` and the line of the first group without a teacher score for every text, or
    (scale `probabilities`) with a score outside [0, 1]. Logits that all lie in [0, 1] get a warning."""
    def where(index: int) -> int | None:
        lines = _line_numbers(path)
        return lines[index] if index < len(lines) else None

    in_unit = True
    for index, group in enumerate(groups):
        if not has_teacher_scores(group):
            raise InputError(f"--loss {loss} distils teacher scores, but this group has no pos_scores/neg_scores for "
                             "every text; write them with `rtune score`", path, where(index))
        outside = [s for s in (*group.pos_scores, *group.neg_scores) if not 0.0 <= s <= 1.0]
        if outside and scale == "probabilities":
            raise InputError(f"--teacher-scores probabilities, but this group has the score {outside[0]} outside [0, 1]; "
                             "use --teacher-scores logits for raw scores", path, where(index))
        in_unit = in_unit and not outside
    if in_unit and scale == "logits":
        log.warning("every teacher score in %s lies in [0, 1]: if they are probabilities (a sigmoid), pass "
                    "--teacher-scores probabilities so that they are read as logits log(p / (1 - p))", path)


def groups_teacher(groups_file: Path) -> dict | None:
    """The teacher `rtune score` recorded in the groups folder's manifest.json ({name, settings}), if any."""
    return read_manifest(groups_file.parent).get("teacher")
