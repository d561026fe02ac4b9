"""The ``vidda`` command: ``vidda SUBCOMMAND --help`` describes each subcommand.

Errors caused by the user's input (``vidda.errors.UserError``) print one line and exit with
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vidda import __version__
from vidda.errors import UserError


class UsageError(UserError):
    """Arguments that do not fit together."""


EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


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

    _add_demo(sub, common)
    _add_data(sub, common)
    _add_train(sub, common)
    _add_flow(sub, common)
    _add_eval(sub, common)
    _add_weights(sub, common)
    _add_experiments(sub, common)
    _add_table(sub, common)
    _add_infer(sub, common)
    return parser


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run the embedded synthetic benchmark end to end on the CPU",
        description="Generate the synthetic video domain-shift benchmark (cached), train a "
        "source-only and an adapted (DACS + MIC) model from scratch with the configs in "
        "configs/demo/, evaluate both on the target domain and compare them. The last line "
        "of output reads 'demo: source_only=X adapted=Y gain=Z' (target mIoU, standard "
        "protocol). About 9 minutes on 2 CPU cores, --quick about 3; --video adds two "
        "video-technique rows (about 25 minutes in all) and the pseudo-label accuracy before "
        "and after refinement.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (every run)")
    p.add_argument("--out", type=Path, default=Path("vidda_demo"), help="output folder")
    p.add_argument("--data", type=Path, default=None, help="synthetic data folder (default: cache)")
    p.add_argument("--seed", type=int, default=0, help="data-generation and training seed")
    p.add_argument("--shift", type=float, default=1.0, help="domain shift strength, 0..2")
    p.add_argument("--quick", action="store_true", help="a shorter schedule (CI smoke run)")
    p.add_argument("--video", action="store_true", help="also train video-technique rows "
                   "(refinement, ACCEL) and report pseudo-label accuracy before/after refinement")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from vidda.demo import run_demo

    run_demo(
        out_dir=args.out,
        data_dir=args.data,
        seed=args.seed,
        shift=args.shift,
        quick=args.quick,
        video=args.video,
        progress=not args.no_progress,
        overrides=args.overrides,
    )
    return 0


# --------------------------------------------------------------------------- data


def _add_data(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


# --------------------------------------------------------------------------- eval


def _add_eval(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


# --------------------------------------------------------------------------- infer

# Written out (not imported from vidda.infer.outputs) so that building the parser imports no
# torch; tests/test_infer.py checks that they match the module.
INFER_SAVE_CHOICES = ("trainid", "labelid", "color", "overlay", "areas")
INFER_DEFAULT_SAVE = ("trainid", "color")


def _add_infer(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "infer",
        parents=[common],
        help="segment your own video or frame folder",
        description="Segment INPUT (a video file, a folder of frames sorted naturally, a quoted "
        "glob, or an image) with the model in CKPT (its stored config; --config for files "
        "without one; KEY=VALUE overrides, e.g. eval.mode=slide). Writes the --save maps as "
        "OUT/KIND/NAME.png (NAME: frame_000123 for videos, the file stem for frames; 'areas': "
        "OUT/areas.csv), --overlay-video as OUT/overlay.mp4, and OUT/summary.json (frames/s, "
        "temporal consistency). ACCEL checkpoints get the previous frame and its DIS flow. "
        "Resumable: frames whose outputs exist are skipped.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument("input", metavar="INPUT", help="video file, frame folder, image or glob")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--save", nargs="+", choices=INFER_SAVE_CHOICES,
                   default=list(INFER_DEFAULT_SAVE), metavar="KIND",
                   help=f"outputs to write: {', '.join(INFER_SAVE_CHOICES)} "
                   f"(default: {' '.join(INFER_DEFAULT_SAVE)})")  # fmt: skip
    p.add_argument("--overlay-video", action="store_true", help="write overlay.mp4")
    p.add_argument("--no-temporal", action="store_true",
                   help="skip the temporal consistency (no flow for per-frame models)")
    p.add_argument("--config", type=Path, default=None, help="config replacing the stored one")
    p.add_argument("--network", choices=("student", "teacher"), default="student")
    p.add_argument("--batch-size", type=int, default=None, help="default: 1 on CPU, 4 on CUDA")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                   help="autocast on CUDA (ignored on the CPU)")
    p.add_argument("--resize", default="config", metavar="config|native|WxH",
                   help="model input size: the config's data.val.resize (default), the frame's "
                   "own, or a keep-ratio target")  # fmt: skip
    p.add_argument("--max-frames", type=int, default=None, help="stop after N output frames")
    p.add_argument("--stride-frames", type=int, default=1, help="segment every N-th frame")
    p.add_argument("--pair-gap", type=int, default=None, metavar="N",
                   help="ACCEL: pair frame t with the input frame N back (default: the gap "
                   "the model was trained with, method.frame_distance x the dataset's frame "
                   "step)")  # fmt: skip
    p.add_argument("--flow-preset", choices=("ultrafast", "fast", "medium"), default="medium",
                   help="DIS preset of the ACCEL and temporal-consistency flows")
    p.add_argument("--overwrite", action="store_true", help="recompute frames already written")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_infer, overrides=[])


def _run_infer(args: argparse.Namespace) -> int:
    from vidda.infer.command import run_from_args

    summary = run_from_args(args)
    tc = summary.get("temporal_consistency") or {}
    temporal = (f", temporal consistency mIoU {tc['miou']:.1f} / pixel acc {tc['pixel_acc']:.1f}"
                if tc.get("miou") is not None else "")  # fmt: skip
    print(f"infer: {summary['frames']} frames ({summary['processed']} segmented, "
          f"{summary['skipped']} already done) in {summary['seconds']:.1f} s, "
          f"{summary['fps'] or 0:.2f} frames/s{temporal}; outputs in {args.out}")  # fmt: skip
    return 0


# --------------------------------------------------------------------------- weights


def _add_weights(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    from vidda.config import load_config
    from vidda.models.convert_cli import convert

    cfg = load_config(args.config) if args.config else None
    print(convert(args.src, args.dst, cfg, args.network, args.backbone))
    return 0


# --------------------------------------------------------------------------- flow


def _add_flow(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("flow", parents=[common], help="optical flow tools")
    flow_sub = p.add_subparsers(title="flow commands", metavar="COMMAND")
    comp = flow_sub.add_parser(
        "compute",
        parents=[common],
        help="compute the backward flows a config (or a dataset) reads",
        description="Compute every backward flow the datasets of CONFIG read (or, with --dataset "
        "NAME, those of the dataset at ROOT), into the folders the loaders read. Resumable.",
    )
    comp.add_argument("target", type=Path, metavar="CONFIG_OR_ROOT")
    comp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    comp.add_argument("--dataset", help="dataset type when CONFIG_OR_ROOT is a dataset root")
    comp.add_argument("--split", action="append", default=[], help="splits with --dataset")
    comp.add_argument("--method", choices=("dis", "raft"), default="dis")
    comp.add_argument("--preset", choices=("ultrafast", "fast", "medium"), default="medium")
    comp.add_argument("--fb-check", action="store_true", help="forward-backward validity check")
    comp.add_argument("--raft-weights", type=Path, help="RAFT weights file (with --method raft)")
    comp.add_argument("--device", default="cpu", help="RAFT device")
    comp.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    comp.add_argument("--overwrite", action="store_true")
    comp.set_defaults(handler=_run_flow_compute)
    p.set_defaults(handler=lambda a: (p.print_help(), EXIT_USAGE)[1])


def _run_flow_compute(args: argparse.Namespace) -> int:
    from vidda.config import load_config
    from vidda.data.check import dataset_configs
    from vidda.flow.compute import compute_flows
    from vidda.flow.jobs import flow_jobs

    if args.dataset:
        found = dataset_configs(args.dataset, str(args.target), args.split, flows=True)
        cfgs = [(f"{args.dataset} {c.split} {c.domain}".strip(), c) for c in found]
    elif args.target.is_file():
        cfg = load_config(args.target, args.overrides)
        cfgs = [(f"data.{k}", getattr(cfg.data, k)) for k in ("source", "target", "val")]
        cfgs = [(k, c) for k, c in cfgs if c.root]
    else:
        raise UsageError(f"{args.target} is not a config file; for a dataset root add --dataset")
    jobs = [job for key, c in cfgs for job in flow_jobs(c, key)]
    jobs = list({job.out: job for job in jobs}.values())
    if args.method == "raft":
        if args.raft_weights is None:
            raise UsageError("--method raft needs --raft-weights FILE")
        spec = {"method": "raft", "weights_path": args.raft_weights, "device": args.device}
    else:
        spec = {"method": "dis", "preset": args.preset, "fb_check": args.fb_check}
    print(f"{len(jobs)} flows to compute or verify")
    report = compute_flows(jobs, spec, workers=args.workers, overwrite=args.overwrite)
    print(report.summary())
    return 0


# --------------------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a model from a config",
        description="Train from CONFIG; extra KEY=VALUE arguments override config keys.",
    )
    p.add_argument("config", type=Path)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=1e-4")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="run folder (default: <config workdir>/<config name>)",
    )
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="continue from the run folder's latest.pt (auto) or a checkpoint",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="K",
        help="end cleanly after iteration K, as if preempted there",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--deterministic", action="store_true", default=None)
    p.add_argument("--workers", type=int, default=None, help="data-loading workers")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="validate and build, touch no data")
    p.set_defaults(handler=_run_train)


def train_overrides(args: argparse.Namespace) -> list[str]:
    """The dotted overrides a ``vidda train`` call asks for: its flags, then its KEY=VALUE items."""
    flags = {
        "schedule.iters": args.iters,
        "train.eval_every": args.eval_every,
        "train.checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "deterministic": args.deterministic,
    }
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)


def _run_train(args: argparse.Namespace) -> int:
    from vidda.config import load_config, to_yaml
    from vidda.engine.run import dry_run, run_dir_for, train

    cfg = load_config(args.config, train_overrides(args))
    run_dir = args.workdir or run_dir_for(cfg, args.config)
    if args.dry_run:
        print(to_yaml(cfg), end="")
        print(dry_run(cfg), file=sys.stderr)
        print(f"vidda: config {args.config} is valid", file=sys.stderr)
        return 0
    result = train(
        cfg,
        run_dir,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        num_workers=args.workers,
    )
    print(result["summary"])
    return 0


# --------------------------------------------------------------------------- experiments


def _add_experiments(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "experiments",
        parents=[common],
        help="list the paper's experiment configs; print or write their launch commands",
        description="Find the experiment configs (configs/**/*.yaml but _base_/ and demo/) by "
        "their paper: block. --launcher list (default) prints them by paper table and shift; "
        "local / torchrun print one command per config and seed; slurm writes one array job "
        "(submit a whole table with one sbatch). Runs go to WORKDIR/<shift>/<config>/seed<S>. "
        "Arguments after -- are appended to every 'vidda train' (KEY=VALUE overrides, flags).",
    )
    p.add_argument("overrides", nargs="*", metavar="-- EXTRA", help="extra 'vidda train' args")
    p.add_argument("--table", type=int, nargs="+", default=None, metavar="N", help="paper tables")
    p.add_argument("--shift", nargs="+", default=None, metavar="S", help="e.g. viper_csseq")
    p.add_argument("--backbone", choices=("mitb5", "dlv2"), default=None)
    p.add_argument("--launcher", choices=("list", "local", "torchrun", "slurm"), default="list")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="listing format (markdown: the table of docs/results.md)")  # fmt: skip
    p.add_argument("--gpus", type=int, default=1, help="GPUs per run (torchrun, slurm)")
    p.add_argument("--workdir", default="work_dirs", help="root of the run folders")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: each config's")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPT",
                   help="extra #SBATCH option, e.g. --sbatch=--time=2-00:00:00")  # fmt: skip
    p.add_argument("--job-name", default=None, help="SLURM job name (default: vidda-t<N>...)")
    p.add_argument("--configs", type=Path, default=None, help="configs folder (default: the "
                   "source checkout's configs/)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    p.set_defaults(handler=_run_experiments)


def _run_experiments(args: argparse.Namespace) -> int:
    from vidda import experiments as ex

    if args.gpus < 1:
        raise UsageError("--gpus must be at least 1")
    found = ex.discover(ex.configs_root(args.configs))
    chosen = ex.select(found, args.table, args.shift, args.backbone)
    launch = ex.Launch(args.workdir, tuple(args.seeds) if args.seeds else None, args.gpus,
                       tuple(args.overrides))  # fmt: skip
    if args.launcher == "list":
        text = (ex.format_markdown(chosen) if args.format == "markdown"
                else ex.format_listing(chosen, args.table) + "\n")  # fmt: skip
    elif args.launcher == "slurm":
        name = args.job_name or "vidda" + "".join(f"-t{t}" for t in args.table or ())
        text = ex.slurm_script(chosen, launch, name, args.sbatch)
    else:
        make = ex.local_commands if args.launcher == "local" else ex.torchrun_commands
        text = "".join(f"{line}\n" for line in make(chosen, launch))
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- table


def _add_table(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


if __name__ == "__main__":
    raise SystemExit(main())
