"""``vidda eval CONFIG CKPT``: score a checkpoint with both mIoU protocols."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidda.cli.common import UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda eval`` to ``sub``; ``common`` holds the options every command takes."""
    p = sub.add_parser(
        "eval",
        parents=[common],
        help="evaluate a checkpoint on a benchmark (both mIoU protocols)",
        description="Score CKPT's student on CONFIG's validation split: standard and UVDA mIoU "
        "over the benchmark's classes, per-class table, JSON; optionally save predictions.",
    )
    p.add_argument("config", type=Path)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=None, help="folder for eval.json and predictions")
    p.add_argument(
        "--save",
        nargs="+",
        choices=("trainid", "labelid", "color"),
        default=[],
        help="prediction maps to write under --out",
    )
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from vidda.config import load_config
    from vidda.engine.eval_cli import run_eval

    if args.save and args.out is None:
        raise UsageError("--save needs --out DIR")
    cfg = load_config(args.config, args.overrides)
    run_eval(cfg, args.checkpoint, args.out, tuple(args.save), args.workers)
    return 0
