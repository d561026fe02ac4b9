"""``vidda train CONFIG``: train a model from a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda train`` to ``sub``; ``common`` holds the options every command takes."""
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
