"""``vidda train``: run a config (and ``--dry-run``: check that it builds without data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.data.build import build_transform, dataset_layout
from vidda.engine.distributed import distributed_run
from vidda.engine.trainer import RunOptions, Trainer
from vidda.models.build import build_segmentor
from vidda.uda.methods import build_method


def run_dir_for(cfg: Config, config_path: Path) -> Path:
    """``<cfg.workdir>/<cfg.name or the config file's stem>``."""
    return Path(cfg.workdir) / (cfg.name or Path(config_path).stem)


def dry_run(cfg: Config) -> str:
    """Validate, build the model and the method, and the transforms; read no data. Returns a
    summary."""
    validate(cfg)
    with torch.device("meta"):
        student = build_segmentor(cfg.model, load_pretrained=False, compat=cfg.compat)
        method = build_method(cfg, student, None)
    for key in ("source", "target", "val"):
        ds = getattr(cfg.data, key)
        build_transform(ds, key != "val", cfg.compat)
        if ds.root and Path(ds.root).is_dir():
            dataset_layout(ds, f"data.{key}")
    n = sum(p.numel() for p in student.parameters())
    summary = (
        f"model: {type(student).__name__} {cfg.model.backbone}+{cfg.model.head} "
        f"({n / 1e6:.2f} M parameters); method: {type(method).__name__}"
    )
    if cfg.model.pretrained and not Path(cfg.model.pretrained).expanduser().is_file():
        summary += f"\nnote: model.pretrained {cfg.model.pretrained} does not exist yet"
    return summary


def train(
    cfg: Config,
    run_dir: Path,
    resume: str | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir``; returns the trainer's result plus a one-line summary.

    Under ``torchrun`` the process group is joined here and left when training ends."""
    validate(cfg)
    opts = RunOptions(Path(run_dir), resume, stop_after, progress, num_workers)
    with distributed_run(cfg.train.device) as info:
        result = Trainer(cfg, opts, info).run()
    best = result["best"]
    evals = result["eval"]
    parts = [f"{p} mIoU {r['miou']:.2f}" for p, r in evals.items() if "miou" in r]
    free = evals.get("label_free") if evals else None
    if free and free.get("confidence") is not None:
        parts.append(f"confidence {free['confidence']:.1f} %")
    parts = parts or ["no eval"]
    result["summary"] = (f"trained to iteration {result['step']} in {run_dir}: "
                         + ", ".join(parts) + (f" (best {best})" if best else ""))  # fmt: skip
    return result
