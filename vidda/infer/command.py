"""``vidda infer CKPT INPUT --out DIR``: the command-line arguments turned into a run."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.infer.geometry import parse_resize
from vidda.infer.model import Segmenter, load_model, resolve_device
from vidda.infer.run import InferOptions, run_infer
from vidda.infer.sources import open_source

__all__ = ["run_from_args"]

log = logging.getLogger(__name__)


def training_gap(cfg: Config) -> int:
    """Input frames between frame t and frame t−k in training: ``method.frame_distance`` ×
    the validation dataset's frame step (BDDVid: 2, the others: 1)."""
    from pathlib import Path

    from vidda.data.build import LAYOUTS
    from vidda.data.layout import DatasetError

    val = cfg.data.val
    step = val.frame_step
    if not step and val.type in LAYOUTS:  # the dataset's own step (its files need not exist)
        extra = {"domain": val.domain} if val.type == "synthetic" else {}
        try:
            step = LAYOUTS[val.type](Path(val.root or "."), val.split, **extra).frame_step
        except DatasetError:  # e.g. a config without data settings: consecutive frames
            step = 1
    return max(1, cfg.method.frame_distance * (step or 1))


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Check the arguments and open the input (errors come before loading a large checkpoint),
    load the model, run; returns the summary that ``summary.json`` holds."""
    source = open_source(args.input)
    resize = parse_resize(args.resize)
    device = resolve_device(args.device)
    batch = args.batch_size if args.batch_size is not None else 4 if device.type == "cuda" else 1
    opts = InferOptions(
        out_dir=args.out,
        save=tuple(args.save),
        overlay_video=args.overlay_video,
        temporal=not args.no_temporal,
        batch_size=batch,
        max_frames=args.max_frames,
        stride_frames=args.stride_frames,
        flow_preset=args.flow_preset,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    opts.check()
    amp = args.amp
    if amp != "off" and device.type != "cuda":
        log.warning("--amp %s applies on CUDA only; running in float32 on %s", amp, device)
        amp = "off"

    loaded = load_model(args.checkpoint, args.config, args.overrides, args.network)
    cfg = loaded.cfg
    validate(cfg)  # also the config stored in the checkpoint, with the overrides
    opts.pair_gap = args.pair_gap or training_gap(cfg)
    opts.check()
    if resize == "config":
        opts.resize = tuple(cfg.data.val.resize) or None
    elif resize != "native":
        opts.resize = resize
    segmenter = Segmenter(loaded.model, cfg.eval, device, amp)
    meta = {
        "checkpoint": str(args.checkpoint),
        "model": loaded.description,
        "network": loaded.network,
        "two_frame": segmenter.two_frame,
        "pair_gap": opts.pair_gap if segmenter.two_frame else None,
        "eval": {"mode": cfg.eval.mode, "crop_size": cfg.eval.crop_size,
                 "stride": cfg.eval.stride},  # fmt: skip
        "device": str(device),
        "amp": amp,
    }
    return run_infer(segmenter, source, opts, cfg.model.num_classes, meta)
