"""MIC block masking, as in the original MIC code.

A grid ``B × 1 × round(H/block) × round(W/block)`` of U(0, 1) draws; a cell is **kept where
u > ratio** (about 30 % for ratio 0.7); the grid is nearest-upsampled to ``H × W`` and multiplies
the *normalised* image, so a masked pixel becomes 0 = the ImageNet mean colour. Each image gets its
own mask. The colour augmentation in front of it is :func:`vidda.uda.augment.strong_augment` with
``blur=True`` always (MIC's blur is eligible even when DACS's ``blur`` flag is off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidda.models.segmentors.inputs import Pair
from vidda.uda.augment import StrongAugParams, strong_augment

__all__ = ["MaskedConsistency", "block_mask", "mask_images"]


@torch.no_grad()
def block_mask(
    shape: tuple[int, int, int],
    block: int = 64,
    ratio: float = 0.7,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random block mask, float32 ``[B, 1, H, W]`` of 0/1 (1 = pixel kept).

    Args:
        shape: ``(B, H, W)``.
        block: cell size in pixels (64 for HRDA 1024² crops, 32 for DAFormer at half resolution).
            The grid has ``round(H/block) × round(W/block)`` cells (Python rounding, at least 1).
        ratio: masking ratio; a cell is kept where its draw is ``> ratio``.
        generator: source of the draws; they are made on the generator's device (a CPU generator
            for CUDA images is fine) and moved to ``device``. ``None`` = torch's global RNG.
        device: device of the result (default: the generator's device, else CPU).
    """
    b, h, w = shape
    grid = (b, 1, max(1, round(h / block)), max(1, round(w / block)))
    draw_device = generator.device if generator is not None else device
    u = torch.rand(grid, generator=generator, device=draw_device)
    keep = (u > ratio).float()
    keep = F.interpolate(keep, size=(h, w), mode="nearest")
    return keep if device is None else keep.to(device)


def mask_images(images_norm: Tensor, mask: Tensor) -> Tensor:
    """Multiply normalised images by a block mask.

    Args:
        images_norm: ``[B, 3, H, W]`` (or clips ``[B, T, 3, H, W]``, one mask per clip).
        mask: ``[B, 1, H, W]`` from :func:`block_mask`.
    Returns:
        images of the input shape with masked pixels exactly 0.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [B, 1, H, W], got shape {tuple(mask.shape)}")
    m = mask.to(device=images_norm.device, dtype=images_norm.dtype)
    if images_norm.ndim == 5:
        m = m[:, None]
    return images_norm * m


class MaskedConsistency:
    """MIC's masked target: colour-augmented, block-masked frames (both frames of a pair alike).

    Args:
        block_size, mask_ratio: of :func:`block_mask`.
        weight: the MIC loss weight.
        aug: the colour augmentation in front of the mask (blur always eligible).
    """

    def __init__(self, block_size: int, mask_ratio: float, weight: float, aug: StrongAugParams):
        self.block_size, self.mask_ratio, self.weight = block_size, mask_ratio, weight
        self.aug = StrongAugParams(aug.color_jitter_p, aug.color_jitter_s, blur=True)

    def __call__(self, inputs: Pair, generator: torch.Generator) -> Pair:
        """Masked copy of prepared target inputs (frames ``[B, 3, H, W]``); flows unchanged."""
        frames = inputs.x if inputs.prev is None else torch.stack((inputs.x, inputs.prev), dim=1)
        frames = strong_augment(frames, self.aug, generator)
        x = inputs.x
        m = block_mask(x.shape[:1] + x.shape[2:], self.block_size, self.mask_ratio,
                       generator).to(x.device)  # fmt: skip
        masked = mask_images(frames, m)
        if inputs.prev is None:
            return Pair(masked)
        return Pair(masked[:, 0], masked[:, 1], inputs.flow, inputs.valid)
