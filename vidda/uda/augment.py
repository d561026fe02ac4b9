"""Strong photometric augmentation of DACS/MIC with the semantics of kornia 0.5.8 (the version
the original pinned), written directly in torch (current kornia behaves differently).

**Colour jitter** — applied when a gate ``u ~ U(0, 1)`` exceeds ``color_jitter_p`` (so with
probability 0.8 for p = 0.2), on the de-normalised ``[0, 1]`` image, strength ``s``:

* per-sample factors ``b, c, sat ~ U(1 − s, 1 + s)`` and ``h ~ U(−s, s)``;
* the four operations in one random permutation per call;
* brightness **additive** ``clamp(x + (b − 1), 0, 1)``; contrast **multiplicative**
  ``clamp(x · c, 0, 1)`` (no mean centring); saturation ``S ← clamp(S · sat, 0, 1)`` in HSV;
  hue ``H ← fmod(H + 2π·h, 2π)`` in HSV, wrapped into ``[0, 2π)`` by the HSV→RGB conversion;
* RGB↔HSV with ``S = (max − min) / (max + 1e-6)`` and H in radians.

**Gaussian blur** — applied when a second gate ``u > 0.5`` (and ``blur`` is on), one
``σ ~ U(0.15, 1.15)`` per call, odd kernel size per axis
``k = floor(ceil(0.1·L) − 0.5 + ceil(0.1·L) mod 2)`` (L = 1024 → 103, 512 → 51), a sampled
Gaussian normalised to sum 1, applied separably (two 1-D depthwise convolutions) with **reflect**
padding (mirror without repeating the edge: numpy ``'reflect'`` = OpenCV ``BORDER_REFLECT_101``).
Blur is linear with unit gain, so it runs directly on the normalised image.

Randomness: every draw comes from the ``torch.Generator`` passed in, on the generator's device
(a CPU generator works for CUDA images), in a fixed order: the two gates, then — per call — the
jitter factors (brightness, contrast, saturation, hue), the permutation, then σ.

Calls: :func:`strong_augment` on a batch behaves like MIC (one call: shared gates, per-sample
factors, one permutation, one σ). ``per_image=True`` behaves like DACS, which calls the transform
once per mixed image: shared gates, but factors, permutation and σ per image. Clips
``[B, T, 3, H, W]`` get **one** draw per clip shared by all its frames (consistent augmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vidda.models.normalize import denormalize, renormalize

__all__ = [
    "BLUR_SIGMA_RANGE",
    "HSV_EPS",
    "JitterDraw",
    "StrongAugParams",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "blur_kernel_size",
    "color_jitter",
    "draw_jitter",
    "draw_sigma",
    "gaussian_blur",
    "gaussian_kernel1d",
    "hsv_to_rgb",
    "rgb_to_hsv",
    "strong_augment",
]

HSV_EPS = 1e-6
BLUR_SIGMA_RANGE = (0.15, 1.15)
TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class StrongAugParams:
    """Configuration of :func:`strong_augment` (DACS defaults).

    Attributes:
        color_jitter_p: the jitter runs when its gate ``u > color_jitter_p`` (0.2 → 80 %).
        color_jitter_s: jitter strength ``s`` in ``[0, 0.5]``; 0 = identity.
        blur: whether the blur may run (it then runs when its gate ``u > 0.5``). MIC uses True
            regardless of the DACS setting.
    """

    color_jitter_p: float = 0.2
    color_jitter_s: float = 0.2
    blur: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.color_jitter_s <= 0.5:
            raise ValueError(f"color_jitter_s must be in [0, 0.5], got {self.color_jitter_s}")


@dataclass(frozen=True)
class JitterDraw:
    """Colour-jitter parameters of one call: per-sample factors ``[N]`` and the op order.

    ``order`` lists op indices 0 = brightness, 1 = contrast, 2 = saturation, 3 = hue.
    ``hue`` is in turns (``[−s, s]``); it is multiplied by 2π when applied.
    """

    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: tuple[int, ...]

    def repeat_frames(self, t: int) -> JitterDraw:
        """Each sample's factors repeated for its ``t`` frames (``[N] → [N·t]``, clip-major)."""
        factors = (self.brightness, self.contrast, self.saturation, self.hue)
        return JitterDraw(*(f.repeat_interleave(t) for f in factors), order=self.order)


# ----------------------------------------------------------------------------- draws


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """``[n]`` float32 draws from U(low, high) on the generator's device (CPU if None)."""
    device = generator.device if generator is not None else None
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def draw_jitter(n: int, strength: float, generator: torch.Generator | None = None) -> JitterDraw:
    """Draw the jitter factors of ``n`` samples and one permutation of the four ops."""
    s = float(strength)
    b = _uniform(n, 1.0 - s, 1.0 + s, generator)
    c = _uniform(n, 1.0 - s, 1.0 + s, generator)
    sat = _uniform(n, 1.0 - s, 1.0 + s, generator)
    hue = _uniform(n, -s, s, generator)
    device = generator.device if generator is not None else None
    order = tuple(torch.randperm(4, generator=generator, device=device).tolist())
    return JitterDraw(b, c, sat, hue, order)


def draw_sigma(generator: torch.Generator | None = None) -> float:
    """One blur σ ~ U(0.15, 1.15)."""
    return float(_uniform(1, *BLUR_SIGMA_RANGE, generator)[0])


# ----------------------------------------------------------------------------- colour space


def rgb_to_hsv(rgb: Tensor, eps: float = HSV_EPS) -> Tensor:
    """``[..., 3, H, W]`` RGB in [0, 1] → HSV with H in radians ``[0, 2π)``, S, V in [0, 1].

    S = (max − min) / (max + eps); H from the channel holding the maximum (R before G before B on
    ties), 0 for grey pixels.
    """
    r, g, b = rgb.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    sat = delta / (maxc + eps)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    # Hue sector offsets (in sixths of a turn) measured from the maximum's channel.
    h_r = (g - b) / safe
    h_g = 2.0 + (b - r) / safe
    h_b = 4.0 + (r - g) / safe
    hue = torch.where(maxc == r, h_r, torch.where(maxc == g, h_g, h_b))
    hue = torch.remainder(hue / 6.0, 1.0) * TWO_PI
    return torch.stack((hue, sat, maxc), dim=-3)


# (R, G, B) as picks from (v, q, p, t) for each of the six hue sectors.
_SECTOR_PICKS = ((0, 3, 2), (1, 0, 2), (2, 0, 3), (2, 1, 0), (3, 2, 0), (0, 2, 1))


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`: ``[..., 3, H, W]`` (H in radians, any real value — it is
    wrapped with a positive modulo) → RGB."""
    hue, sat, val = hsv.unbind(-3)
    h6 = hue * (3.0 / math.pi)  # sixths of a turn
    sector = torch.floor(h6)
    f = h6 - sector
    sector = torch.remainder(sector, 6).long()
    p = val * (1.0 - sat)
    q = val * (1.0 - f * sat)
    t = val * (1.0 - (1.0 - f) * sat)
    candidates = torch.stack((val, q, p, t), dim=-3)  # [..., 4, H, W]
    picks = torch.tensor(_SECTOR_PICKS, device=hsv.device)  # [6, 3]
    index = picks[sector].movedim(-1, -3)  # [..., 3, H, W]
    return torch.gather(candidates, -3, index)


# ----------------------------------------------------------------------------- jitter ops


def _per_sample(f: Tensor, x: Tensor) -> Tensor:
    """Factors ``[N]`` → ``[N, 1, 1, 1]`` on ``x``'s device and dtype."""
    return f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(x + (factor − 1), 0, 1)``; x ``[N, 3, H, W]`` in [0, 1], factor ``[N]``."""
    return (x + (_per_sample(factor, x) - 1.0)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(x · factor, 0, 1)`` (kornia 0.5.8: no mean centring); x ``[N, 3, H, W]``."""
    return (x * _per_sample(factor, x)).clamp(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """S ← clamp(S · factor, 0, 1) in HSV; x ``[N, 3, H, W]``, factor ``[N]``."""
    hue, sat, val = rgb_to_hsv(x).unbind(-3)
    sat = (sat * _per_sample(factor, x)[:, 0]).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack((hue, sat, val), dim=-3))


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """H ← fmod(H + 2π·factor, 2π) in HSV (factor in turns, ``[N]``); x ``[N, 3, H, W]``."""
    hue, sat, val = rgb_to_hsv(x).unbind(-3)
    hue = torch.fmod(hue + TWO_PI * _per_sample(factor, x)[:, 0], TWO_PI)
    return hsv_to_rgb(torch.stack((hue, sat, val), dim=-3))


def color_jitter(x01: Tensor, draw: JitterDraw) -> Tensor:
    """Apply the four jitter ops in ``draw.order`` to ``[N, 3, H, W]`` images in [0, 1]."""
    ops = (
        lambda x: adjust_brightness(x, draw.brightness),
        lambda x: adjust_contrast(x, draw.contrast),
        lambda x: adjust_saturation(x, draw.saturation),
        lambda x: adjust_hue(x, draw.hue),
    )
    for i in draw.order:
        x01 = ops[i](x01)
    return x01


# ----------------------------------------------------------------------------- blur


def blur_kernel_size(length: int) -> int:
    """DACS's odd kernel size for a side of ``length`` pixels (≈ 10 %): 1024 → 103, 512 → 51.

    Evaluated like the original, ``ceil(0.1 * L)`` in float64 (exact for every L that is a
    multiple of 10 below 100 000).
    """
    c = math.ceil(0.1 * length)
    return int(math.floor(c - 0.5 + c % 2))


def gaussian_kernel1d(size: int, sigma: float, dtype=torch.float32, device=None) -> Tensor:
    """``[size]`` sampled Gaussian ``exp(−x²/2σ²)`` centred on the middle tap, summing to 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0  # on CPU: float64 everywhere
    k = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (k / k.sum()).to(device=device, dtype=dtype)


def _blur_axis(x: Tensor, kernel: Tensor, axis: int) -> Tensor:
    """Depthwise 1-D convolution of ``[N, C, H, W]`` along H (axis=2) or W (axis=3), reflect pad."""
    k = kernel.numel()
    if k == 1:
        return x
    pad = (k - 1) // 2
    channels = x.shape[1]
    if axis == 2:
        x = F.pad(x, (0, 0, pad, pad), mode="reflect")
        weight = kernel.view(1, 1, k, 1)
    else:
        x = F.pad(x, (pad, pad, 0, 0), mode="reflect")
        weight = kernel.view(1, 1, 1, k)
    weight = weight.to(x.dtype).expand(channels, 1, *weight.shape[2:])
    return F.conv2d(x, weight, groups=channels)


def gaussian_blur(x: Tensor, sigma: float, kernel_size: tuple[int, int] | None = None) -> Tensor:
    """Separable Gaussian blur with reflect padding.

    Args:
        x: ``[N, C, H, W]`` float.
        sigma: σ in pixels (both axes).
        kernel_size: odd ``(k_y, k_x)``; default :func:`blur_kernel_size` of H and W. Reflect
            padding needs ``(k − 1)/2 < side``, which the default (≈ 10 % of the side) satisfies.
    Returns:
        ``[N, C, H, W]``.
    """
    h, w = x.shape[-2:]
    ky, kx = kernel_size or (blur_kernel_size(h), blur_kernel_size(w))
    if ky % 2 == 0 or kx % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {(ky, kx)}")
    if (ky - 1) // 2 >= h or (kx - 1) // 2 >= w:
        raise ValueError(f"kernel {(ky, kx)} too large for reflect padding of a {h}×{w} image")
    x = _blur_axis(x, gaussian_kernel1d(ky, sigma, x.dtype, x.device), axis=2)
    return _blur_axis(x, gaussian_kernel1d(kx, sigma, x.dtype, x.device), axis=3)


# ----------------------------------------------------------------------------- entry point


def _augment_call(
    x: Tensor, params: StrongAugParams, jitter: bool, blur: bool, generator
) -> Tensor:
    """One transform call on normalised clips ``[N, T, 3, H, W]`` with fresh factors/σ."""
    n, t = x.shape[:2]
    flat = x.reshape(n * t, *x.shape[2:])
    if jitter:
        draw = draw_jitter(n, params.color_jitter_s, generator).repeat_frames(t)
        if params.color_jitter_s > 0:
            dtype = flat.dtype
            x01 = denormalize(flat.float())
            flat = renormalize(color_jitter(x01, draw)).to(dtype)
    if blur:
        flat = gaussian_blur(flat, draw_sigma(generator))
    return flat.reshape(x.shape)


def strong_augment(
    images_norm: Tensor,
    params: StrongAugParams | None = None,
    generator: torch.Generator | None = None,
    *,
    per_image: bool = False,
) -> Tensor:
    """Colour jitter then Gaussian blur of normalised images (see the module docstring).

    Args:
        images_norm: ``[B, 3, H, W]`` or clips ``[B, T, 3, H, W]``, ImageNet-normalised float.
        params: :class:`StrongAugParams` (defaults: p = 0.2, s = 0.2, blur on).
        generator: ``torch.Generator`` for every draw (CPU is fine for CUDA images); ``None`` falls
            back to torch's global RNG.
        per_image: DACS behaviour — gates shared, factors/permutation/σ drawn per batch element.
            Otherwise (MIC) one permutation and one σ for the batch.
    Returns:
        augmented normalised images, same shape and dtype. The input is not modified.
    """
    params = params or StrongAugParams()
    clip = images_norm.ndim == 5
    if not clip and images_norm.ndim != 4:
        shape = tuple(images_norm.shape)
        raise ValueError(f"expected [B, 3, H, W] or [B, T, 3, H, W], got {shape}")
    x = images_norm if clip else images_norm.unsqueeze(1)
    gates = _uniform(2, 0.0, 1.0, generator)
    jitter = bool(gates[0] > params.color_jitter_p)
    blur = params.blur and bool(gates[1] > 0.5)
    if not (jitter or blur):
        return images_norm.clone()
    if per_image:
        out = torch.cat([_augment_call(xi[None], params, jitter, blur, generator) for xi in x])
    else:
        out = _augment_call(x, params, jitter, blur, generator)
    return out if clip else out[:, 0]
