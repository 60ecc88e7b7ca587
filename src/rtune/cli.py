"""`rtune <stage>`: one subcommand per stage, each a thin layer over the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import typer
import typer._click as typer_click
from pydantic import ValidationError
from rich.console import Console

from rtune import __version__
from rtune.cli_options import stage_command
from rtune.data.prepare import PrepareConfig
from rtune.errors import InputError, Interrupted
from rtune.eval.evaluate import EvalConfig
from rtune.mine.run import MineConfig
from rtune.score.run import ScoreConfig
from rtune.models.merge import MergeConfig
from rtune.train.config import TrainConfig
from rtune.train.cross_encoder_config import RerankerTrainConfig
from rtune.train.llm_reranker import LLMRerankerTrainConfig

console = Console(stderr=True)
app = typer.Typer(help="Fine-tune a domain retriever from your documents and questions, in measured stages.",
                  no_args_is_help=True, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging, and tracebacks of internal errors"),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("rtune").setLevel(logging.DEBUG if verbose else logging.INFO)


def _run_prepare(config: PrepareConfig) -> None:
    from rich.table import Table

    from rtune.data.prepare import prepare

    stats = prepare(config)
    table = Table(title=f"{config.output}: {stats['documents']} documents")
    table.add_column("split")
    table.add_column("queries", justify="right")
    for split, sizes in stats["sizes"].items():
        table.add_row(split, str(sizes["queries"]))
    Console().print(table)
    print(f"query texts judged in more than one split (different positives, allowed): {stats['queries_texts_in_several_splits']}")
    if stats["true_leaks"]:
        print(f"true leaks kept because --allow-leaks was given: {stats['true_leaks']}")


def _run_mine(config: MineConfig) -> None:
    from rtune.mine.run import mine

    mine(config)
    print(f"training groups: {config.output / 'groups.jsonl'}; report: {config.output / 'mining_report.json'}")


def dev_rows(history: list[dict], start_model: str, best: dict | None) -> dict[str, dict]:
    """The dev table's rows: the starting checkpoint as "start (<model>)", then each epoch; the kept one marked."""
    rows = {}
    for h in history:
        label = f"start ({start_model})" if h["epoch"] == 0 else f"epoch {h['epoch']:g}"
        rows[label + (" (kept)" if best is not None and h is best else "")] = h
    return rows


def _run_train(config: TrainConfig) -> None:
    from rtune.eval.report import metrics_table
    from rtune.models.loading import display_name
    from rtune.train.bi_encoder import train_bi_encoder

    if not logging.getLogger("rtune").isEnabledFor(logging.DEBUG):  # per-evaluation metric dumps: -v only
        logging.getLogger("rtune.train.evaluator").setLevel(logging.WARNING)
    summary = train_bi_encoder(config)
    if summary["dev_history"]:
        rows = dev_rows(summary["dev_history"], display_name(config.model), summary.get("best"))
        Console().print(metrics_table(rows, title=f"dev metrics ({config.dev_split}); all metrics in "
                                                  f"{config.output}/rtune_manifest.json"))
    print(f"model saved to {config.output} ({summary['rows']['rows']} rows, {summary['rows_per_second']:.2f} rows/s)")


def _run_score(config: ScoreConfig) -> None:
    from rtune.score.run import score_groups

    stats = score_groups(config)
    print(f"teacher scores for {stats['pairs']} pairs of {stats['groups']} groups "
          f"({stats['pairs_per_second']} pairs/s, {stats['shards_resumed']} shards resumed) -> {config.output}")


def _run_train_reranker(config: RerankerTrainConfig) -> None:
    from rtune.eval.report import metrics_table
    from rtune.models.loading import display_name
    from rtune.train.cross_encoder import train_cross_encoder

    summary = train_cross_encoder(config)
    if summary["dev_history"]:
        rows = {f"{config.first_stage} alone": summary["first_stage"]["dev"],
                **dev_rows(summary["dev_history"], display_name(config.model), summary.get("best"))}
        Console().print(metrics_table(rows, title=f"dev metrics ({config.dev_split}): top {config.rerank_top} of {config.first_stage}, reranked"))
    print(f"reranker saved to {config.output} ({summary['examples_per_epoch']} {config.loss} examples per epoch, "
          f"{summary['examples_per_second']:.2f}/s)")


def _run_merge(config: MergeConfig) -> None:
    from rtune.models.merge import merge

    summary = merge(config)
    print(f"merged {summary['kind']} (base {summary['base_model']}) saved to {config.output}")


def _run_train_llm_reranker(config: LLMRerankerTrainConfig) -> None:
    from rtune.eval.report import metrics_table
    from rtune.models.loading import display_name
    from rtune.train.llm_reranker import train_llm_reranker

    summary = train_llm_reranker(config)
    if summary["dev_history"]:
        rows = {f"{config.first_stage} alone": summary["first_stage"]["dev"],
                **dev_rows(summary["dev_history"], display_name(config.model), summary.get("best"))}
        Console().print(metrics_table(rows, title=f"dev metrics ({config.dev_split}): top {config.rerank_top} of {config.first_stage}, reranked"))
    print(f"adapter saved to {config.output} ({summary['steps']} steps, last loss {summary['losses'][-1]:.4f}); "
          f"score with it: rtune score --model {config.output}, or merge it: rtune merge {config.output} --output MERGED")


def _run_eval(config: EvalConfig) -> None:
    from rtune.eval.evaluate import evaluate
    from rtune.eval.report import metrics_grid

    means = evaluate(config)
    Console().print(metrics_grid(means, title=f"{config.model} on {config.dataset} / {config.split}"))
    if config.output:
        print(f"metrics, per-query values and run.trec written to {config.output}")


def unique_labels(folders: list[str]) -> list[str]:
    """Row labels for `folders`: each folder's shortest path suffix that no other folder shares
    (`runs/eval/bm25`, `other/bm25` -> `eval/bm25`, `other/bm25`); a folder given twice is numbered."""
    import os
    from pathlib import Path

    parts = [Path(os.path.abspath(folder)).parts for folder in folders]
    depth = [1] * len(folders)
    while True:
        labels = [Path(*p[-d:]).as_posix() for p, d in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels)
                    if any(label == other and parts[i] != parts[j] for j, other in enumerate(labels))]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    return [label if labels[:i].count(label) == 0 else f"{label} ({labels[:i].count(label) + 1})"
            for i, label in enumerate(labels)]


def _compare_columns(requested: str | None, rows: dict[str, dict[str, float]]) -> list[str]:
    """The metric columns to show; a requested metric that no folder has is an error listing those they have."""
    from rtune.eval.report import HEADLINE

    available = list(dict.fromkeys(name for values in rows.values() for name in values))
    if requested is None:
        return [m for m in HEADLINE if m in available] or available
    columns = [m.strip() for m in requested.split(",") if m.strip()]
    unknown = [m for m in columns if m not in available]
    if unknown or not columns:
        raise InputError(f"--metrics: no folder has {', '.join(unknown) or 'any metric'}; available: {', '.join(available)}")
    return columns


@app.command()
def compare(folders: list[str] = typer.Argument(..., metavar="FOLDER...",
                                               help="eval output folders, `rtune run` folders or their results.csv"),
            metrics: str | None = typer.Option(None, help="comma-separated metrics [default: ndcg@10,map@25,mrr@10,"
                                                         "recall@10,recall@100, those the folders have]")) -> None:
    """Print the metrics of several `rtune eval` outputs or `rtune run` folders side by side."""
    from rtune.eval.report import metrics_table
    from rtune.pipeline.compare import load_rows

    rows = load_rows(folders, unique_labels(folders))
    Console().print(metrics_table(rows, columns=_compare_columns(metrics, rows)))


@app.command("run")
def run(pipeline: Path = typer.Argument(..., metavar="PIPELINE.yaml", help="pipeline file (see examples/)"),
        set_: list[str] | None = typer.Option(None, "--set", metavar="PATH=VALUE",
                                              help="override, e.g. stages.train_1.epochs=2 (repeatable)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan: what would run or be skipped, and why")) -> None:
    """Run a declared pipeline in one run folder: resumable, gated on dev, with baselines and a report."""
    from rtune.pipeline import run_pipeline

    try:
        run_pipeline(pipeline, set_ or [], dry_run)
    except KeyboardInterrupt:
        _interrupted("interrupted: finished stages are kept; run the same command again to resume")


STAGES = {
    "prepare": (PrepareConfig, _run_prepare, "Convert raw data (SQuAD json, BEIR folder, QA-pairs jsonl) into a split BEIR dataset.", ("input",)),
    "mine": (MineConfig, _run_mine, "Mine negatives for the train queries and write training groups.", ()),
    "train": (TrainConfig, _run_train, "Fine-tune a bi-encoder on training groups (dev-evaluated every epoch).", ()),
    "train-reranker": (RerankerTrainConfig, _run_train_reranker, "Fine-tune a cross-encoder (reranker) on training groups; "
                       "dev evaluation reranks a first stage's top candidates.", ()),
    "score": (ScoreConfig, _run_score, "Write teacher scores (pos_scores/neg_scores) into training groups with a "
              "cross-encoder, an LLM yes-token reranker or a bi-encoder; resumable.", ()),
    "eval": (EvalConfig, _run_eval, "Evaluate BM25 or a bi-encoder on a split: metrics, per-query values, TREC run.", ()),
    "merge": (MergeConfig, _run_merge, "Merge a LoRA adapter folder into its base: a full model that loads without peft.", ("adapter",)),
    "train-llm-reranker": (LLMRerankerTrainConfig, _run_train_llm_reranker, "Fine-tune an LLM yes-token reranker with LoRA "
                           "on training groups (listwise over each group).", ()),
}


# --help panels per stage: {title: field names}; "*encoder" is every shared encoder option; the rest: "Options".
PANELS: dict[str, dict[str, tuple[str, ...]]] = {
    "mine": {
        "Input and sampling": ("dataset", "split", "method", "range", "negatives", "strategy", "window", "seed",
                               "previous_groups", "previous_fraction", "batch_size", "use_title"),
        "BM25 (--method bm25)": ("language",),
        "Dense (--method dense)": ("model", "index_type", "*encoder"),
        "False-negative filters": ("max_score_ratio", "margin", "max_score", "backfill", "allow_collapsed"),
        "Output": ("output", "overwrite"),
    },
    "eval": {
        "Input": ("dataset", "split", "model", "use_title"),
        "BM25": ("language",),
        "Dense": ("index_type", "*encoder"),
        "Metrics": ("metrics", "ks"),
        "Rerank and hybrid": ("rerank", "rerank_top", "rerank_fusion", "rerank_weight", "hybrid", "fusion", "dense_weight"),
        "Output": ("output", "overwrite"),
    },
    "train": {
        "Input": ("groups", "dataset", "dev_split", "model", "max_queries", "metric_for_best"),
        "Encoder": ("*encoder",),
        "Checkpoints and resumption": ("checkpoint_dir", "save_steps", "resume_from_checkpoint"),
        "Output": ("output", "overwrite"),
    },
    "prepare": {"Input": ("input", "format", "corpus", "language"), "Split": ("split_by", "train", "dev", "test", "resplit",
                                                                             "seed", "allow_leaks"),
                "Output": ("output", "overwrite")},
}


def build_cli() -> click.Group:
    group = typer.main.get_command(app)
    for name, (config_cls, run, help_text, positional) in STAGES.items():
        group.add_command(stage_command(name, config_cls, run, help_text, positional, PANELS.get(name)))
    return group


# what a user can fix: exit 2 with one message. Anything else is a bug: exit 1 (traceback with -v).
USER_ERRORS = (InputError, ValidationError, FileExistsError, FileNotFoundError)
EXITS = (click.exceptions.Exit, typer.Exit)
USAGE_ERRORS = (click.ClickException, typer_click.ClickException)
ABORTS = (click.exceptions.Abort, typer.Abort)
INTERRUPTED = 130


def _interrupted(message: str) -> None:
    console.print(f"[bold yellow]{message}[/]", highlight=False, soft_wrap=True)
    sys.exit(INTERRUPTED)


def _internal_error(err: BaseException) -> None:
    if logging.getLogger("rtune").isEnabledFor(logging.DEBUG):
        console.print_exception()
    else:
        console.print(f"[bold red]internal error:[/] {type(err).__name__}: {err} (a bug in rtune; run with -v for the "
                      "traceback)", highlight=False, soft_wrap=True)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends with one clear message and exit 2, Ctrl-C with exit 130, a bug with exit 1."""
    try:
        code = build_cli().main(args=argv, prog_name="rtune", standalone_mode=False)
    except EXITS as done:
        sys.exit(done.exit_code)
    except USAGE_ERRORS as err:
        err.show()
        sys.exit(err.exit_code)
    except Interrupted as err:
        _interrupted(str(err))
    except ABORTS:
        _interrupted("interrupted; nothing was written")
    except USER_ERRORS as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)  # paths stay whole
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - the last line of defence
        _internal_error(err)
    if code == INTERRUPTED:  # typer turns a KeyboardInterrupt outside a stage into a returned 130
        _interrupted("interrupted; nothing was written")
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
