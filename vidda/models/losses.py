"""The segmentation loss with the original's exact reduction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidda.classes import IGNORE_INDEX


def seg_loss(
    logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Pixel-weighted cross-entropy, averaged over **all** B·H·W pixels (ignored ones count as 0).

    This is mmseg's reduction, which the published numbers depend on: the loss is not divided by
    the number of valid pixels nor by the sum of weights.

    Args:
        logits: [B, K, h, w]; bilinearly resized to the label size first.
        label: [B, H, W] trainIds (any integer dtype), 255 = ignore.
        weight: None, a scalar or a [B, H, W] per-pixel weight.
    Returns:
        scalar loss.
    """
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, label.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits, label.long(), reduction="none", ignore_index=IGNORE_INDEX)
    if weight is not None:
        loss = loss * weight
    return loss.mean()
