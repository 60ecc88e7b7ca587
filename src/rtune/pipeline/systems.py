"""The systems a run measures (baselines, model stages, hybrids, final model + reranker) and where their
evaluations live, saved as systems.json so the report and other readers need only the run folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rtune.data.atomic import atomic_file

SYSTEMS_FILE = "systems.json"
PLAN_FILE = "plan.json"
RERANKED_PREFIX = "reranked."


@dataclass
class System:
    """One row of the report. `kind`: baseline, stage, control (a stage's equal-budget control), hybrid, reranked or
    reranked_fused."""

    label: str
    kind: str
    stage: str | None
    kept: bool = True
    gate: dict = field(default_factory=dict)

    def eval_dir(self, run_dir: Path, split_tag: str) -> Path:
        """The eval output folder for 'dev' or 'test'."""
        if self.kind == "stage":
            return run_dir / self.label / f"eval-{split_tag}" / "output"
        if self.kind == "control":
            return run_dir / str(self.stage) / "control" / f"eval-{split_tag}" / "output"
        if self.kind == "reranked":
            return run_dir / str(self.stage) / f"eval-final-{split_tag}" / "output"
        if self.kind == "reranked_fused":
            return run_dir / str(self.stage) / f"fused-{split_tag}" / "output"
        return run_dir / "baselines" / self.label / f"eval-{split_tag}" / "output"

    def metric_prefix(self) -> str:
        return RERANKED_PREFIX if self.kind == "reranked" else ""


def write_systems(run_dir: Path, systems: list[System], plan, final: str) -> None:
    with atomic_file(run_dir / SYSTEMS_FILE) as handle:
        json.dump({"final": final, "metric": plan.pipeline.eval.metric, "systems": [asdict(s) for s in systems]}, handle, indent=2)


def read_systems(run_dir: Path) -> tuple[list[System], dict]:
    path = Path(run_dir) / SYSTEMS_FILE
    if not path.is_file():
        return [], {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return [System(**s) for s in data.get("systems", [])], data


def write_plan(run_dir: Path, plan) -> None:
    """The resolved plan: pipeline settings and each stage's kind, settings and references."""
    stages = [{"name": s.name, "stage": s.kind.name, "produces": s.produces, "settings": s.settings, "refs": s.refs,
               "keep_if_better": s.keep_if_better} for s in plan.stages]
    with atomic_file(run_dir / PLAN_FILE) as handle:
        json.dump({"pipeline": plan.pipeline.model_dump(mode="json", exclude={"stages"}), "source": str(plan.source),
                   "stages": stages}, handle, indent=2, default=str)


def read_plan(run_dir: Path) -> dict:
    path = Path(run_dir) / PLAN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
