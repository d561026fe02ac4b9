"""Temporal consistency of video predictions: agreement with the flow-warped previous prediction.

For consecutive frames t−1 and t with predictions ``P_{t−1}``, ``P_t`` (trainIds) and the backward
flow ``f_t`` of frame t (``ARCHITECTURE.md``: pixel ``p`` of frame t is at ``p + f_t(p)`` in frame
t−1), ``P_{t−1}`` is warped onto frame t with nearest sampling
(:func:`vidda.flow.warp.warp_labels`) and compared with ``P_t`` over the valid pixels: the sample
point lies inside frame t−1, the flow is valid there (optional mask) and neither prediction is the
ignore label. Agreement is accumulated in a :class:`vidda.metrics.ConfusionMatrix` (rows = warped
``P_{t−1}``, columns = ``P_t``) over a whole video or data set, and reported as

* ``pixel_acc``: the share of valid pixels where both agree, percent;
* ``miou``: the mean over classes (present in either map) of the IoU between the two maps, percent
  (symmetric in the two predictions);
* ``pixels`` (valid pixels counted), ``coverage`` (their share of all frame-t pixels seen) and
  ``pairs`` (frame pairs seen).

Used by ``vidda infer`` (flow from DIS between consecutive input frames) and meant for ``vidda
eval``. Example::

    tc = TemporalConsistency()
    for pred, prev, flow in pairs:           # [B, H, W] ints, [B, H, W] ints, [B, 2, H, W]
        tc.update(pred, prev, flow)
    tc.compute()["miou"]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vidda.classes import IGNORE_INDEX, NUM_CLASSES
from vidda.flow.warp import warp_labels
from vidda.metrics import ConfusionMatrix

__all__ = ["TemporalConsistency"]

ArrayLike = Tensor | np.ndarray


def _batched(x: ArrayLike, dims: int, name: str) -> Tensor:
    """``x`` as a tensor with a leading batch axis: ``dims`` = the unbatched rank."""
    t = torch.as_tensor(x)
    if t.ndim == dims:
        t = t[None]
    if t.ndim != dims + 1:
        raise ValueError(f"{name} must have {dims} or {dims + 1} dimensions, got {tuple(t.shape)}")
    return t


class TemporalConsistency:
    """Streaming agreement between predictions and their flow-warped predecessors.

    Args:
        num_classes: C; predictions hold trainIds ``0..C-1`` (or ``ignore_index``).
        ignore_index: label of pixels that are never counted, in either prediction.
        device: where the agreement matrix accumulates (``None``: follow the first input).
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        device: str | torch.device | None = None,
    ) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = ConfusionMatrix(self.num_classes, self.ignore_index, device)
        self.pairs = 0
        self.seen = 0

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.matrix.reset()
        self.pairs = self.seen = 0

    @torch.no_grad()
    def update(
        self,
        pred: ArrayLike,
        prev: ArrayLike,
        flow: ArrayLike,
        valid: ArrayLike | None = None,
    ) -> Tensor:
        """Count one frame pair (or a batch of pairs).

        Args:
            pred: int ``[H, W]`` or ``[B, H, W]``, the prediction of frame t.
            prev: int, same shape, the prediction of frame t−1 (on frame t−1's grid).
            flow: float ``[2, H, W]`` or ``[B, 2, H, W]``: backward flow (u, v) of frame t in
                pixels, on frame t's grid, pointing into frame t−1.
            valid: optional bool ``[H, W]`` or ``[B, H, W]``: where the flow is trusted.
        Returns:
            bool ``[B, H, W]``: the pixels that were counted.
        """
        pred_b = _batched(pred, 2, "pred")
        prev_b = _batched(prev, 2, "prev").to(pred_b.device)
        flow_b = _batched(flow, 3, "flow").to(pred_b.device)
        valid_b = None if valid is None else _batched(valid, 2, "valid").to(pred_b.device)
        if prev_b.shape != pred_b.shape:
            raise ValueError(f"pred {tuple(pred_b.shape)} and prev {tuple(prev_b.shape)} differ")
        warped, ok = warp_labels(prev_b.long(), flow_b, valid_b, self.ignore_index)
        pred_l = pred_b.long()
        counted = ok & (warped != self.ignore_index) & (pred_l != self.ignore_index)
        # pixels not counted: reference = ignore (dropped by the matrix), prediction = any class
        self.matrix.update(pred_l.masked_fill(~counted, 0),
                           warped.masked_fill(~counted, self.ignore_index))  # fmt: skip
        self.pairs += pred_b.shape[0]
        self.seen += pred_b.numel()
        return counted

    def merge(self, other: TemporalConsistency) -> TemporalConsistency:
        """Add ``other``'s counts to this one (e.g. per-video accumulators); returns self."""
        self.matrix.merge(other.matrix)
        self.pairs += other.pairs
        self.seen += other.seen
        return self

    def all_reduce(self) -> None:
        """Sum the counts over all ``torch.distributed`` ranks (no-op when not initialised)."""
        self.matrix.all_reduce()
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        counts = torch.tensor([self.pairs, self.seen], dtype=torch.int64, device=device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self.pairs, self.seen = (int(v) for v in counts.tolist())

    def compute(self, classes: str | list[int] | None = None) -> dict[str, Any]:
        """``{"pixel_acc", "miou"}`` in percent (NaN when nothing was counted), ``pixels``,
        ``coverage`` (fraction of the frame-t pixels seen that were counted), ``pairs``, and
        ``iou`` (per-class fractions, NaN for classes in neither map).

        ``classes``: a benchmark's class subset (``"viper"``, ``"synthia_seq"``, trainIds);
        pixels where either prediction is outside it are left out, as the original's
        ``pred_pred`` metric does with the dataset's ignore list. ``None``: all classes.
        """
        result = self.matrix.compute(classes, "uvda")
        pixels = int(result["pixels"])
        return {
            "pixel_acc": float(result["aacc"]),
            "miou": float(result["miou"]),
            "pixels": pixels,
            "coverage": pixels / self.seen if self.seen else math.nan,
            "pairs": self.pairs,
            "iou": [float(v) for v in result["iou"]],
        }
