"""`python -m rtune.pipeline PIPELINE.yaml [--set a.b=v ...] [--dry-run]`: the same as `rtune run`, without the CLI."""

from __future__ import annotations

import argparse
import logging
import sys

from rtune.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtune.pipeline", description="Run a declared rtune pipeline.")
    parser.add_argument("pipeline", help="pipeline YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override, e.g. stages.train_1.epochs=2 (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan: what would run or be skipped, and why")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rtune").setLevel(logging.INFO)
    from pydantic import ValidationError

    from rtune.pipeline.runner import run_pipeline

    try:
        run_pipeline(args.pipeline, args.set, args.dry_run)
    except (InputError, ValidationError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; run again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
