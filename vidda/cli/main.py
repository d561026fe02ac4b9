"""The top-level ``vidda`` parser, built from one module per command, and its dispatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vidda import __version__
from vidda.cli import data, demo, experiments, flow, infer, table, train, weights
from vidda.cli import eval as eval_cmd
from vidda.cli.common import EXIT_USAGE
from vidda.errors import UserError

COMMANDS = (demo, data, train, flow, eval_cmd, weights, experiments, table, infer)
"""The command modules, in the order ``vidda --help`` lists them; each has ``add_parser``."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEY=VALUE overrides may come before or after flags; anything else is an error.
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except UserError as err:
        if getattr(args, "debug", False):
            raise
        print(f"vidda: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vidda: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's parser must not reset a --debug given before the subcommand.
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show input-error tracebacks",
    )
    parser = argparse.ArgumentParser(
        prog="vidda",
        description="Unsupervised domain adaptation of semantic segmentation using video.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"vidda {__version__}")
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser
