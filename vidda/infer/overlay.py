"""Overlay pictures: the input frame blended with the class colours, and a legend of its classes."""

from __future__ import annotations

import cv2
import numpy as np

from vidda.classes import CLASSES, NUM_CLASSES, PALETTE, colorize

__all__ = ["ALPHA", "draw_legend", "render_overlay"]

ALPHA = 0.5
"""Weight of the class colours in the blend."""

LEGEND_MIN_SHARE = 0.005
"""Classes covering less than this share of the frame are left out of the legend."""

LEGEND_MAX_ENTRIES = 8
"""At most this many classes (the largest) are listed."""


def draw_legend(image: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Draw, in place, a legend of the largest classes present in the top-left corner.

    Args:
        image: ``uint8 [H, W, 3]`` R,G,B.
        shares: ``float [K]``, each class's share of the frame's pixels.
    Returns:
        ``image``. At most :data:`LEGEND_MAX_ENTRIES` entries, and as many as fit in the
        frame's height, are drawn (classes under :data:`LEGEND_MIN_SHARE` are left out).
    """
    h, w = image.shape[:2]
    line = max(10, min(24, h // 24))
    scale = line / 30
    present = [int(c) for c in np.argsort(-shares, kind="stable") if shares[c] >= LEGEND_MIN_SHARE]
    present = present[: min(LEGEND_MAX_ENTRIES, max((h - 4) // line, 0))]
    if not present:
        return image
    names = [CLASSES[c] if c < NUM_CLASSES else str(c) for c in present]
    text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in names)
    box_w = min(w, line + 6 + text_w + 4)
    box_h = len(present) * line + 4
    region = image[:box_h, :box_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken behind the text
    for i, (c, name) in enumerate(zip(present, names, strict=True)):
        y = 2 + i * line
        color = PALETTE[c] if c < NUM_CLASSES else (0, 0, 0)
        cv2.rectangle(image, (3, y + 1), (3 + line - 3, y + line - 2), color, -1)
        cv2.putText(image, name, (line + 4, y + line - 3), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return image


def render_overlay(rgb: np.ndarray, pred: np.ndarray, shares: np.ndarray | None = None,
                   alpha: float = ALPHA) -> np.ndarray:  # fmt: skip
    """The frame blended with its prediction's colours, with a legend.

    Args:
        rgb: ``uint8 [H, W, 3]`` R,G,B input frame.
        pred: ``uint8 [H, W]`` trainIds.
        shares: ``float [K]`` class shares (computed from ``pred`` when None).
    Returns:
        ``uint8 [H, W, 3]`` R,G,B: ``(1 − alpha)·frame + alpha·colour``, legend drawn on top.
    """
    if shares is None:
        shares = np.bincount(pred.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] / pred.size
    out = cv2.addWeighted(rgb, 1.0 - alpha, colorize(pred), alpha, 0.0)
    return draw_legend(out, shares)
