"""``vidda experiments``: the paper's experiment configs and their launch commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidda.cli.common import UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda experiments`` to ``sub``; ``common`` holds the options every command takes."""
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
