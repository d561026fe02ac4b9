"""Backward warping of maps with optical flow, and the original's integer warp (``backpropFlow``).

Convention (``ARCHITECTURE.md``, "Core conventions"): a flow ``f_t`` is a **backward** flow
``[B, 2, H, W]`` holding ``(u, v)`` in pixels of the tensor it travels with, defined on the grid of
the later frame t and pointing into the earlier frame t−k: the point of frame t−k seen at pixel
``p`` of frame t is ``p + f_t(p)``. Warping a map ``X`` that lives on frame t−k onto frame t's grid
therefore samples ``X`` at ``p + f_t(p)``.

Two operators:

* :func:`backward_warp` (default, "fixed"): ``grid_sample`` (bilinear for probabilities/logits,
  nearest for labels) with an explicit validity mask: the sample point must lie inside the image,
  the flow must be valid there and, optionally, pass a forward–backward consistency check. Zero flow
  is ordinary zero motion.
* :func:`original_warp` (config switch ``compat.original_warp``): the original ``backpropFlow``
  with every heuristic — bottom limit, zeroing of out-of-range vectors, floor (truncation)
  sampling, the misplaced duplicate mask, zero-flow invalidation and the 255 marker in every
  channel — vectorised over the batch.

Pixel coordinates: pixel ``(y, x)`` has its centre at integer ``(y, x)``; the image spans the
pixel centres ``[0, W−1] × [0, H−1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidda.classes import IGNORE_INDEX

__all__ = [
    "BORDER_TOLERANCE",
    "FB_ALPHA",
    "FB_BETA",
    "backward_warp",
    "forward_backward_consistent",
    "original_bottom_limit",
    "original_warp",
    "sample_points",
    "warp_labels",
    "warp_probs",
]

BORDER_TOLERANCE = 1e-3
"""Slack (pixels) of the inside-the-image rule, absorbing float round-off of ``p + f(p)``."""

FB_ALPHA = 0.01
FB_BETA = 0.5
"""Sundaram et al. (ECCV 2010) forward–backward constants: consistent iff
``|f + f'|² < α (|f|² + |f'|²) + β`` (squared pixel lengths)."""


def _check_flow(flow: Tensor, b: int, h: int, w: int, name: str = "flow") -> None:
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"{name} must be [B, 2, H, W], got shape {tuple(flow.shape)}")
    if (flow.shape[0], flow.shape[2], flow.shape[3]) != (b, h, w):
        raise ValueError(
            f"{name} {tuple(flow.shape)} does not match the map's batch and size ({b}, {h}, {w})"
        )


def _check_mask(mask: Tensor | None, b: int, h: int, w: int, name: str) -> Tensor | None:
    if mask is None:
        return None
    if tuple(mask.shape) != (b, h, w):
        raise ValueError(f"{name} must be [B, H, W] = {(b, h, w)}, got {tuple(mask.shape)}")
    return mask.bool()


def sample_points(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Source coordinates ``p + f(p)``: flow ``[B, 2, H, W]`` → ``(xs, ys)``, each ``[B, H, W]``.

    Computed in float32 (float64 if the flow is float64); non-finite vectors give NaN coordinates.
    """
    dtype = torch.float64 if flow.dtype == torch.float64 else torch.float32
    flow = flow.to(dtype)
    h, w = flow.shape[-2:]
    xs = torch.arange(w, device=flow.device, dtype=dtype).view(1, 1, w) + flow[:, 0]
    ys = torch.arange(h, device=flow.device, dtype=dtype).view(1, h, 1) + flow[:, 1]
    return xs, ys


def _inside(xs: Tensor, ys: Tensor, h: int, w: int) -> Tensor:
    """Border rule: ``−tol ≤ xs ≤ W−1+tol`` and ``−tol ≤ ys ≤ H−1+tol`` (tol = BORDER_TOLERANCE).

    Only points within the hull of pixel centres are valid, so bilinear sampling never blends in
    padding and nearest sampling never extrapolates. NaN coordinates are outside.
    """
    tol = BORDER_TOLERANCE
    return (xs >= -tol) & (xs <= w - 1 + tol) & (ys >= -tol) & (ys <= h - 1 + tol)


def _grid(xs: Tensor, ys: Tensor, h: int, w: int) -> Tensor:
    """Pixel coordinates → ``grid_sample`` grid ``[B, H, W, 2]`` for ``align_corners=True``.

    ``x_n = 2 x / (W − 1) − 1`` (pixel centre 0 → −1, centre W−1 → +1); a size-1 axis maps to 0.
    Non-finite coordinates become 0 (their pixels are invalid anyway).
    """
    xn = xs * (2.0 / (w - 1)) - 1.0 if w > 1 else torch.zeros_like(xs)
    yn = ys * (2.0 / (h - 1)) - 1.0 if h > 1 else torch.zeros_like(ys)
    grid = torch.stack((xn, yn), dim=-1)
    return torch.nan_to_num(grid, nan=0.0, posinf=0.0, neginf=0.0)


def _sample(x: Tensor, grid: Tensor, mode: str) -> Tensor:
    """``grid_sample`` of ``x`` ``[B, C, H', W']`` at ``grid`` (half precision runs in float32)."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = F.grid_sample(
        work, grid.to(work.dtype), mode=mode, padding_mode="border", align_corners=True
    )
    return out


def forward_backward_consistent(
    flow: Tensor,
    fb_flow: Tensor,
    *,
    fb_valid: Tensor | None = None,
    fb_threshold: tuple[float, float] = (FB_ALPHA, FB_BETA),
) -> Tensor:
    """Forward–backward consistency of a backward flow (occlusion / disocclusion test).

    Args:
        flow: ``[B, 2, H, W]`` backward flow ``f_t`` on frame t's grid (points into frame t−k).
        fb_flow: ``[B, 2, H, W]`` the opposite flow ``f_{t−k→t}`` on frame t−k's grid (points
            into frame t).
        fb_valid: optional ``[B, H, W]`` validity of ``fb_flow``; the sample must only use valid
            neighbours.
        fb_threshold: ``(α, β)``; pixel ``p`` is consistent iff, with ``f = f_t(p)`` and
            ``f' = f_{t−k→t}(p + f)`` (bilinear), ``|f + f'|² < α (|f|² + |f'|²) + β``.
    Returns:
        bool ``[B, H, W]`` on frame t's grid. Points outside frame t−k are reported consistent
        here (the inside-the-image rule of :func:`backward_warp` handles them).
    """
    b, _, h, w = flow.shape
    _check_flow(fb_flow, b, h, w, "fb_flow")
    fb_valid = _check_mask(fb_valid, b, h, w, "fb_valid")
    alpha, beta = fb_threshold
    xs, ys = sample_points(flow)
    grid = _grid(xs, ys, h, w)
    f = flow.to(xs.dtype)
    back = _sample(fb_flow.to(xs.dtype), grid, "bilinear")
    err = (f + back).square().sum(dim=1)
    bound = alpha * (f.square().sum(dim=1) + back.square().sum(dim=1)) + beta
    ok = err < bound
    if fb_valid is not None:
        # all neighbours carrying non-zero bilinear weight must be valid
        ok &= _sample(fb_valid[:, None].to(xs.dtype), grid, "bilinear")[:, 0] > 1.0 - 1e-4
    return ok


def backward_warp(
    x: Tensor,
    flow: Tensor,
    mode: str = "bilinear",
    valid: Tensor | None = None,
    fb_flow: Tensor | None = None,
    fb_threshold: tuple[float, float] = (FB_ALPHA, FB_BETA),
    fb_valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Warp a map living on frame t−k onto frame t's grid (the fixed operator).

    Args:
        x: float ``[B, C, H, W]`` map on frame t−k.
        flow: ``[B, 2, H, W]`` backward flow ``f_t`` (u, v) in pixels on frame t's grid.
        mode: "bilinear" (probabilities, logits, images) or "nearest" (round to the nearest pixel
            centre; use :func:`warp_labels` for integer labels).
        valid: optional ``[B, H, W]`` validity of ``flow`` (e.g. the PNG mask); invalid → invalid.
        fb_flow: optional ``[B, 2, H, W]`` forward flow ``f_{t−k→t}`` on frame t−k's grid; when
            given, pixels failing :func:`forward_backward_consistent` (occlusions) are invalid.
        fb_threshold: ``(α, β)`` of that check (Sundaram et al.: 0.01, 0.5).
        fb_valid: optional ``[B, H, W]`` validity of ``fb_flow``.
    Returns:
        warped ``[B, C, H, W]`` (dtype of ``x``; 0 where invalid) and valid bool ``[B, H, W]``:
        ``p + f(p)`` inside the image (pixel-centre hull ± :data:`BORDER_TOLERANCE`), the flow
        finite and valid at ``p``, and (if ``fb_flow``) forward–backward consistent.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}; use warp_labels for labels")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    b, _, h, w = x.shape
    _check_flow(flow, b, h, w)
    valid = _check_mask(valid, b, h, w, "valid")
    xs, ys = sample_points(flow)
    ok = _inside(xs, ys, h, w)
    if valid is not None:
        ok &= valid
    if fb_flow is not None:
        ok &= forward_backward_consistent(
            flow, fb_flow, fb_valid=fb_valid, fb_threshold=fb_threshold
        )
    warped = _sample(x, _grid(xs, ys, h, w), mode)
    warped = warped.masked_fill(~ok[:, None], 0.0).to(x.dtype)
    return warped, ok


def warp_labels(
    labels: Tensor,
    flow: Tensor,
    valid: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    *,
    fb_flow: Tensor | None = None,
    fb_threshold: tuple[float, float] = (FB_ALPHA, FB_BETA),
    fb_valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour backward warp of integer labels.

    Args:
        labels: int ``[B, H, W]`` on frame t−k (ignore labels pass through unchanged).
        flow, valid: as in :func:`backward_warp`.
        ignore_index: written where the warp is invalid.
        fb_flow, fb_threshold, fb_valid: optional forward–backward check, as in
            :func:`backward_warp`.
    Returns:
        warped int64 ``[B, H, W]`` (``ignore_index`` where invalid) and valid bool ``[B, H, W]``.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be [B, H, W], got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    # float32 holds every label id exactly (< 2**24); nearest sampling copies values
    warped, ok = backward_warp(
        labels[:, None].float(), flow, "nearest", valid, fb_flow, fb_threshold, fb_valid
    )
    out = warped[:, 0].round().long().masked_fill(~ok, ignore_index)
    return out, ok


def warp_probs(
    probs: Tensor,
    flow: Tensor,
    valid: Tensor | None = None,
    *,
    fb_flow: Tensor | None = None,
    fb_threshold: tuple[float, float] = (FB_ALPHA, FB_BETA),
    fb_valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Bilinear backward warp of probabilities / logits ``[B, C, H, W]``; see :func:`backward_warp`.

    Returns warped ``[B, C, H, W]`` (0 where invalid) and valid bool ``[B, H, W]``.
    """
    return backward_warp(probs, flow, "bilinear", valid, fb_flow, fb_threshold, fb_valid)


# --------------------------------------------------------------------------- original (compat)


def original_bottom_limit(height: int) -> int:
    """The original's bottom limit ``Hlim``: 840 if ``height == 1024`` else ``int(height * 0.7)``.

    Evaluated in floating point like the original: 720 → 503 (720·0.7 = 503.99999999999994), 8 → 5.
    """
    return 840 if height == 1024 else int(height * 0.7)


def original_warp(
    x: Tensor, flow: Tensor, flow_valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The original ``backpropFlow`` (``compat.original_warp``), vectorised over the batch.

    Layout: channels first, like the rest of vidda (the original used ``[H, W, C]``).

    Steps, per image, with ``Hlim`` = :func:`original_bottom_limit` ``(H)``:

    1. ``ys = y + v``, ``xs = x + u``; zero the vector of every pixel with ``ys ≥ Hlim``,
       ``ys < 0``, ``xs ≥ W`` or ``xs < 0`` (it then points at itself).
    2. Recompute ``ys, xs`` and truncate them toward zero (= floor, all are ≥ 0): integer gather
       ``out(y, x) = X(⌊ys⌋, ⌊xs⌋)`` — no rounding, no interpolation.
    3. Duplicate quirk: every integer source location read by more than one output pixel marks
       the output pixel **located at** that location (not its readers) as 255.
    4. Every pixel whose (possibly zeroed) vector is exactly (0, 0) is 255 — static pixels,
       invalid flow, padding and everything that step 1 zeroed.
    5. valid = no channel equals 255 (so a genuine 255 in ``x`` also reads as invalid).

    Args:
        x: ``[B, C, H, W]`` map on frame t−k (any dtype; the warp only copies values).
        flow: ``[B, 2, H, W]`` backward flow (u, v) in pixels on frame t's grid.
        flow_valid: optional ``[B, H, W]``; invalid vectors are set to (0, 0) first, as the
            original loader did. Non-finite vectors are treated the same way.
    Returns:
        warped ``[B, C, H, W]`` (dtype of ``x``; 255 in every channel where invalid) and valid
        bool ``[B, H, W]``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    _check_flow(flow, b, h, w)
    flow_valid = _check_mask(flow_valid, b, h, w, "flow_valid")
    dtype = torch.float64 if flow.dtype == torch.float64 else torch.float32
    f = flow.to(dtype)
    bad = ~torch.isfinite(f).all(dim=1)
    if flow_valid is not None:
        bad |= ~flow_valid
    f = f.masked_fill(bad[:, None], 0.0)

    xs, ys = sample_points(f)
    out_of_range = (ys >= original_bottom_limit(h)) | (ys < 0) | (xs >= w) | (xs < 0)
    f = f.masked_fill(out_of_range[:, None], 0.0)
    xs, ys = sample_points(f)
    index = ys.long() * w + xs.long()  # truncation toward zero; every coordinate is >= 0 here

    flat = index.view(b, 1, h * w)
    out = x.reshape(b, c, h * w).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)
    counts = torch.zeros(b, h * w, device=x.device, dtype=torch.int32)
    counts.scatter_add_(1, flat[:, 0], torch.ones_like(flat[:, 0], dtype=torch.int32))
    duplicated = (counts > 1).view(b, h, w)  # indexed by *source* location, applied to output
    zero = (f == 0).all(dim=1)
    out = out.masked_fill((duplicated | zero)[:, None], IGNORE_INDEX)
    return out, (out != IGNORE_INDEX).all(dim=1)
