"""``vidda infer CKPT INPUT``: segment a video, frame folder, image or glob."""

from __future__ import annotations

import argparse
from pathlib import Path

# Written out (not imported from vidda.infer.outputs) so that building the parser imports no
# torch; tests/test_infer.py checks that they match the module.
INFER_SAVE_CHOICES = ("trainid", "labelid", "color", "overlay", "areas")
INFER_DEFAULT_SAVE = ("trainid", "color")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``vidda infer`` to ``sub``; ``common`` holds the options every command takes."""
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
