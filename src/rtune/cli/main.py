"""`rtune <stage>`: one subcommand per stage, each a thin layer over the library."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from pathlib import Path

import click
import typer
import typer._click as typer_click
from pydantic import ValidationError
from rich.console import Console

from rtune import __version__
from rtune.cli.options import stage_command
from rtune.data.atomic import FULL_DISK, atomic_file
from rtune.errors import InputError, Interrupted, OutOfSpace
from rtune.eval.report import HEADLINE, metrics_table
from rtune.pipeline.compare import load_rows
from rtune.pipeline.registry import STAGES
from rtune.pipeline.runner import run_pipeline
from rtune.pipeline.schema import pipeline_json_schema
from rtune.stage import StageSpec

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


def run_stage(spec: StageSpec, config) -> None:
    """Run one stage from the command line: the library function, then the stage's own summary lines."""
    if not logging.getLogger("rtune").isEnabledFor(logging.DEBUG):  # per-evaluation metric dumps: -v only
        logging.getLogger("rtune.train.evaluator").setLevel(logging.WARNING)
    result = spec.run(config)
    for line in spec.summary(config, result) if spec.summary is not None else ():
        if isinstance(line, str):
            print(line)
        else:  # a rich renderable (a metrics table)
            Console().print(line)


def unique_labels(folders: list[str]) -> list[str]:
    """Row labels for `folders`: each folder's shortest path suffix that no other folder shares
    (`runs/eval/bm25`, `other/bm25` -> `eval/bm25`, `other/bm25`); a folder given twice is numbered."""
    import os

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
    rows = load_rows(folders, unique_labels(folders))
    Console().print(metrics_table(rows, columns=_compare_columns(metrics, rows)))


@app.command("run")
def run(pipeline: Path = typer.Argument(..., metavar="PIPELINE.yaml", help="pipeline file (see examples/)"),
        set_: list[str] | None = typer.Option(None, "--set", metavar="PATH=VALUE",
                                              help="override, e.g. stages.train_1.epochs=2 (repeatable)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan: what would run or be skipped, and why")) -> None:
    """Run a declared pipeline in one run folder: resumable, gated on dev, with baselines and a report."""
    try:
        run_pipeline(pipeline, set_ or [], dry_run)
    except KeyboardInterrupt:
        _interrupted("interrupted: finished stages are kept; run the same command again to resume")


@app.command()
def schema(output: Path | None = typer.Option(None, "--output", help="write it to this file [default: print it]")) -> None:
    """The JSON Schema of a pipeline file, for editors (docs/pipeline.schema.json holds this version's)."""
    import json


    text = json.dumps(pipeline_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        print(text, end="")
        return
    with atomic_file(output) as handle:
        handle.write(text)


def build_cli() -> click.Group:
    """The typer app's commands plus one command per registered stage (options from its config, panels, summary)."""
    group = typer.main.get_command(app)
    for spec in STAGES.values():
        group.add_command(stage_command(spec.name, spec.config, functools.partial(run_stage, spec), spec.help,
                                        spec.positional, spec.panels))
    return group


# what a user can fix: exit 2 with one message. The machine's fault (a full disk): exit 1 with one message. Anything
# else is a bug: exit 1 (traceback with -v).
USER_ERRORS = (InputError, ValidationError, FileExistsError, FileNotFoundError)
EXITS = (click.exceptions.Exit, typer.Exit)
USAGE_ERRORS = (click.ClickException, typer_click.ClickException)
ABORTS = (click.exceptions.Abort, typer.Abort)
INTERRUPTED, TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
_signal_received: list[int] = []


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (schedulers, `docker stop`) unwinds like Ctrl-C: finished stages kept, temporaries removed, the lock
    released; the exit code says which signal it was."""
    _signal_received.append(signum)
    raise KeyboardInterrupt


def _interrupted(message: str) -> None:
    if _signal_received:
        message = message.replace("interrupted", "terminated (SIGTERM)", 1)
    console.print(f"[bold yellow]{message}[/]", highlight=False, soft_wrap=True)
    sys.exit(TERMINATED if _signal_received else INTERRUPTED)


def _internal_error(err: BaseException) -> None:
    if logging.getLogger("rtune").isEnabledFor(logging.DEBUG):
        console.print_exception()
    else:
        console.print(f"[bold red]internal error:[/] {type(err).__name__}: {err} (a bug in rtune; run with -v for the "
                      "traceback)", highlight=False, soft_wrap=True)
    sys.exit(1)


def _environment_error(err: OSError) -> None:
    """A full disk (or quota): what could not be written, and how much room there is; not a bug."""
    message = str(err) if isinstance(err, OutOfSpace) else (
        f"no space left on the device writing {err.filename or 'an output'} ({err.strerror}); free some space and run "
        "again (nothing partial was kept)")
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends with one clear message and exit 2, Ctrl-C with exit 130, SIGTERM with 143, a full
    disk with one message and exit 1, a bug with exit 1."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = build_cli().main(args=argv, prog_name="rtune", standalone_mode=False)
    except EXITS as done:
        sys.exit(done.exit_code)
    except USAGE_ERRORS as err:
        err.show()
        sys.exit(err.exit_code)
    except Interrupted as err:
        _interrupted(str(err))
    except (*ABORTS, KeyboardInterrupt):
        _interrupted("interrupted; nothing was written")
    except USER_ERRORS as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)  # paths stay whole
        sys.exit(2)
    except OSError as err:
        if isinstance(err, OutOfSpace) or err.errno in FULL_DISK:
            _environment_error(err)
        _internal_error(err)
    except Exception as err:  # noqa: BLE001 - the last line of defence
        _internal_error(err)
    if code == INTERRUPTED:  # typer turns a KeyboardInterrupt outside a stage into a returned 130
        _interrupted("interrupted; nothing was written")
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
