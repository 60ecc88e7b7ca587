"""rtune's lineage section appended to the sentence-transformers model card."""

from __future__ import annotations

import json
from pathlib import Path

from rtune.data.manifest import path_fingerprint, write_manifest
from rtune.models.names import display_name


def append_lineage(model_dir: Path, lineage: dict) -> None:
    """Add a '## rtune lineage' section (base model, data, hyper-parameters, dev metrics) to README.md."""
    card = model_dir / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    section = [
        "",
        "## rtune lineage",
        "",
        f"- base model: `{lineage['base_model']}`",
        f"- training groups: `{lineage['groups']['path']}` (sha256 `{lineage['groups']['sha256'][:16]}...`)",
        f"- training rows per epoch: {lineage['rows']['rows']} from {lineage['rows']['queries']} queries and "
        f"{lineage['rows']['positives']} positives (queries without negatives: {lineage['rows']['queries_without_negatives']})",
    ]
    if lineage.get("encoder_settings"):
        section.append(f"- encoder settings (saved in rtune_encoder.json): `{json.dumps(lineage['encoder_settings'])}`")
    if lineage.get("loss"):
        section.append(f"- loss: `{lineage['loss']}`")
    if lineage.get("teacher"):
        teacher = lineage["teacher"]
        section.append(f"- teacher (scores of the training groups): `{teacher.get('name')}`, settings "
                       f"`{json.dumps(teacher.get('settings', {}))}`")
    if lineage.get("dataset"):
        section.append(f"- dev evaluation: `{lineage['dataset']}` split `{lineage['dev_split']}`")
    if lineage.get("first_stage"):
        first = lineage["first_stage"]
        section.append(f"- dev evaluation reranks the top {first['rerank_top']} of `{first['ranker']}` (alone: "
                       f"{lineage['metric_for_best']} = {first['dev'][lineage['metric_for_best']]:.4f})")
    if lineage.get("resumed_from"):
        section.append(f"- resumed from `{lineage['resumed_from']['checkpoint']}` (optimiser step {lineage['resumed_from']['step']} "
                       f"of {lineage.get('optimizer_steps')}) of an interrupted run")
    if lineage.get("best"):
        section.append(f"- best checkpoint: epoch {lineage['best']['epoch']} ({lineage['metric_for_best']} = "
                       f"{lineage['best'][lineage['metric_for_best']]:.4f}; base model: {lineage['base_dev'][lineage['metric_for_best']]:.4f})")
    section += ["", "Hyper-parameters:", "", "```json", json.dumps(lineage["config"], indent=2), "```", ""]
    if lineage.get("dev_history"):
        section += ["Dev metrics per evaluation:", "", "```json", json.dumps(lineage["dev_history"], indent=2), "```", ""]
    card.write_text(text + "\n".join(section), encoding="utf-8")


def record_lineage(folder: Path, stage: str, config, summary: dict, started: float) -> None:
    """A trained model folder's lineage: the model card section and `rtune_manifest.json` (config, input
    hashes, versions, `summary`). `config` is a training stage's config (model, groups, dataset, dev split)."""
    append_lineage(folder, {**summary, "base_model": display_name(config.model), "config": config.model_dump(mode="json"),
                            "groups": path_fingerprint(config.groups_file()), "dataset": str(config.dataset or ""),
                            "dev_split": config.dev_split, "metric_for_best": config.metric_for_best})
    inputs = [config.groups_file()] + ([config.dataset] if config.dataset else [])
    write_manifest(folder, stage, config.model_dump(mode="json"), inputs, started, summary, name="rtune_manifest.json")
