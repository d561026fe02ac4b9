"""``vidda table RUN_DIR...``: results tables from finished runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidda.cli.common import UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda table`` to ``sub``; ``common`` holds the options every command takes."""
    p = sub.add_parser(
        "table",
        parents=[common],
        help="results table from finished runs",
        description="Read each run folder's results (eval.json if present, else the last "
        "evaluation in metrics.jsonl) and print one table per target, class subset and "
        "protocol: per-class IoU and mIoU in %, a mean ± std row per config with several "
        "seeds. RUN_DIRs may be parent folders: every folder with a config.yaml below is a run.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    p.add_argument("--protocol", choices=("standard", "uvda", "both"), default="both")
    p.add_argument("--classes", choices=("auto", "all", "viper", "synthia_seq"), default="auto",
                   help="columns; auto: each run's evaluated subset")  # fmt: skip
    p.add_argument("--decimals", type=int, default=1, help="markdown decimals")
    p.add_argument("--skip-missing", action="store_true", help="skip runs without results")
    p.set_defaults(handler=_run_table)


def _run_table(args: argparse.Namespace) -> int:
    from vidda.report import make_table

    if args.decimals < 0:
        raise UsageError("--decimals must be 0 or more")
    text, warnings = make_table(args.run_dirs, args.format, args.protocol, args.classes,
                                args.skip_missing, args.decimals)  # fmt: skip
    for warning in warnings:
        print(f"vidda: warning: {warning}", file=sys.stderr)
    print(text, end="")
    return 0

