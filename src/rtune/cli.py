"""`rtune <stage>`: one subcommand per stage, each a thin layer over the library."""

from __future__ import annotations

import logging
import sys

import click
import typer
from rich.console import Console

from rtune import __version__
from rtune.cli_options import stage_command
from rtune.data.prepare import PrepareConfig
from rtune.errors import InputError
from rtune.eval.evaluate import EvalConfig
from rtune.mine.run import MineConfig
from rtune.train.config import TrainConfig

console = Console(stderr=True)
app = typer.Typer(help="Fine-tune a domain retriever from your documents and questions, in measured stages.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
          version: bool = typer.Option(False, "--version", help="print the version and exit")) -> None:
    if version:
        print(__version__)
        raise typer.Exit()
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


def _run_train(config: TrainConfig) -> None:
    from rtune.eval.report import metrics_table
    from rtune.train.bi_encoder import train_bi_encoder

    summary = train_bi_encoder(config)
    if summary["dev_history"]:
        rows = {("base" if h["epoch"] == 0 else f"epoch {h['epoch']:g}"): h for h in summary["dev_history"]}
        Console().print(metrics_table(rows, title=f"dev metrics ({config.dev_split})"))
    print(f"model saved to {config.output} ({summary['rows']['rows']} rows, {summary['rows_per_second']:.2f} rows/s)")


def _run_eval(config: EvalConfig) -> None:
    from rtune.eval.evaluate import evaluate
    from rtune.eval.report import metrics_grid

    means = evaluate(config)
    Console().print(metrics_grid(means, title=f"{config.model} on {config.dataset} / {config.split}"))
    if config.output:
        print(f"metrics, per-query values and run.trec written to {config.output}")


@app.command()
def compare(folders: list[str] = typer.Argument(..., help="eval output folders (each with metrics.json)"),
            metrics: str = typer.Option("ndcg@10,map@25,mrr@10,recall@10,recall@100", help="comma-separated")) -> None:
    """Print the metrics of several `rtune eval` outputs side by side."""
    import json
    from pathlib import Path

    from rtune.eval.report import metrics_table

    rows = {}
    for folder in folders:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise InputError("no metrics.json here (is it an `rtune eval --output` folder?)", folder)
        rows[Path(folder).name] = json.loads(path.read_text(encoding="utf-8"))
    Console().print(metrics_table(rows, columns=[m.strip() for m in metrics.split(",") if m.strip()]))


STAGES = {
    "prepare": (PrepareConfig, _run_prepare, "Convert raw data (SQuAD json, BEIR folder, QA-pairs jsonl) into a split BEIR dataset.", ("input",)),
    "mine": (MineConfig, _run_mine, "Mine negatives for the train queries and write training groups.", ()),
    "train": (TrainConfig, _run_train, "Fine-tune a bi-encoder on training groups (dev-evaluated every epoch).", ()),
    "eval": (EvalConfig, _run_eval, "Evaluate BM25 or a bi-encoder on a split: metrics, per-query values, TREC run.", ()),
}


def build_cli() -> click.Group:
    group = typer.main.get_command(app)
    for name, (config_cls, run, help_text, positional) in STAGES.items():
        group.add_command(stage_command(name, config_cls, run, help_text, positional))
    return group


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends with one clear message and exit code 2."""
    try:
        build_cli().main(args=argv, prog_name="rtune", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except (InputError, ValueError, FileExistsError, FileNotFoundError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
