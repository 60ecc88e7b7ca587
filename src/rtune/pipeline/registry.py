"""The stage registry: every stage kind, as each declares itself beside its code (rtune.stage.StageSpec). The
CLI's commands and --help panels, the pipeline's stage kinds, references and freshness keys, and the pipeline
YAML schema are derived from this one table; adding a stage means declaring it and listing it here."""

from __future__ import annotations

from rtune.data.prepare import PREPARE
from rtune.errors import check_choice
from rtune.eval.evaluate import EVAL_STAGE
from rtune.mine.run import MINE
from rtune.models.merge import MERGE
from rtune.score.run import SCORE
from rtune.stage import StageSpec
from rtune.train.bi_encoder import TRAIN
from rtune.train.cross_encoder import TRAIN_RERANKER
from rtune.train.llm_reranker import TRAIN_LLM_RERANKER

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    PREPARE, MINE, TRAIN, TRAIN_RERANKER, TRAIN_LLM_RERANKER, SCORE, MERGE, EVAL_STAGE,
)}


def stage_kind(name: str) -> StageSpec:
    """The declared stage kind `name`, or an InputError listing the kinds a pipeline may declare."""
    return STAGES[check_choice("stage kind", name, pipeline_kinds())]


def pipeline_kinds() -> list[str]:
    return [name for name, spec in STAGES.items() if spec.pipeline]



def stages_markdown() -> str:
    """The stage table of docs/ARCHITECTURE.md, from the declarations."""
    lines = ["| stage | config | run | produces | may refer to | settings that do not change results |",
             "|---|---|---|---|---|---|"]
    for spec in STAGES.values():
        produces = spec.produces if isinstance(spec.produces, str) else f"{spec.produces.__name__}()"
        refs = ", ".join(f"{f} ({'/'.join(spec.ref_kinds(f))})" for f in spec.refs) or "-"
        own = sorted(getattr(spec.config, "NEUTRAL", ()))
        lines.append(f"| `{spec.name}` | `{spec.config.__module__}.{spec.config.__name__}` | "
                     f"`{spec.run.__module__}.{spec.run.__name__}` | {produces} | {refs} | "
                     f"{', '.join(own) if own else '-'} (+ common) |")
    return "\n".join(lines)
