"""Bilinear resizing of images and logits, shared by the segmentors and the feature distance."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["rescale", "resize"]


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``x`` ``[B, C, H, W]`` to ``size`` (H, W), align_corners=False, up or
    down; no-op when the size is already ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


def rescale(x: Tensor, scale: float) -> Tensor:
    """``x`` ``[B, C, H, W]`` resized by ``scale``: output ``int(H·scale + 0.5)`` ×
    ``int(W·scale + 0.5)`` (rounded half up, as mmseg's resize); no-op at scale 1.

    HRDA's context image and the feature distance's ImageNet input are made with this one rule,
    so that their features agree in size for odd image sizes too.
    """
    if scale == 1.0:
        return x
    return resize(x, (int(x.shape[-2] * scale + 0.5), int(x.shape[-1] * scale + 0.5)))
