"""Pictures for people: coloured label maps, optical flow in the standard colour wheel, mosaics."""

from __future__ import annotations

import cv2
import numpy as np

from vidda.classes import colorize

__all__ = ["colorize", "flow_to_color", "flow_wheel", "mosaic", "put_title"]

# Hue segments of the Middlebury flow colour wheel (Baker et al., 2011): red→yellow→green→cyan→
# blue→magenta→red, with these many steps each (chosen there for perceptual uniformity).
_WHEEL_STEPS = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))  # fmt: skip


def flow_wheel() -> np.ndarray:
    """float32 [55, 3]: the colour wheel's R,G,B entries in 0..255, starting at red."""
    rows = []
    for steps, start, end in _WHEEL_STEPS:
        t = np.arange(steps, dtype=np.float32)[:, None] / steps
        rows.append((1 - t) * np.float32(start) + t * np.float32(end))
    return np.concatenate(rows)


def flow_to_color(
    flow: np.ndarray, valid: np.ndarray | None = None, max_norm: float | None = None
) -> np.ndarray:
    """Render flow in the standard colour coding: hue = direction, saturation = magnitude.

    Args:
        flow: float [H, W, 2] (u, v) in pixels.
        valid: bool [H, W] or None; invalid pixels are drawn black.
        max_norm: magnitude drawn fully saturated; default = the largest valid magnitude.
    Returns:
        uint8 [H, W, 3] R,G,B.
    """
    flow = np.asarray(flow, dtype=np.float32)
    ok = np.isfinite(flow).all(axis=2) if valid is None else np.asarray(valid, bool)
    u = np.where(ok, flow[..., 0], 0.0)
    v = np.where(ok, flow[..., 1], 0.0)
    rad = np.hypot(u, v)
    if max_norm is None:
        max_norm = float(rad[ok].max()) if ok.any() else 0.0
    rad = rad / max(max_norm, 1e-6)
    wheel = flow_wheel()
    n = len(wheel)
    # Angle as in the reference coding: right (+u) is red, down (+v) yellow, left cyan, up violet.
    pos = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)
    k0 = np.floor(pos).astype(np.int64) % n
    k1 = (k0 + 1) % n
    f = (pos - np.floor(pos))[..., None]
    col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0
    r = rad[..., None]
    col = np.where(r <= 1, 1 - r * (1 - col), col * 0.75)  # desaturate towards white at zero flow
    out = np.clip(col * 255 + 0.5, 0, 255).astype(np.uint8)
    out[~ok] = 0
    return out


def put_title(image: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """Stack a black title bar with ``text`` on top of an R,G,B ``image`` [H, W, 3]."""
    bar = np.zeros((height, image.shape[1], 3), np.uint8)
    cv2.putText(
        bar,
        text,
        (3, height - 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        height / 40,
        (255,) * 3,
        1,
        cv2.LINE_AA,
    )
    return np.concatenate([bar, image], axis=0)


def mosaic(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile R,G,B images (all the same size) row by row with ``pad`` white pixels between them."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            if img.shape[:2] != (h, w):
                raise ValueError(
                    f"mosaic tile ({i}, {j}) has size {img.shape[:2]}, expected {(h, w)}"
                )
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = img
    return out
