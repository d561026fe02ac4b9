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

from vidda.data.classes import IGNORE_INDEX
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
            flows float32 [T, 2, H, W] (0 where absent); flow_valid bool [T, H, W];
            has_flow bool [T]; pl_valid bool [H, W] (pixels allowed to carry pseudo-labels);
            name str; orig_size int64 [2] (native H, W); flip bool.
        """
        h0, w0 = clip.frames[-1].shape[:2]
        arrays = _Arrays.from_clip(clip, self.pl_margins)
        scale = self._draw_scale(h0, w0, rng)
        if scale != 1.0:
            arrays = arrays.resize(round_size(w0, scale), round_size(h0, scale), self.scale_flow)
        if self.crop_size is not None:
            if rng is None:
                raise ValueError("a random crop needs an rng; test transforms take no crop_size")
            arrays = arrays.crop(*self._draw_crop(arrays.label, rng)).pad(*self.crop_size)
        flip = rng is not None and self.flip_prob > 0 and rng.random() < self.flip_prob
        if flip:
            arrays = arrays.flip()
        if self.photometric and rng is not None:
            arrays.frames = photometric_jitter(arrays.frames, rng)
        sample = arrays.to_tensors()
        sample.update(name=clip.name, orig_size=torch.tensor([h0, w0]), flip=flip)
        return sample

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


@dataclass
class _Arrays:
    """The numpy arrays of a clip while it is being transformed (see ``RawClip``)."""

    frames: list[np.ndarray]
    label: np.ndarray
    pl_valid: np.ndarray
    flows: list[np.ndarray | None]
    flow_valid: list[np.ndarray | None]

    @classmethod
    def from_clip(cls, clip: RawClip, margins: tuple[int, int, int, int] | None) -> _Arrays:
        h, w = clip.frames[-1].shape[:2]
        label = clip.label if clip.label is not None else np.full((h, w), IGNORE_INDEX, np.uint8)
        pl_valid = np.ones((h, w), bool)
        if margins is not None:  # applied at native size, before any resize or crop
            top, bottom, left, right = margins
            pl_valid[:top] = False
            pl_valid[h - bottom :] = False
            pl_valid[:, :left] = False
            pl_valid[:, w - right :] = False
        return cls(list(clip.frames), label, pl_valid, list(clip.flows), list(clip.flow_valid))

    def _map(self, image_fn, mask_fn, flow_fn) -> _Arrays:
        flows, valid = [], []
        for flow, ok in zip(self.flows, self.flow_valid, strict=True):
            if flow is None:
                flows.append(None)
                valid.append(None)
            else:
                f, v = flow_fn(flow, ok)
                flows.append(f)
                valid.append(v)
        return _Arrays(
            [image_fn(f) for f in self.frames], mask_fn(self.label), mask_fn(self.pl_valid),
            flows, valid,
        )  # fmt: skip

    def resize(self, w: int, h: int, scale_flow: bool) -> _Arrays:
        h0, w0 = self.label.shape
        factors = np.array([w / w0, h / h0], np.float32) if scale_flow else np.ones(2, np.float32)

        def nearest(a: np.ndarray) -> np.ndarray:
            out = cv2.resize(a.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            return out.view(a.dtype)

        def flow_fn(flow: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Normalised bilinear resize: invalid vectors (stored as 0) must not pull valid
            # neighbours towards zero motion.
            weight = ok.astype(np.float32)
            num = cv2.resize(flow * weight[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
            den = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
            out = num / np.maximum(den, 1e-6)[..., None] * factors
            valid = nearest(ok) & (den > 0)
            out[~valid] = 0.0
            return out.astype(np.float32), valid

        return self._map(
            lambda im: cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR), nearest, flow_fn
        )

    def crop(self, y: int, x: int, h: int, w: int) -> _Arrays:
        def cut(a: np.ndarray) -> np.ndarray:
            return a[y : y + h, x : x + w]

        return self._map(cut, cut, lambda f, v: (cut(f), cut(v)))

    def pad(self, h: int, w: int) -> _Arrays:
        ph, pw = max(h - self.label.shape[0], 0), max(w - self.label.shape[1], 0)
        if not ph and not pw:
            return self

        def pad_with(value: Any):
            def fn(a: np.ndarray) -> np.ndarray:
                widths = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
                return np.pad(a, widths, constant_values=value)

            return fn

        zero, false = pad_with(0), pad_with(False)
        out = self._map(zero, false, lambda f, v: (zero(f), false(v)))
        out.label = pad_with(IGNORE_INDEX)(self.label)
        return out

    def flip(self) -> _Arrays:
        def mirror(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a[:, ::-1])

        def flow_fn(flow: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = mirror(flow)
            out[..., 0] *= -1  # u points the other way in a mirrored image
            return out, mirror(ok)

        return self._map(mirror, mirror, flow_fn)

    def to_tensors(self) -> dict[str, Any]:
        h, w = self.label.shape
        t = len(self.frames)
        frames = torch.from_numpy(np.ascontiguousarray(np.stack(self.frames))).permute(0, 3, 1, 2)
        flows = torch.zeros((t, 2, h, w), dtype=torch.float32)
        valid = torch.zeros((t, h, w), dtype=torch.bool)
        for i, (flow, ok) in enumerate(zip(self.flows, self.flow_valid, strict=True)):
            if flow is not None:
                flows[i] = torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)
                valid[i] = torch.from_numpy(np.ascontiguousarray(ok))
        return {
            "frames": frames.contiguous(),
            "label": torch.from_numpy(np.ascontiguousarray(self.label)),
            "flows": flows,
            "flow_valid": valid,
            "has_flow": torch.tensor([f is not None for f in self.flows]),
            "pl_valid": torch.from_numpy(np.ascontiguousarray(self.pl_valid)),
        }


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
