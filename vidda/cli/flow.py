"""``vidda flow compute``: the backward flows a config or a dataset reads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vidda.cli.common import EXIT_USAGE, UsageError


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda flow`` to ``sub``; ``common`` holds the options every command takes."""
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
