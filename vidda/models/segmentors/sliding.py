"""Sliding-window inference shared by the segmentors: windows batched, logits averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis, clamped to the border as mmseg does.

    ``n = max(size - crop + stride - 1, 0) // stride + 1`` windows; a window that would pass the
    far border is moved back so that it ends there.
    """
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(n)]


def slide(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    out_stride: int = 1,
) -> torch.Tensor:
    """Run ``fn`` on overlapping windows of ``x`` (all in one batch) and average the overlaps.

    Args:
        fn: maps windows [N, C, h, w] to logits [N, K, h / out_stride, w / out_stride].
        x: images [B, C, H, W].
        crop, stride: window size and step (H, W), in pixels of ``x``.
        out_stride: ratio between ``x`` and ``fn``'s output resolution.
    Returns:
        logits [B, K, H / out_stride, W / out_stride] (sum of window logits ÷ coverage count).
    """
    b, _, h, w = x.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    boxes = [
        (y, xx) for y in window_starts(h, ch, stride[0]) for xx in window_starts(w, cw, stride[1])
    ]
    windows = [x[:, :, y : y + ch, xx : xx + cw] for y, xx in boxes]
    outs = fn(torch.cat(windows, dim=0)).split(b, dim=0)  # every window of every image at once
    oh, ow, s = h // out_stride, w // out_stride, out_stride
    k = outs[0].shape[1]
    total = x.new_zeros((b, k, oh, ow), dtype=outs[0].dtype)
    count = x.new_zeros((1, 1, oh, ow), dtype=outs[0].dtype)
    for (y, xx), out in zip(boxes, outs, strict=True):
        if out.shape[-2:] != (ch // s, cw // s):
            out = F.interpolate(out, (ch // s, cw // s), mode="bilinear", align_corners=False)
        total[:, :, y // s : (y + ch) // s, xx // s : (xx + cw) // s] += out
        count[:, :, y // s : (y + ch) // s, xx // s : (xx + cw) // s] += 1
    return total / count
