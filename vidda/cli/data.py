"""``vidda data synth|check|build-bddvid|convert``: prepare, convert and check datasets."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vidda.cli.common import EXIT_USAGE, UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda data`` to ``sub``; ``common`` holds the options every command takes."""
    p = sub.add_parser("data", parents=[common], help="prepare, convert and check datasets")
    data_sub = p.add_subparsers(title="data commands", metavar="COMMAND")
    synth = data_sub.add_parser(
        "synth",
        parents=[common],
        help="write the synthetic video domain-shift benchmark",
        description="Render the synthetic source/target driving video with labels and flow.",
    )
    synth.add_argument("out", type=Path, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--shift", type=float, default=1.0, help="domain shift strength")
    synth.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None)
    synth.add_argument("--clips", type=int, nargs=2, metavar=("TRAIN", "VAL"), default=None)
    synth.add_argument("--frames", type=int, default=None, help="frames per clip")
    synth.add_argument("--overwrite", action="store_true")
    synth.set_defaults(handler=_run_synth)
    check = data_sub.add_parser(
        "check",
        parents=[common],
        help="verify every file a config (or one dataset) will read",
        description="Check frames, labels, flows and class statistics; exit 0 only when clean. "
        "Give a CONFIG (with KEY=VALUE overrides) or --dataset NAME ROOT.",
    )
    check.add_argument("config", nargs="?", type=Path, help="experiment config")
    check.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    check.add_argument("--dataset", nargs=2, metavar=("NAME", "ROOT"), help="check one dataset")
    check.add_argument("--split", action="append", default=[], help="split(s) with --dataset")
    check.add_argument("--no-flow", action="store_true", help="with --dataset: skip flows")
    check.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    check.set_defaults(handler=_run_check)

    bdd = data_sub.add_parser(
        "build-bddvid",
        parents=[common],
        help="build BDDVid from BDD10k and the BDD100K videos",
        description="Extract frames 303-311 of each split entry's video (upright), link labels "
        "and BDD10k stills into the layout the loaders read (docs/datasets.md).",
    )
    bdd.add_argument("out", type=Path, help="output root (the BDDVid dataset root)")
    bdd.add_argument("--bdd10k", type=Path, required=True, help="BDD10k root (images/10k, ...)")
    bdd.add_argument(
        "--videos",
        type=Path,
        nargs="+",
        required=True,
        help="folders, video files or BDD100K video zip parts",
    )
    bdd.add_argument("--train-split", type=Path, required=True, help="valid_imgs_train.txt")
    bdd.add_argument("--val-split", type=Path, required=True, help="valid_imgs_val.txt")
    bdd.add_argument("--link-mode", choices=("symlink", "hardlink", "copy"), default="symlink")
    bdd.add_argument("--workers", type=int, default=0)
    bdd.add_argument("--overwrite", action="store_true")
    bdd.set_defaults(handler=_run_build_bddvid)

    conv = data_sub.add_parser(
        "convert",
        parents=[common],
        help="convert labels to Cityscapes trainIds and write class statistics",
        description="VIPER / SYNTHIA-Seq labels and Cityscapes labelIds → *_labelTrainIds PNGs; "
        "BDD masks are validated. Writes the rare-class-sampling statistics for sources.",
    )
    conv.add_argument("kind", choices=("viper", "synthia-seq", "cityscapes", "bdd"))
    conv.add_argument("root", type=Path)
    conv.add_argument(
        "--split",
        type=Path,
        action="append",
        default=None,
        help="split file(s); default: the dataset's own",
    )
    conv.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    conv.add_argument(
        "--no-van-as-train", action="store_true", help="VIPER: map van to ignore (paper: train)"
    )
    conv.add_argument(
        "--stats",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write class statistics (default: for the source datasets)",
    )
    conv.add_argument("--overwrite", action="store_true")
    conv.set_defaults(handler=_run_convert)
    p.set_defaults(handler=lambda a: (p.print_help(), EXIT_USAGE)[1])


def _run_synth(args: argparse.Namespace) -> int:
    from vidda.data.datasets.synthetic import SynthConfig, generate

    cfg = SynthConfig(shift=args.shift)
    if args.size:
        cfg.width, cfg.height = args.size
    if args.clips:
        cfg.clips = {"train": args.clips[0], "val": args.clips[1]}
    if args.frames:
        cfg.frames_per_clip = args.frames
    out = generate(args.out, seed=args.seed, cfg=cfg, overwrite=args.overwrite)
    print(f"synthetic benchmark written to {out}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from vidda.config import load_config
    from vidda.data.check import check_config, check_dataset, dataset_configs

    if (args.config is None) == (args.dataset is None):
        raise UsageError("give either a CONFIG or --dataset NAME ROOT")
    if args.dataset:
        name, root = args.dataset
        cfgs = dataset_configs(name, root, args.split, flows=not args.no_flow)
        reports = [check_dataset(c, f"{name} {c.domain}".strip(), args.workers) for c in cfgs]
    else:
        reports = check_config(load_config(args.config, args.overrides), args.workers)
    for report in reports:
        print(report.format())
    bad = [r for r in reports if not r.ok]
    print(f"data check: {len(reports) - len(bad)} of {len(reports)} dataset splits clean")
    return 1 if bad or not reports else 0


def _run_convert(args: argparse.Namespace) -> int:
    from vidda.data.convert import convert_dataset

    report = convert_dataset(
        args.kind,
        args.root,
        workers=args.workers,
        split_files=args.split,
        viper_van_as_train=not args.no_van_as_train,
        overwrite=args.overwrite,
        stats=args.stats,
    )
    print(report.summary())
    return 0


def _run_build_bddvid(args: argparse.Namespace) -> int:
    from vidda.data.bddvid_build import build_bddvid

    report = build_bddvid(
        args.out,
        bdd10k_root=args.bdd10k,
        videos=args.videos,
        split_files={"train": args.train_split, "val": args.val_split},
        link_mode=args.link_mode,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return 0 if report.ok else 1
