"""``vidda demo``: the embedded synthetic benchmark, end to end on a CPU.

This first version generates the synthetic video domain-shift benchmark (cached) and writes a
contact sheet: source and target frames, their labels in the Cityscapes palette and their backward
flow in the standard colour wheel. Training and evaluation join it with the training engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vidda.data.classes import colorize
from vidda.flow.io import read_flow
from vidda.viz import flow_to_color, mosaic, put_title


def cache_dir() -> Path:
    """Where generated data is kept between runs: ``$VIDDA_CACHE`` or ``~/.cache/vidda``."""
    root = os.environ.get("VIDDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vidda"
    )
    return Path(root)


def synthetic_data(data_dir: Path | None, seed: int, shift: float) -> Path:
    """Generate (or reuse) the synthetic benchmark for ``seed`` and ``shift``; return its root."""
    from vidda.data.datasets.synthetic import SynthConfig, generate

    if data_dir is None:
        data_dir = cache_dir() / "synthetic" / f"seed{seed}_shift{shift:g}"
    return generate(data_dir, seed=seed, cfg=SynthConfig(shift=shift))


def run_demo(
    out_dir: Path, data_dir: Path | None = None, seed: int = 0, shift: float = 1.0
) -> Path:
    """Generate the benchmark and write ``out_dir/contact_sheet.png``; returns the sheet's path."""
    root = synthetic_data(data_dir, seed, shift)
    print(f"synthetic benchmark: {root}")
    sheet = contact_sheet(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "contact_sheet.png"
    cv2.imwrite(str(path), sheet[..., ::-1])
    print(f"contact sheet: {path}")
    return path


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
