"""report.md, a self-contained report.html (figures inlined as base64 PNG) and results.csv, rebuilt from the
run folder alone after every step."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from rtune.data.atomic import atomic_file
from rtune.eval.report import HEADLINE, metrics_table
from rtune.eval.significance import CORRECTION, DEFAULT_TEST, compare_pairs, describe
from rtune.pipeline import plots
from rtune.pipeline.results_csv import write_results_csv
from rtune.pipeline.rows import per_query_of, run_rows, stage_record
from rtune.pipeline.systems import read_plan, read_systems

REPORT_MD, REPORT_HTML = "report.md", "report.html"
TRAINING_KINDS = ("train", "train-reranker")  # stages whose result carries a loss history


def verdict(result, alpha: float = 0.05) -> str:
    """A stage against its control, in words: significantly better, significantly worse, or no difference shown."""
    if result.p_adjusted is None or result.p_adjusted >= alpha:
        return "no significant difference"
    return "beats its control" if result.mean_difference > 0 else "WORSE than its control"


def against_controls(run_dir: Path, systems, metric: str) -> list[dict]:
    """Each stage against its equal-budget control, per split: the paired test on per-query `metric` (Holm-corrected
    over the run's controls), as dicts for the report and the benchmarks."""
    controls = [(system, next(s for s in systems if s.kind == "stage" and s.label == system.stage))
                for system in systems if system.kind == "control" and any(s.label == system.stage for s in systems)]
    out = []
    for split in ("dev", "test"):
        pairs = [(stage.label, per_query_of(control, run_dir, split, metric), per_query_of(stage, run_dir, split, metric))
                 for control, stage in controls]
        out += [{"stage": r.label, "split": split, "mean_difference": r.mean_difference, "wins": r.wins, "losses": r.losses,
                 "ties": r.ties, "p_value": r.p_value, "p_adjusted": r.p_adjusted, "verdict": verdict(r)}
                for r in compare_pairs(pairs) if r.queries]
    return out


def _columns(rows: list[dict], metric: str) -> list[str]:
    present = {k for r in rows for split in ("dev", "test") for k in r[split]}
    return list(dict.fromkeys([metric, *(c for c in HEADLINE if c in present)]))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _table(header: list[str], body: list[list]) -> list[list[str]]:
    return [header, *[[_fmt(v) for v in row] for row in body]]


def _sections(run_dir: Path) -> tuple[list[tuple[str, list[list[str]] | str]], list[str], dict]:
    """(title, table-or-text) sections, loud warnings, and the data the figures need."""
    rows = run_rows(run_dir)
    systems, meta = read_systems(run_dir)
    plan = read_plan(run_dir)
    metric = meta.get("metric", "ndcg@10")
    columns = _columns(rows, metric)
    sections: list[tuple[str, list[list[str]] | str]] = []
    warnings = [f"REFUSED: stage {r['label']} ({r['gate'].get('reason', '')})" for r in rows if not r["kept"]]
    pipeline = plan.get("pipeline", {})
    sections.append(("Run", f"pipeline {plan.get('source')} · dataset {pipeline.get('dataset')} · base model "
                            f"{pipeline.get('base_model')} · seed {pipeline.get('seed')} · final model: {meta.get('final')}"))
    for split in ("dev", "test"):
        body = [[r["label"], r["kind"], "yes" if r["kept"] else "REFUSED", *(r[split].get(c) for c in columns)] for r in rows]
        sections.append((f"Metrics on {split}", _table(["system", "kind", "kept", *columns], body)))
    steps = []
    for stage in plan.get("stages", []):
        stats = stage_record(run_dir, stage["name"]).get("stats") or {}
        steps.append([stage["name"], stage["stage"], stats.get("ended"), f"{stats.get('seconds', 0):.1f}" if stats else None,
                      f"{stats.get('peak_memory_mb', 0):.0f}" if stats else None])
    sections.append(("Stages", _table(["stage", "kind", "finished", "seconds", "peak MiB"], steps)))
    gates = [[r["label"], r["gate"].get("reason", "")] for r in rows if r["gate"].get("keep_if_better")]
    if gates:
        sections.append(("keep_if_better gates (dev)", _table(["stage", "decision"], gates)))
    fusion = [[r["label"], r["fusion"]["method"], r["fusion"]["dense_weight"], max(g[r["fusion"]["metric"]] for g in r["fusion"]["grid"])]
              for r in rows if r.get("fusion")]
    if fusion:
        sections.append((f"Fusion chosen on dev (by {metric}; test never used): BM25 + dense (hybrid), first stage + reranker (fused)",
                         _table(["system", "method", "weight of the dense run / reranker", f"dev {metric}"], fusion)))
    chain = [s for s in systems if s.label == "base" or s.kind == "stage"]
    for split in ("dev", "test"):
        pairs = [(f"{after.label} vs {before.label}", per_query_of(before, run_dir, split, metric),
                  per_query_of(after, run_dir, split, metric)) for before, after in zip(chain, chain[1:])]
        results = [r for r in compare_pairs(pairs) if r.queries]
        if results:
            sections.append((f"Per-query wins and losses on {metric} ({split}): {describe(DEFAULT_TEST, len(results))}",
                             _table(["comparison", "wins", "losses", "ties", "mean diff", "p-value", f"p ({CORRECTION})"],
                                    [[r.label, r.wins, r.losses, r.ties, r.mean_difference, r.p_value, r.p_adjusted]
                                     for r in results])))
    rows_of_controls = [[c["stage"], c["split"], c["mean_difference"], c["wins"], c["losses"], c["ties"], c["p_value"],
                         c["p_adjusted"], c["verdict"]] for c in against_controls(run_dir, systems, metric)]
    if rows_of_controls:
        controls = {row[0] for row in rows_of_controls}
        sections.append((f"Each stage against its equal-budget control (the same rows, in-batch negatives only) on {metric}: "
                         f"{describe(DEFAULT_TEST, len(controls))} per split",
                         _table(["stage", "split", "mean diff vs control", "wins", "losses", "ties", "p-value",
                                 f"p ({CORRECTION})", "verdict"], rows_of_controls)))
    reports, histories, mining, losses, resumed, training = {}, {}, [], {}, {}, []
    for stage in plan.get("stages", []):
        folder = run_dir / stage["name"] / "output"
        if stage["stage"] == "mine" and (folder / "mining_report.json").is_file():
            report = json.loads((folder / "mining_report.json").read_text(encoding="utf-8"))
            reports[stage["name"]] = report
            dropped = report.get("dropped_by_rule", {})
            estimate = (report.get("false_negative_estimate") or {}).get("share_above_best_positive")
            mining.append([stage["name"], report.get("queries"), report.get("negatives_kept"),
                           ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none",
                           report.get("short_queries"), report.get("queries_without_negatives"),
                           "-" if estimate is None else f"{estimate:.1%}"])
        result = (stage_record(run_dir, stage["name"]).get("stats") or {}).get("result") or {}
        if stage["stage"] == "train" and result.get("dev_history"):
            histories[stage["name"]] = result["dev_history"]
        if stage["stage"] in TRAINING_KINDS and result.get("loss_history"):
            losses[stage["name"]] = history = result["loss_history"]
            values = [h["loss"] for h in history]
            start = result.get("resumed_from") or {}
            if start:
                resumed[stage["name"]] = start["step"]
            training.append([stage["name"], stage["stage"], result.get("loss"), result.get("optimizer_steps"), values[0],
                             values[-1], min(values), f"{start['checkpoint']}" if start else "no"])
    if training:
        sections.append(("Training loss (plotted per stage in report.html)",
                         _table(["stage", "kind", "loss", "optimiser steps", "first", "last", "lowest", "resumed from"], training)))
    if mining:
        sections.append(("Mining: negatives kept and dropped (false-negative rules)",
                         _table(["stage", "queries", "negatives kept", "dropped by rule", "short queries", "without negatives",
                                 "est. false negatives (scored above the positive)"], mining)))
    return sections, warnings, {"rows": rows, "metric": metric, "reports": reports, "histories": histories,
                                "losses": losses, "resumed": resumed}


def _markdown(sections, warnings) -> str:
    lines = ["# rtune run report", ""]
    lines += [f"> **{w}**" for w in warnings] + ([""] if warnings else [])
    for title, content in sections:
        lines += [f"## {title}", ""]
        if isinstance(content, str):
            lines += [content, ""]
            continue
        header, *body = content
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body] + [""]
    return "\n".join(lines)


def _figures(data: dict) -> list[tuple[str, str]]:
    if not plots.available():
        return []
    rows = data["rows"]
    figures = [(f"{data['metric']} per system", plots.metric_per_system(rows, data["metric"])),
               ("Recall@k (test)", plots.recall_curves(rows)),
               ("Miner scores of positives and negatives", plots.score_distributions(data["reports"])),
               ("Training loss per training stage", plots.loss_curves(data["losses"], data["resumed"])),
               (f"Training: dev {data['metric']} per epoch", plots.training_curves(data["histories"], data["metric"]))]
    return [(title, png) for title, png in figures if png]


def _html(sections, warnings, figures) -> str:
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>rtune run report</title><style>",
           "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0 1.5em}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
           ".warn{background:#fee;border:2px solid #c00;padding:.6em;font-weight:bold}</style></head><body>",
           "<h1>rtune run report</h1>"]
    out += [f"<p class='warn'>{html.escape(w)}</p>" for w in warnings]
    for title, content in sections:
        out.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(content, str):
            out.append(f"<p>{html.escape(content)}</p>")
            continue
        header, *body = content
        out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
        out.append("</table>")
    if not figures and not plots.available():
        out.append("<p><i>figures need matplotlib (pip install matplotlib); tables only.</i></p>")
    for title, png in figures:
        out.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(run_dir: str | Path) -> Path:
    """Rewrite report.md, report.html and results.csv from what the run folder holds now."""
    run_dir = Path(run_dir)
    sections, warnings, data = _sections(run_dir)
    with atomic_file(run_dir / REPORT_MD) as handle:
        handle.write(_markdown(sections, warnings) + "\n")
    with atomic_file(run_dir / REPORT_HTML) as handle:
        handle.write(_html(sections, warnings, _figures(data)) + "\n")
    write_results_csv(run_dir, data["rows"])
    return run_dir / REPORT_HTML


def stage_table(run_dir: str | Path) -> str:
    """The terminal's closing table: each system's dev gate metric and test headline metrics."""
    from rich.console import Console


    rows = run_rows(Path(run_dir))
    _, meta = read_systems(Path(run_dir))
    metric = meta.get("metric", "ndcg@10")
    table_rows = {f"{r['label']}{'' if r['kept'] else ' (refused)'}": {f"dev {metric}": r["dev"].get(metric), **r["test"]}
                  for r in rows}
    table_rows = {k: {m: v for m, v in values.items() if v is not None} for k, values in table_rows.items()}
    columns = [f"dev {metric}", *[c for c in HEADLINE if any(c in v for v in table_rows.values())]]
    buffer = io.StringIO()
    Console(file=buffer, width=140, force_terminal=False).print(
        metrics_table(table_rows, columns=columns, title=f"test split (final model: {meta.get('final')})"))
    return buffer.getvalue().rstrip()
