"""Run logging: a JSON-lines metrics file and TensorBoard (rank 0 only)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch


class RunLogger:
    """Appends ``{"step": ..., ...}`` records to ``metrics.jsonl`` and mirrors scalars/images
    to TensorBoard under ``tb/``. A no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), prefix: values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def images(self, step: int, panels: dict[str, torch.Tensor]) -> None:
        """``panels``: name → uint8 [H, W, 3] (or [3, H, W]) image tensors or arrays."""
        if not (self.enabled and self.writer is not None):
            return
        for name, image in panels.items():
            arr = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
            fmt = "HWC" if arr.ndim == 3 and arr.shape[-1] == 3 else "CHW"
            self.writer.add_image(f"images/{name}", arr, step, dataformats=fmt)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
