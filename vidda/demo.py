"""``vidda demo``: the embedded synthetic benchmark, end to end on a CPU.

1. Generate the synthetic video domain-shift benchmark (cached, see :func:`synthetic_data`) and
   write a contact sheet of both domains (frames, labels, backward flow).
2. Train a **source-only** model and an **adapted** one (DACS + MIC) with the ordinary training
   code path: the configs in ``configs/demo/`` loaded with :func:`vidda.config.load_config` and run
   with :func:`vidda.engine.run.train`, exactly what ``vidda train`` does. Both use the same tiny
   network (MiT-b0 trained from scratch), the same schedule and the same iteration budget.
3. Both are evaluated on the target domain's val split; a table is printed, ``results.json``
   written, and the last line of output is a machine-readable summary::

       demo: source_only=41.2 adapted=55.7 gain=14.5

Outputs under ``out_dir``: ``contact_sheet.png``, ``source_only/`` and ``adapted/`` (each a normal
run folder: ``latest.pt`` with the resolved config inside, ``config.yaml``, ``metrics.jsonl``,
TensorBoard logs) and ``results.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidda.classes import CLASSES, colorize
from vidda.errors import UserError
from vidda.flow.io import read_flow
from vidda.viz import flow_to_color, mosaic, put_title


@dataclass(frozen=True)
class DemoRun:
    """One of the demo's two trainings: its name (= run folder), config file and description."""

    name: str
    config: str
    method: str


RUNS: tuple[DemoRun, ...] = (
    DemoRun("source_only", "source_only.yaml", "source only (no adaptation)"),
    DemoRun("adapted", "dacs_mic.yaml", "DACS + MIC (adapted)"),
)

VIDEO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("refined", "dacs_mic_consis.yaml", "DACS + MIC + consistency-filter refinement"),
    DemoRun("accel", "accel_mixup.yaml", "DACS + MIC + ACCEL with consistent mixup"),
)
"""What ``--video`` adds: video-technique rows on the same clips (the refined run's teacher is
also measured: pseudo-label accuracy on target train before and after refinement)."""

QUICK_OVERRIDES: tuple[str, ...] = ("schedule.iters=400", "method.refine.begin=80")
"""What ``--quick`` changes in every config: a shorter schedule (same model and batch); the
refined pseudo-label starts training after a fifth of it, as in the full schedule."""

SUMMARY_PREFIX = "demo:"


class DemoError(UserError):
    """The demo cannot run as asked (e.g. its configs are not where it looks for them)."""


def cache_dir() -> Path:
    """Where generated data is kept between runs: ``$VIDDA_CACHE`` or ``~/.cache/vidda``."""
    root = os.environ.get("VIDDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vidda"
    )
    return Path(root)


def demo_config_dir() -> Path:
    """``configs/demo`` of the source tree vidda runs from (``$VIDDA_DEMO_CONFIGS`` overrides)."""
    env = os.environ.get("VIDDA_DEMO_CONFIGS")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "configs" / "demo"
    missing = [r.config for r in (*RUNS, *VIDEO_RUNS) if not (path / r.config).is_file()]
    if missing:
        raise DemoError(
            f"the demo configs {missing} are not in {path}; run vidda from a source checkout "
            "or point $VIDDA_DEMO_CONFIGS at a folder holding them"
        )
    return path


def synthetic_data(data_dir: Path | None, seed: int, shift: float) -> Path:
    """Generate (or reuse) the synthetic benchmark for ``seed`` and ``shift``; return its root.

    With ``data_dir=None`` the data lives in the cache, where data of an older generator version
    is replaced; a folder the user names is never overwritten (a mismatch is an error).
    """
    from vidda.data.datasets.synthetic import SynthConfig, SynthExistsError, generate

    cfg = SynthConfig(shift=shift)
    if data_dir is not None:
        return generate(data_dir, seed=seed, cfg=cfg)
    data_dir = cache_dir() / "synthetic" / f"seed{seed}_shift{shift:g}"
    try:
        return generate(data_dir, seed=seed, cfg=cfg)
    except SynthExistsError:  # our own cache, written by another generator version
        return generate(data_dir, seed=seed, cfg=cfg, overwrite=True)


def run_demo(
    out_dir: Path,
    data_dir: Path | None = None,
    seed: int = 0,
    shift: float = 1.0,
    quick: bool = False,
    progress: bool = True,
    overrides: tuple[str, ...] | list[str] = (),
    video: bool = False,
) -> dict[str, Any]:
    """Generate the benchmark, train and evaluate both runs; returns what ``results.json`` holds.

    Args:
        out_dir: output folder (contact sheet, one run folder per method, ``results.json``).
        data_dir: synthetic data folder; ``None`` = the cache.
        seed: data-generation seed and training seed.
        shift: domain-shift strength of the target style.
        quick: the shorter schedule of :data:`QUICK_OVERRIDES`.
        progress: a progress bar per training run.
        overrides: extra ``KEY=VALUE`` config overrides, applied to every run.
        video: also train the :data:`VIDEO_RUNS` and measure the refined pseudo-labels.
    """
    import torch

    from vidda.config import load_config

    t_start = time.time()
    config_dir = demo_config_dir()
    root = synthetic_data(data_dir, seed, shift)
    print(f"synthetic benchmark: {root}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet = out_dir / "contact_sheet.png"
    cv2.imwrite(str(sheet), contact_sheet(root)[..., ::-1])
    print(f"contact sheet: {sheet}", flush=True)

    common = [
        f"seed={seed}",
        *(f"data.{key}.root={root}" for key in ("source", "target", "val")),
        *(QUICK_OVERRIDES if quick else ()),
        *overrides,
    ]
    runs = (*RUNS, *VIDEO_RUNS) if video else RUNS
    results: dict[str, Any] = {}
    pl_quality: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(demo_threads(threads))
    try:
        for i, run in enumerate(runs, start=1):
            path = config_dir / run.config
            cfg = load_config(path, common)
            print(f"[{i}/{len(runs)}] {run.name}: {run.method}, {cfg.model.backbone}+"
                  f"{cfg.model.head} from scratch, {cfg.schedule.iters} iterations ({path})",
                  flush=True)  # fmt: skip
            results[run.name] = _train_and_score(cfg, out_dir / run.name, path, progress)
            print(f"[{i}/{len(runs)}] {run.name}: target mIoU {results[run.name]['miou']:.1f} "
                  f"({results[run.name]['seconds']:.0f} s)", flush=True)  # fmt: skip
            if cfg.method.refine.enabled:
                pl_quality = _pl_quality(cfg, out_dir / run.name)
                print(f"[{i}/{len(runs)}] {run.name}: pseudo-labels on target train: "
                      f"{pl_quality['pl_acc_raw'] * 100:.1f} % correct as predicted, "
                      f"{pl_quality['pl_acc_refined'] * 100:.1f} % after refinement on the "
                      f"{pl_quality['pl_coverage_refined'] * 100:.1f} % of pixels it keeps",
                      flush=True)  # fmt: skip
    finally:
        torch.set_num_threads(threads)

    summary = {
        "seed": seed,
        "shift": shift,
        "quick": quick,
        "video": video,
        "data": str(root),
        "protocol": "standard",
        "runs": results,
        "pl_quality": pl_quality,
        "gain": results["adapted"]["miou"] - results["source_only"]["miou"],
        "seconds": round(time.time() - t_start, 1),
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    print(format_table(results))
    print(f"results: {out_dir / 'results.json'}")
    print(summary_line(results, pl_quality))
    return summary


def demo_threads(current: int) -> int:
    """Intra-op threads for the demo's trainings: ``current`` when ``$OMP_NUM_THREADS`` is set,
    else half the usable cores (at least 1).

    The tiny network gains little from more threads, the other half of the cores feeds the data
    loader, and on a busy machine a single thread avoids OpenMP's spin-waiting, which slows a
    2-thread run on 2 shared cores down by an order of magnitude.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return current
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // 2)


def _train_and_score(cfg, run_dir: Path, config_path: Path, progress: bool) -> dict[str, Any]:
    from vidda.engine.run import train

    _clear_run(run_dir)
    t0 = time.time()
    result = train(cfg, run_dir, progress=progress)
    evals = result["eval"]
    if not evals:
        raise DemoError(f"{config_path}: the run was not evaluated (is data.val.root set?)")
    std = evals["standard"]
    return {
        "config": str(config_path),
        "checkpoint": str(run_dir / "latest.pt"),
        "iterations": result["step"],
        "seconds": round(time.time() - t0, 1),
        "miou": std["miou"],
        "miou_uvda": evals.get("uvda", {}).get("miou", float("nan")),
        "iou": {CLASSES[k]: std["iou"][k] for k in std["classes"] if _finite(std["iou"][k])},
    }


def _pl_quality(cfg, run_dir: Path) -> dict[str, float]:
    """The trained teacher's pseudo-label accuracy on target train (see ``pl_quality``)."""
    from vidda.engine.checkpoint import load_checkpoint
    from vidda.engine.pl_quality import measure_pl_quality

    return measure_pl_quality(cfg, load_checkpoint(run_dir / "latest.pt"))


def _clear_run(run_dir: Path) -> None:
    """Remove what an earlier demo left in ``run_dir`` (its logs would otherwise be appended to)."""
    for name in ("metrics.jsonl", "latest.pt", "best.pt", "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Per-class IoU and mIoU (both protocols) of each run on the target val split, as text."""
    names = list(results)
    classes = [c for c in CLASSES if any(c in r["iou"] for r in results.values())]
    width = max(len(c) for c in [*classes, "mIoU (UVDA)"]) + 2
    head = "target val".ljust(width) + "".join(n.rjust(13) for n in names)
    rule = "-" * len(head)
    lines = [rule, head, rule]
    for c in classes:
        row = [results[n]["iou"].get(c) for n in names]
        lines.append(c.ljust(width) + "".join(_pct(v * 100 if v is not None else None)
                                              for v in row))  # fmt: skip
    lines.append(rule)
    lines.append("mIoU".ljust(width) + "".join(_pct(results[n]["miou"]) for n in names))
    lines.append("mIoU (UVDA)".ljust(width) + "".join(_pct(results[n]["miou_uvda"]) for n in names))
    lines.append(rule)
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return ("-" if v is None or not math.isfinite(v) else f"{v:.1f}").rjust(13)


def summary_line(
    results: dict[str, dict[str, Any]], pl_quality: dict[str, float] | None = None
) -> str:
    """``demo: source_only=41.2 adapted=55.7 gain=14.5`` (target mIoU, standard protocol).

    With the video runs, their mIoU follows (``refined=… accel=…``), then the pseudo-label
    accuracy in % (``pl_acc_raw=… pl_acc_refined=… pl_coverage_refined=…``).
    """
    so, ad = (round(results[k]["miou"], 1) for k in ("source_only", "adapted"))
    line = f"{SUMMARY_PREFIX} source_only={so:.1f} adapted={ad:.1f} gain={ad - so:.1f}"
    line += "".join(f" {r.name}={results[r.name]['miou']:.1f}"
                    for r in VIDEO_RUNS if r.name in results)  # fmt: skip
    for key in ("pl_acc_raw", "pl_acc_refined", "pl_coverage_refined"):
        if pl_quality and key in pl_quality:
            line += f" {key}={pl_quality[key] * 100:.1f}"
    return line


def contact_sheet(root: Path, per_domain: int = 3, split: str = "train") -> np.ndarray:
    """uint8 [H, W, 3] R,G,B: for each domain, ``per_domain`` rows of (frame, label, flow).

    Reads the files from disk exactly as the loaders will, so it also shows what they see.
    """
    rows: list[list[np.ndarray]] = []
    for domain in ("source", "target"):
        entries = _split_entries(root / domain / f"{split}.txt")
        step = max(1, len(entries) // per_domain)
        for name in entries[::step][:per_domain]:
            base = root / domain / split
            image = cv2.imread(str(base / "images" / f"{name}.png"), cv2.IMREAD_COLOR)[..., ::-1]
            label = cv2.imread(
                str(base / "labels" / f"{name}_labelTrainIds.png"), cv2.IMREAD_UNCHANGED
            )
            flow, valid = read_flow(base / "flow" / f"{name}.png")
            rows.append(
                [
                    put_title(image, f"{domain} {name}"),
                    put_title(colorize(label), "label (trainIds)"),
                    put_title(flow_to_color(flow, valid), "backward flow t->t-1"),
                ]
            )
    return mosaic(rows)


def _split_entries(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
