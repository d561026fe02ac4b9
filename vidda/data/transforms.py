"""Joint clip transforms: one random draw applied to every frame, the label and every flow.

Geometry follows the original pipeline (keep-ratio resize, random crop with the category-max-ratio
rule, horizontal flip, padding), with one correction: flow vectors are measured in pixels of the
tensor they travel with, so resizing multiplies them by the scale factors (the original did not:
``compat.flow_not_rescaled``) and flipping negates u. Validity masks follow nearest-neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from vidda.classes import IGNORE_INDEX
from vidda.data.clips import RawClip

CROP_TRIES = 10  # re-draws of a crop that fails the category-max-ratio rule (as the original)


@dataclass(frozen=True)
class ClipTransform:
    """How a clip is resized, cropped, flipped and jittered.

    resize: (W, H) keep-ratio target (the image is scaled by min(W/w, H/h) for landscape frames,
        like mmseg's ``Resize(img_scale=(W, H))``), or None for the native size.
    ratio_range: (lo, hi) random extra scale factor drawn per clip, or None.
    crop_size: (H, W) random crop (padded when the frame is smaller), or None.
    cat_max_ratio: re-draw a crop whose largest class covers ≥ this share of its labelled pixels.
    flip_prob: probability of a horizontal flip.
    photometric: brightness/contrast/saturation/hue jitter, the same draw for every frame.
    scale_flow: multiply flow vectors by the resize factors (False = the original's behaviour).
    pl_margins: (top, bottom, left, right) native-resolution pixels excluded from pseudo-labels.
    """

    resize: tuple[int, int] | None = None
    ratio_range: tuple[float, float] | None = None
    crop_size: tuple[int, int] | None = None
    cat_max_ratio: float = 1.0
    flip_prob: float = 0.0
    photometric: bool = False
    scale_flow: bool = True
    pl_margins: tuple[int, int, int, int] | None = None

    def __call__(self, clip: RawClip, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Transform ``clip``; ``rng=None`` is the deterministic test path (no random step).

        Returns a sample dict (T frames, output size H×W):
            frames uint8 [T, 3, H, W] R,G,B; label uint8 [H, W] (255 where unknown);
            flows float32 [T, 2, H, W] (0 where absent); flow_valid bool [T, H, W] (all False
            where absent); pl_valid bool [H, W] (pixels allowed to carry pseudo-labels);
            name str; orig_size int64 [2] (native H, W); flip bool.
        """
        h0, w0 = clip.frames[-1].shape[:2]
        scale = self._draw_scale(h0, w0, rng)
        size = (round_size(h0, scale), round_size(w0, scale)) if scale != 1.0 else (h0, w0)
        label = clip.label if clip.label is not None else np.full((h0, w0), IGNORE_INDEX, np.uint8)
        if size != (h0, w0):  # the whole label: the crop rule looks at it
            label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)
        box = (0, 0, *size)
        if self.crop_size is not None:
            if rng is None:
                raise ValueError("a random crop needs an rng; test transforms take no crop_size")
            box = self._draw_crop(label, rng)
        # Frames, flows and masks are resampled only inside the crop: resize-then-crop in one go.
        region = _Region((h0, w0), size, box)
        sample = {
            "frames": [region.linear(f) for f in clip.frames],
            "label": _cut(label, box),
            "pl_valid": region.nearest(_margin_mask(h0, w0, self.pl_margins)),
            "flows": [
                None if f is None else region.flow(f, ok, self.scale_flow)
                for f, ok in zip(clip.flows, clip.flow_valid, strict=True)
            ],
        }
        if self.crop_size is not None:
            sample = _pad(sample, self.crop_size)
        if self.photometric and rng is not None:
            sample["frames"] = photometric_jitter(sample["frames"], rng)
        out = _to_tensors(sample)
        flip = rng is not None and self.flip_prob > 0 and rng.random() < self.flip_prob
        if flip:
            out = _flip(out)
        out.update(name=clip.name, orig_size=torch.tensor([h0, w0]), flip=flip)
        return out

    def _draw_scale(self, h: int, w: int, rng: np.random.Generator | None) -> float:
        scale = 1.0
        if self.resize is not None:
            long_edge, short_edge = max(self.resize), min(self.resize)
            scale = min(long_edge / max(h, w), short_edge / min(h, w))
        if self.ratio_range is not None and rng is not None:
            scale *= float(rng.uniform(*self.ratio_range))
        return scale

    def _draw_crop(self, label: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(y0, x0, h, w) of a crop; with cat_max_ratio < 1 re-drawn as the original does."""
        box = _random_box(label.shape, self.crop_size, rng)
        if self.cat_max_ratio >= 1.0:
            return box
        for _ in range(CROP_TRIES):
            y, x, h, w = box
            counts = np.bincount(label[y : y + h, x : x + w].ravel(), minlength=256)
            counts[IGNORE_INDEX] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
            box = _random_box(label.shape, self.crop_size, rng)
        return box


def round_size(size: int, scale: float) -> int:
    """Rescaled length, rounded like mmcv's ``imrescale``."""
    return int(size * scale + 0.5)


def _random_box(
    shape: tuple[int, ...], crop: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    ch, cw = min(crop[0], h), min(crop[1], w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return y, x, ch, cw


class _Region:
    """Resample the crop ``box`` of a frame resized from ``src`` (H, W) to ``dst`` (H, W).

    Equivalent to resizing the whole frame, then cropping (OpenCV's pixel-centre mapping
    x_src = (x_dst + 0.5)·w/W − 0.5 for bilinear, x_src = ⌊x_dst·w/W⌋ for nearest), but only the
    crop's pixels are computed.
    """

    def __init__(self, src: tuple[int, int], dst: tuple[int, int], box: tuple[int, int, int, int]):
        self.src, self.dst, self.box = src, dst, box
        self.identity = src == dst
        self.whole = box == (0, 0, *dst)
        y0, x0, h, w = box
        ry, rx = src[0] / dst[0], src[1] / dst[1]
        self.rows = np.minimum(np.floor(np.arange(y0, y0 + h) * ry).astype(np.intp), src[0] - 1)
        self.cols = np.minimum(np.floor(np.arange(x0, x0 + w) * rx).astype(np.intp), src[1] - 1)
        self.affine = np.array(
            [[rx, 0.0, (x0 + 0.5) * rx - 0.5], [0.0, ry, (y0 + 0.5) * ry - 0.5]], np.float64
        )

    def linear(self, image: np.ndarray) -> np.ndarray:
        """Bilinear resample of an [H, W] or [H, W, C] array (uint8 or float32)."""
        if self.identity:
            return _cut(image, self.box)
        if self.whole:
            return cv2.resize(image, self.dst[::-1], interpolation=cv2.INTER_LINEAR)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        size = (self.box[3], self.box[2])
        border = cv2.BORDER_REPLICATE
        return cv2.warpAffine(image, self.affine, size, flags=flags, borderMode=border)

    def nearest(self, mask: np.ndarray) -> np.ndarray:
        """Nearest-neighbour resample of an [H, W] array."""
        if self.identity:
            return _cut(mask, self.box)
        return mask[self.rows[:, None], self.cols[None, :]]

    def flow(
        self, flow: np.ndarray, valid: np.ndarray, rescale: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(flow float32 [h, w, 2], valid bool [h, w]) in pixels of the output grid."""
        ok = self.nearest(valid)
        if self.identity:
            return _cut(flow, self.box), ok
        if valid.all():
            out = self.linear(flow)
        else:
            # Normalised interpolation: invalid vectors (stored as 0) must not pull valid
            # neighbours towards zero motion.
            weight = valid.astype(np.float32)
            den = self.linear(weight)
            out = self.linear(flow * weight[..., None]) / np.maximum(den, 1e-6)[..., None]
            ok &= den > 0
            out[~ok] = 0.0
        if rescale:
            out *= np.array([self.dst[1] / self.src[1], self.dst[0] / self.src[0]], np.float32)
        return out, ok


def _cut(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = box
    return a[y : y + h, x : x + w]


def _margin_mask(h: int, w: int, margins: tuple[int, int, int, int] | None) -> np.ndarray:
    """bool [H, W]: False within (top, bottom, left, right) pixels of the native frame's border."""
    mask = np.ones((h, w), bool)
    if margins is not None:
        top, bottom, left, right = margins
        mask[:top] = False
        mask[h - bottom :] = False
        mask[:, :left] = False
        mask[:, w - right :] = False
    return mask


def _pad(sample: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Pad to ``size`` (H, W) at the bottom/right: frames 0, label 255, flows 0 and invalid."""
    h, w = sample["label"].shape
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if not ph and not pw:
        return sample

    def pad(a: np.ndarray, value: Any) -> np.ndarray:
        return np.pad(a, [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2), constant_values=value)

    return {
        "frames": [pad(f, 0) for f in sample["frames"]],
        "label": pad(sample["label"], IGNORE_INDEX),
        "pl_valid": pad(sample["pl_valid"], False),
        "flows": [None if f is None else (pad(f[0], 0.0), pad(f[1], False))
                  for f in sample["flows"]],  # fmt: skip
    }


def _to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """numpy → torch (one copy each), channels first."""
    h, w = sample["label"].shape
    t = len(sample["frames"])
    frames = torch.empty((t, 3, h, w), dtype=torch.uint8)
    flows = torch.zeros((t, 2, h, w), dtype=torch.float32)
    valid = torch.zeros((t, h, w), dtype=torch.bool)
    for i, frame in enumerate(sample["frames"]):
        frames[i] = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    for i, item in enumerate(sample["flows"]):
        if item is not None:
            flows[i] = torch.from_numpy(np.ascontiguousarray(item[0])).permute(2, 0, 1)
            valid[i] = torch.from_numpy(np.ascontiguousarray(item[1]))
    return {
        "frames": frames,
        "label": torch.from_numpy(np.ascontiguousarray(sample["label"])),
        "flows": flows,
        "flow_valid": valid,
        "pl_valid": torch.from_numpy(np.ascontiguousarray(sample["pl_valid"])),
    }


def _flip(out: dict[str, Any]) -> dict[str, Any]:
    """Mirror every map horizontally; flow u changes sign in a mirrored image."""
    for key in ("frames", "label", "flows", "flow_valid", "pl_valid"):
        out[key] = out[key].flip(-1)
    out["flows"][:, 0] *= -1
    return out


def photometric_jitter(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Brightness, contrast, saturation and hue jitter (each with p = 0.5), one draw for all frames.

    Ranges as mmseg's ``PhotoMetricDistortion``: brightness ±32, contrast and saturation ×0.5–1.5,
    hue ±18 (OpenCV hue units of 2°).
    """
    brightness = rng.uniform(-32, 32) if rng.random() < 0.5 else 0.0
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    hue = int(rng.integers(-18, 19)) if rng.random() < 0.5 else 0
    out = []
    for frame in frames:
        x = frame.astype(np.float32) * contrast + brightness
        x = np.clip(x, 0, 255).astype(np.uint8)
        if saturation != 1.0 or hue:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + hue) % 180
            hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        out.append(x)
    return out
