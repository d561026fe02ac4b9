"""Optical-flow files: KITTI 16-bit PNG, Middlebury ``.flo`` and ``.npy``, chosen by suffix.

Every reader returns ``(flow, valid)``: ``flow`` float32 [H, W, 2] holding (u, v) in pixels
(u to the right, v downwards) and ``valid`` bool [H, W]. Invalid pixels are reported as invalid
and their flow is set to 0; a reader never turns "unknown" into "zero motion with valid=True".
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vidda.errors import UserError

KITTI_SCALE = 64.0
KITTI_OFFSET = 2.0**15
KITTI_MAX = (65535 - KITTI_OFFSET) / KITTI_SCALE  # ≈ 511.98 px; the format holds [-512, 511.98]
FLO_MAGIC = 202021.25
FLO_UNKNOWN = 1e9  # Middlebury: components with |value| > 1e9 mean "unknown"

SUFFIXES = (".png", ".flo", ".npy")


class FlowFileError(UserError, ValueError):
    """A flow file that cannot be read or written as requested; the message names the file."""


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FlowFileError(f"{path}: unknown flow format {suffix!r}; expected one of {SUFFIXES}")
    return suffix


def read_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a flow file.

    Returns:
        flow: float32 [H, W, 2] (u, v) in pixels, 0 where invalid.
        valid: bool [H, W].
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FlowFileError(f"{path}: flow file not found")
    if suffix == ".png":
        return _read_kitti_png(path)
    if suffix == ".flo":
        return _read_flo(path)
    return _read_npy(path)


def write_flow(path: str | os.PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write a flow file atomically (temporary file + rename), creating parent folders.

    Args:
        path: destination; ``.png`` (KITTI 16-bit, 1/64 px), ``.flo`` or ``.npy``.
        flow: float [H, W, 2] (u, v) in pixels.
        valid: bool [H, W]; ``None`` means every pixel is valid. Non-finite flow is always invalid.
    """
    path = Path(path)
    suffix = _suffix(path)
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise FlowFileError(f"{path}: flow must have shape [H, W, 2], got {list(flow.shape)}")
    ok = np.isfinite(flow).all(axis=2)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != flow.shape[:2]:
            raise FlowFileError(
                f"{path}: valid mask shape {list(valid.shape)} != flow shape {list(flow.shape[:2])}"
            )
        ok &= valid
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        if suffix == ".png":
            _write_kitti_png(tmp, flow, ok)
        elif suffix == ".flo":
            _write_flo(tmp, flow, ok)
        else:
            np.save(tmp, np.where(ok[..., None], flow, np.nan).astype(np.float32))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_kitti_png(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FlowFileError(f"{path}: not a readable PNG (truncated or corrupt?)")
    if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] != 3:
        raise FlowFileError(
            f"{path}: KITTI flow PNG must be 16-bit with 3 channels, got dtype {raw.dtype} "
            f"and shape {list(raw.shape)}"
        )
    # OpenCV gives B,G,R: index 2 = u (R), 1 = v (G), 0 = valid flag (B).
    flow = (raw[:, :, 2:0:-1].astype(np.float32) - KITTI_OFFSET) / KITTI_SCALE
    valid = raw[:, :, 0] > 0
    flow[~valid] = 0.0
    return flow, valid


def _write_kitti_png(path: Path, flow: np.ndarray, valid: np.ndarray) -> None:
    too_large = valid & (np.abs(flow) > KITTI_MAX + 0.5 / KITTI_SCALE).any(axis=2)
    if too_large.any():
        raise FlowFileError(
            f"{path}: {int(too_large.sum())} flow vectors exceed the KITTI PNG range of ±512 px"
        )
    # float64: in float32, 2^15 + 64·u loses the last bits of the 1/64 px step.
    enc = np.where(valid[..., None], flow.astype(np.float64), 0.0) * KITTI_SCALE + KITTI_OFFSET
    enc = np.rint(enc)
    enc = np.clip(enc, 0, 65535).astype(np.uint16)
    out = np.stack([valid.astype(np.uint16), enc[:, :, 1], enc[:, :, 0]], axis=2)
    if not cv2.imwrite(str(path), out):
        raise FlowFileError(f"{path}: OpenCV could not write the PNG")


def _read_flo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data, "<f4", 1)[0] != FLO_MAGIC:
        raise FlowFileError(f"{path}: not a Middlebury .flo file (magic number 202021.25 missing)")
    w, h = (int(x) for x in np.frombuffer(data, "<i4", 2, offset=4))
    if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
        raise FlowFileError(
            f"{path}: .flo header says {w}x{h}, which needs {12 + 8 * max(w * h, 0)} bytes; "
            f"the file has {len(data)} (truncated?)"
        )
    flow = np.frombuffer(data, "<f4", 2 * w * h, offset=12).reshape(h, w, 2).copy()
    valid = np.isfinite(flow).all(axis=2) & (np.abs(flow) <= FLO_UNKNOWN).all(axis=2)
    flow[~valid] = 0.0
    return flow, valid


def _write_flo(path: Path, flow: np.ndarray, valid: np.ndarray) -> None:
    h, w = valid.shape
    body = np.where(valid[..., None], flow, np.float32(1e10)).astype("<f4")
    with open(path, "wb") as f:
        f.write(np.float32(FLO_MAGIC).astype("<f4").tobytes())
        f.write(np.array([w, h], dtype="<i4").tobytes())
        f.write(body.tobytes())


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise FlowFileError(f"{path}: not a readable .npy file ({err})") from err
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise FlowFileError(f"{path}: .npy flow must have shape [H, W, 2], got {list(arr.shape)}")
    flow = arr.astype(np.float32)
    valid = np.isfinite(flow).all(axis=2)
    flow[~valid] = 0.0
    return flow, valid
