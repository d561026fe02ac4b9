"""Semantic-segmentation metrics: a streaming confusion matrix and the benchmark mIoU protocols.

A :class:`ConfusionMatrix` accumulates a ``[C, C]`` int64 histogram of (ground truth, prediction)
trainId pairs over a whole validation set (rows = GT, columns = prediction).  Pixels whose GT is
``ignore_index`` are dropped.  :meth:`ConfusionMatrix.compute` then scores one class subset under
one of two protocols:

``"standard"``
    Keep pixels whose GT is in the subset.  A prediction of an excluded class is an error (a false
    negative of the GT class).  This is the usual Cityscapes/mmseg convention.
``"uvda"``
    Keep pixels whose GT *and* prediction are in the subset (the original UVDA evaluation):
    a pixel predicted as an excluded class (e.g. "pole" for VIPER) is dropped entirely.

With all 19 classes both protocols coincide.  Units in a result dict: ``iou`` and ``acc`` are
per-class *fractions* in ``[0, 1]`` (NaN when undefined or outside the subset); ``miou``,
``macc`` and ``aacc`` are *percent*.  The count lists are histograms over the kept pixels.

Speed: each :meth:`ConfusionMatrix.update` is a single ``bincount``.  For ``uint8`` numpy inputs
(label PNGs) the key is the 16-bit pair ``gt << 8 | pred`` counted into 65536 bins, so the same
histogram also validates the inputs (no extra pass).  For torch tensors the key is built on the
tensor's device and invalid pixels are sent past ``minlength``, so validation only reads the
output *length* that ``torch.bincount`` already has to know (no extra host synchronisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vidda.classes import CLASSES, IGNORE_INDEX, NUM_CLASSES, class_subset

__all__ = [
    "PROTOCOLS",
    "ConfusionMatrix",
    "evaluate_both",
    "format_table",
    "to_json",
]

PROTOCOLS: tuple[str, ...] = ("standard", "uvda")
"""Names accepted by :meth:`ConfusionMatrix.compute`."""

_MAX_LISTED = 8  # offending values named in an error message
_PAIR_BINS = 1 << 16  # uint8 GT × uint8 prediction

Labels = np.ndarray | torch.Tensor
ClassSpec = str | Sequence[int] | None


# --------------------------------------------------------------------------- input helpers


def _list_values(values: Sequence[int]) -> str:
    """``[3, 19, 100]`` or ``[0, 1, ..., 7, ...] (12 distinct)`` for an error message."""
    values = sorted(int(v) for v in values)
    if len(values) <= _MAX_LISTED:
        return str(values)
    head = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return f"[{head}, ...] ({len(values)} distinct)"


def _check_integer_dtype(name: str, dtype: Any) -> None:
    """Raise ``TypeError`` unless ``dtype`` (numpy or torch) is an integer or bool type."""
    if isinstance(dtype, torch.dtype):
        ok = not (dtype.is_floating_point or dtype.is_complex)
    else:
        ok = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)
    if not ok:
        raise TypeError(f"{name} must hold integer trainIds, got dtype {dtype}")


def _as_pair(pred: Any, gt: Any) -> tuple[Labels, Labels]:
    """Return (pred, gt) both as numpy arrays or both as torch tensors on the same device."""
    if isinstance(pred, torch.Tensor) or isinstance(gt, torch.Tensor):
        ref = pred if isinstance(pred, torch.Tensor) else gt
        pred_t = torch.as_tensor(pred, device=ref.device)
        gt_t = torch.as_tensor(gt, device=ref.device)
        if pred_t.device != gt_t.device:
            raise ValueError(f"pred is on {pred_t.device} but gt is on {gt_t.device}")
        return pred_t, gt_t
    return np.asarray(pred), np.asarray(gt)


# --------------------------------------------------------------------------- the matrix


class ConfusionMatrix:
    """Streaming ``[C, C]`` int64 confusion matrix of trainIds (rows = GT, columns = prediction).

    Args:
        num_classes: C, the number of trainIds (predictions must lie in ``0..C-1``).
        ignore_index: GT value of pixels that are not scored (dropped on update).
        device: where the matrix accumulates.  ``None`` = follow the first torch tensor passed to
            :meth:`update` (so GPU predictions are counted on the GPU); CPU until then.

    Example::

        cm = ConfusionMatrix()
        for pred, gt in loader:          # [B, H, W] trainIds, numpy or torch
            cm.update(pred, gt)
        cm.all_reduce()                  # sum over DDP ranks (no-op without torch.distributed)
        print(format_table(cm.compute("viper", protocol="uvda")))
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        device: str | torch.device | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._device_pinned = device is not None
        self._mat = torch.zeros(
            (self.num_classes, self.num_classes), dtype=torch.int64, device=device
        )

    # ------------------------------------------------------------------ state

    @property
    def device(self) -> torch.device:
        """Device of the accumulated matrix."""
        return self._mat.device

    @property
    def matrix(self) -> np.ndarray:
        """A host copy of the matrix: int64 ``[C, C]``, rows = GT, columns = prediction."""
        return self._mat.cpu().numpy().copy()

    @property
    def tensor(self) -> torch.Tensor:
        """The live int64 ``[C, C]`` torch tensor (on :attr:`device`); do not modify."""
        return self._mat

    @property
    def total(self) -> int:
        """Number of scored (non-ignored) pixels accumulated so far."""
        return int(self._mat.sum())

    def reset(self) -> None:
        """Zero the matrix (keeps the device)."""
        self._mat.zero_()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (in place) and return ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix into a "
                f"{self.num_classes}-class one"
            )
        self._mat += other._mat.to(self._mat.device)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"device={self.device})"
        )

    def state_dict(self) -> dict[str, Any]:
        """``{"matrix": int64 CPU tensor [C, C], "num_classes": C, "ignore_index": i}``."""
        return {
            "matrix": self._mat.detach().cpu().clone(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counts saved by :meth:`state_dict` (the matrix stays on :attr:`device`)."""
        mat = torch.as_tensor(state["matrix"])
        expected = (self.num_classes, self.num_classes)
        if tuple(mat.shape) != expected or int(state.get("num_classes", -1)) not in (-1, *expected):
            raise ValueError(f"state holds a {tuple(mat.shape)} matrix, expected {expected}")
        if "ignore_index" in state and int(state["ignore_index"]) != self.ignore_index:
            raise ValueError(
                f"state was recorded with ignore_index={state['ignore_index']}, "
                f"this matrix uses {self.ignore_index}"
            )
        self._mat.copy_(mat.to(dtype=torch.int64, device=self._mat.device))

    def all_reduce(self) -> None:
        """Sum the matrix over all ``torch.distributed`` ranks (no-op when not initialised).

        With the NCCL backend a CPU matrix is reduced through the current CUDA device.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return
        buf = self._mat
        if dist.get_backend() == "nccl" and buf.device.type != "cuda":
            buf = buf.cuda()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        if buf is not self._mat:
            self._mat.copy_(buf)

    # ------------------------------------------------------------------ update

    def update(self, pred: Labels, gt: Labels) -> None:
        """Count one batch.

        Args:
            pred: predicted trainIds, any shape (``[H, W]``, ``[B, H, W]``, ...), integer dtype,
                numpy array or torch tensor; every value must lie in ``0..C-1``.
            gt: ground-truth trainIds of the same shape; values in ``0..C-1`` or ``ignore_index``.

        Raises:
            ValueError: shape mismatch (both shapes named) or out-of-range values (named).
            TypeError: non-integer dtype.
        """
        pred, gt = _as_pair(pred, gt)
        if tuple(pred.shape) != tuple(gt.shape):
            raise ValueError(
                f"pred and gt shapes differ: pred {tuple(pred.shape)} vs gt {tuple(gt.shape)}"
            )
        _check_integer_dtype("pred", pred.dtype)
        _check_integer_dtype("gt", gt.dtype)
        if isinstance(pred, torch.Tensor):
            self._follow_device(pred.device)
            if pred.device.type == "cpu":  # host memory: the numpy kernel on zero-copy views
                pred, gt = pred.detach().numpy(), gt.detach().numpy()
        if isinstance(pred, torch.Tensor):
            counts = self._count_torch(pred, gt)
        else:
            counts = torch.from_numpy(self._count_numpy(pred, gt))
        self._mat += counts.to(self._mat.device)

    def _follow_device(self, device: torch.device) -> None:
        """With ``device=None``, move the matrix to the device of the first tensor input."""
        if not self._device_pinned:
            self._mat = self._mat.to(device)
            self._device_pinned = True

    # numpy ----------------------------------------------------------------

    def _pair_path_ok(self) -> bool:
        """Whether (GT, prediction) fit the 256 × 256 uint8 pair histogram."""
        return self.num_classes <= 256 and 0 <= self.ignore_index <= 255

    def _count_numpy(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """int64 ``[C, C]`` counts of one numpy batch (validated)."""
        if not self._pair_path_ok():
            return self._count_numpy_generic(pred, gt)
        if gt.dtype != np.uint8:
            gt = self._to_uint8(gt, "gt")
        if pred.dtype != np.uint8:
            pred = self._to_uint8(pred, "pred")
        return self._count_uint8(pred, gt)

    def _to_uint8(self, labels: np.ndarray, name: str) -> np.ndarray:
        """Cast to uint8 after a cheap range check (values outside 0..255 are invalid here)."""
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            self._raise_bad_values(name, labels)
        return labels.astype(np.uint8)

    def _count_uint8(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """One ``np.bincount`` of the 16-bit key ``gt << 8 | pred``; validates from the result."""
        key = gt.reshape(-1).astype(np.uint16)
        key <<= 8
        key |= pred.reshape(-1)
        pairs = np.bincount(key, minlength=_PAIR_BINS).reshape(256, 256)
        c = self.num_classes
        gt_hits = pairs.sum(axis=1)
        gt_hits[:c] = 0
        gt_hits[self.ignore_index] = 0
        if gt_hits.any():
            self._raise_bad_values("gt", np.flatnonzero(gt_hits))
        pred_hits = pairs[:, c:].sum(axis=0)
        if pred_hits.any():
            self._raise_bad_values("pred", np.flatnonzero(pred_hits) + c)
        counts = np.ascontiguousarray(pairs[:c, :c])
        if self.ignore_index < c:  # an ignore value inside the class range: drop its row
            counts[self.ignore_index] = 0
        return counts

    def _count_numpy_generic(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Fallback for C > 256 or an ignore index outside 0..255 (int64 key)."""
        c = self.num_classes
        g = gt.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        if p.size and (p.min() < 0 or p.max() >= c):
            self._raise_bad_values("pred", p)
        ignored = g == self.ignore_index
        if g.size and (g.min() < 0 or g.max() >= c):
            bad = g[~ignored]
            if bad.size and (bad.min() < 0 or bad.max() >= c):
                self._raise_bad_values("gt", bad)
        key = g * c
        key += p
        key[ignored] = c * c  # one spare bin, discarded below
        return np.bincount(key, minlength=c * c + 1)[: c * c].reshape(c, c)

    # torch ----------------------------------------------------------------

    def _count_torch(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """int64 ``[C, C]`` counts of one tensor batch, computed on the tensors' device (GPU).

        Valid pairs map to ``g * C + p`` (``[0, C²)``), ignored GT to ``C² + p`` and any invalid
        pixel to ``C² + C`` — one past ``minlength``.  ``torch.bincount`` must find the input's
        maximum anyway to size its output, so an output longer than ``minlength`` flags invalid
        input with no extra device → host synchronisation.  (``update`` routes CPU tensors to the
        numpy kernel, which is several times faster on the host; this one works on any device.)
        """
        c = self.num_classes
        valid_bins = c * c + c
        wide = torch.int64 in (pred.dtype, gt.dtype) or c * c + c >= 2**31
        work = torch.int64 if wide else torch.int32  # 64-bit inputs: no wrap-around to valid ids
        g = gt.reshape(-1).to(work)
        p = pred.reshape(-1).to(work)
        ignored = g == self.ignore_index
        ok = (p >= 0) & (p < c) & (ignored | ((g >= 0) & (g < c)))
        key = torch.where(ignored, c * c, g * c) + p
        key.masked_fill_(~ok, valid_bins)
        counts = torch.bincount(key, minlength=valid_bins)
        if counts.numel() > valid_bins:
            self._raise_bad_tensor_values(p, g, ignored)
        return counts[: c * c].view(c, c)

    def _raise_bad_tensor_values(
        self, p: torch.Tensor, g: torch.Tensor, ignored: torch.Tensor
    ) -> None:
        """Error path of :meth:`_count_torch`: find and name the offending values."""
        c = self.num_classes
        bad_p = p[(p < 0) | (p >= c)]
        if bad_p.numel():
            self._raise_bad_values("pred", bad_p.cpu().numpy())
        bad_g = g[~ignored & ((g < 0) | (g >= c))]
        self._raise_bad_values("gt", bad_g.cpu().numpy())

    # errors ---------------------------------------------------------------

    def _raise_bad_values(self, name: str, values: np.ndarray) -> None:
        """Raise ``ValueError`` naming the distinct invalid values among ``values``."""
        values = np.unique(np.asarray(values).reshape(-1))
        c = self.num_classes
        if name == "gt":
            bad = values[((values < 0) | (values >= c)) & (values != self.ignore_index)]
            allowed = f"0..{c - 1} or ignore_index={self.ignore_index}"
        else:
            bad = values[(values < 0) | (values >= c)]
            allowed = f"0..{c - 1} (ignore_index is not a valid prediction)"
        raise ValueError(f"{name} holds invalid trainIds {_list_values(bad)}; expected {allowed}")

    # ------------------------------------------------------------------ scoring

    def compute(self, classes: ClassSpec = None, protocol: str = "standard") -> dict[str, Any]:
        """Score the accumulated counts on a class subset.

        Args:
            classes: ``None`` (all classes), a subset name (``"viper"``, ``"synthia_seq"``,
                ``"all"``) or a list of trainIds.
            protocol: ``"standard"`` (keep pixels whose GT is in the subset) or ``"uvda"`` (keep
                pixels whose GT and prediction are both in the subset; the original's rule).

        Returns:
            A dict (see :func:`to_json` for a JSON-safe copy) with

            * ``protocol`` (str), ``classes`` (list of trainIds), ``num_classes`` (int);
            * ``iou``, ``acc``: lists of C floats, fractions in ``[0, 1]``; NaN when the union /
              GT count is zero or the class is outside the subset;
            * ``miou``, ``macc``: NaN-mean over the subset, **percent**; ``aacc``: overall pixel
              accuracy over the kept pixels, percent (NaN when nothing was kept);
            * ``intersection``, ``union``, ``gt_pixels``, ``pred_pixels``: lists of C ints,
              histograms over the kept pixels; ``pixels``: number of kept pixels;
            * ``confusion``: ``[C][C]`` int lists, the matrix restricted to the kept pixels.
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
        ids = self._resolve_classes(classes)
        kept = _kept_matrix(self.matrix, ids, protocol)
        return _scores(kept, ids, protocol)

    def _resolve_classes(self, classes: ClassSpec) -> list[int]:
        """Sorted trainIds of the subset (all C classes for ``None``)."""
        if classes is None:
            return list(range(self.num_classes))
        if self.num_classes == NUM_CLASSES:
            return list(class_subset(classes))
        if isinstance(classes, str):
            raise ValueError(f"named subsets need {NUM_CLASSES} classes, not {self.num_classes}")
        ids = sorted({int(i) for i in classes})
        if len(ids) != len(classes) or not all(0 <= i < self.num_classes for i in ids):
            raise ValueError(
                f"classes {list(classes)} must be distinct ids in 0..{self.num_classes - 1}"
            )
        return ids


# --------------------------------------------------------------------------- scoring helpers


def _kept_matrix(mat: np.ndarray, ids: Sequence[int], protocol: str) -> np.ndarray:
    """``mat`` with the pixels dropped by ``protocol`` zeroed (``[C, C]`` int64 copy)."""
    in_subset = np.zeros(mat.shape[0], dtype=bool)
    in_subset[list(ids)] = True
    keep = in_subset[:, None]  # standard: GT in subset
    if protocol == "uvda":
        keep = keep & in_subset[None, :]  # ... and prediction in subset
    return np.where(keep, mat, 0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64 with NaN where ``den == 0``."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _scores(kept: np.ndarray, ids: Sequence[int], protocol: str) -> dict[str, Any]:
    """Per-class and mean scores of an already-restricted ``[C, C]`` matrix."""
    inter = np.diag(kept).copy()
    gt_px = kept.sum(axis=1)
    pred_px = kept.sum(axis=0)
    union = gt_px + pred_px - inter
    excluded = np.ones(kept.shape[0], dtype=bool)
    excluded[list(ids)] = False
    iou = _ratio(inter, union)
    acc = _ratio(inter, gt_px)
    iou[excluded] = np.nan
    acc[excluded] = np.nan
    pixels = int(kept.sum())
    return {
        "protocol": protocol,
        "classes": [int(i) for i in ids],
        "num_classes": int(kept.shape[0]),
        "iou": [float(v) for v in iou],
        "acc": [float(v) for v in acc],
        "miou": 100.0 * _nanmean(iou),
        "macc": 100.0 * _nanmean(acc),
        "aacc": 100.0 * int(inter.sum()) / pixels if pixels else math.nan,
        "intersection": [int(v) for v in inter],
        "union": [int(v) for v in union],
        "gt_pixels": [int(v) for v in gt_px],
        "pred_pixels": [int(v) for v in pred_px],
        "pixels": pixels,
        "confusion": kept.tolist(),
    }


def evaluate_both(cm: ConfusionMatrix, classes: ClassSpec = None) -> dict[str, dict[str, Any]]:
    """``{"standard": cm.compute(classes, "standard"), "uvda": cm.compute(classes, "uvda")}``."""
    return {protocol: cm.compute(classes, protocol) for protocol in PROTOCOLS}


# --------------------------------------------------------------------------- reporting


def to_json(result: Any) -> Any:
    """A JSON-serialisable copy of a :meth:`ConfusionMatrix.compute` result (NaN → ``None``).

    Works on nested dicts/lists (e.g. the output of :func:`evaluate_both`); numpy scalars and
    arrays become Python numbers and lists.
    """
    if isinstance(result, dict):
        return {str(k): to_json(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [to_json(v) for v in result]
    if isinstance(result, np.ndarray):
        return to_json(result.tolist())
    if isinstance(result, np.generic):
        result = result.item()
    if isinstance(result, float) and not math.isfinite(result):
        return None
    return result


def _pct(value: float) -> str:
    """Fraction → ``"12.34"`` percent; ``"nan"`` for NaN/None."""
    if value is None or math.isnan(value):
        return "nan"
    return f"{100.0 * value:.2f}"


def _fraction(percent: float | None) -> float | None:
    """Percent → fraction, passing ``None``/NaN through."""
    return None if percent is None else percent / 100.0


def format_table(result: dict[str, Any], class_names: Sequence[str] = CLASSES) -> str:
    """A per-class text table of a :meth:`ConfusionMatrix.compute` result.

    Columns: class name, IoU and Acc (percent, 2 decimals; ``nan`` for classes outside the subset
    or never seen), intersection and union pixel counts.  The last line is the summary
    ``mIoU / mAcc / aAcc`` over the subset.  Also accepts a :func:`to_json` result.
    """
    num = len(result["iou"])
    names = list(class_names) if len(class_names) == num else [str(i) for i in range(num)]
    width = max(15, *(len(n) for n in names))
    lines = [
        f"protocol: {result['protocol']}, {len(result['classes'])} classes, "
        f"{result['pixels']} pixels",
        f"{'Class':<{width}} {'IoU':>7} {'Acc':>7} {'Intersection':>14} {'Union':>14}",
    ]
    for c in range(num):
        lines.append(
            f"{names[c]:<{width}} {_pct(result['iou'][c]):>7} {_pct(result['acc'][c]):>7} "
            f"{result['intersection'][c]:>14d} {result['union'][c]:>14d}"
        )
    miou, macc, aacc = (_pct(_fraction(result[k])) for k in ("miou", "macc", "aacc"))
    lines.append(f"mIoU: {miou}  mAcc: {macc}  aAcc: {aacc}")
    return "\n".join(lines)
