"""``vidda weights convert SRC DST``: official checkpoints into files vidda loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidda.cli.common import EXIT_USAGE


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda weights`` to ``sub``; ``common`` holds the options every command takes."""
    p = sub.add_parser("weights", parents=[common], help="import official checkpoints")
    w_sub = p.add_subparsers(title="weights commands", metavar="COMMAND")
    conv = w_sub.add_parser(
        "convert",
        parents=[common],
        help="convert an official checkpoint into a file vidda loads",
        description="ImageNet backbone files (SegFormer mit_b*.pth, Hugging Face nvidia/mit-b*, "
        "mmcv ResNet-101 v1c) become vidda backbone weights (for model.pretrained); "
        "DAFormer/HRDA/MIC segmentor checkpoints become vidda checkpoints (give --config).",
    )
    conv.add_argument("src", type=Path)
    conv.add_argument("dst", type=Path)
    conv.add_argument("--config", type=Path, default=None, help="the model's vidda config")
    conv.add_argument("--network", choices=("student", "teacher"), default="student")
    conv.add_argument("--backbone", default=None, help="backbone name, if it cannot be guessed")
    conv.set_defaults(handler=_run_weights_convert)
    p.set_defaults(handler=lambda a: (p.print_help(), EXIT_USAGE)[1])


def _run_weights_convert(args: argparse.Namespace) -> int:
    from vidda.cli.weights_convert import convert
    from vidda.config import load_config

    cfg = load_config(args.config) if args.config else None
    print(convert(args.src, args.dst, cfg, args.network, args.backbone))
    return 0
