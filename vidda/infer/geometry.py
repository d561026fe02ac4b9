"""Sizes for ``vidda infer``: the model runs at the config's test scale, outputs keep the input's.

The model sees each frame resized like the validation data it was evaluated on
(``data.val.resize`` of the config: mmseg's keep-ratio rule, as :class:`ClipTransform`), or at a
size given on the command line, or at the native size. Its logits are resized back (bilinear) to
the native size before the arg-max, so every written map has the input frame's size.
"""

from __future__ import annotations

import cv2
import numpy as np

from vidda.data.transforms import round_size
from vidda.errors import UserError

__all__ = ["model_size", "parse_resize", "resize_flow", "resize_frame"]

Size = tuple[int, int]  # (H, W)


def parse_resize(text: str) -> str | Size:
    """``--resize`` value: ``config``, ``native``, or ``WxH`` (a keep-ratio target, → (W, H))."""
    if text in ("config", "native"):
        return text
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(
            f"--resize must be config, native or WxH (e.g. 1024x512), got {text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise UserError(f"--resize {text}: width and height must be positive")
    return (w, h)


def model_size(native: Size, resize: Size | None) -> Size:
    """(H, W) the model runs at for frames of ``native`` (H, W) and a keep-ratio target
    ``resize`` = (W, H) (scale = min(long / long_edge, short / short_edge)); None = native."""
    if not resize:
        return native
    h, w = native
    scale = min(max(resize) / max(h, w), min(resize) / min(h, w))
    return (round_size(h, scale), round_size(w, scale))


def resize_frame(rgb: np.ndarray, size: Size) -> np.ndarray:
    """Bilinear resize of ``uint8 [H, W, 3]`` to ``size`` (H, W); no copy when it already fits."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_flow(flow: np.ndarray, valid: np.ndarray, size: Size) -> tuple[np.ndarray, np.ndarray]:
    """Resize a flow ``float32 [h, w, 2]`` (pixels) and its ``bool [h, w]`` mask to ``size``.

    Vectors are interpolated bilinearly and scaled by the size ratio (they stay in pixels of the
    grid they travel with); the mask is resampled with nearest neighbours.
    """
    h, w = flow.shape[:2]
    if (h, w) == tuple(size):
        return flow, valid
    out = cv2.resize(flow, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    out *= np.array([size[1] / w, size[0] / h], np.float32)
    ok = cv2.resize(valid.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out, ok.astype(bool)
