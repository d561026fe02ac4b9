"""ImageNet normalisation: the statistics every segmentor normalises its inputs with.

Images travel through the model as float tensors ``(x - MEAN) / STD`` on the 0–255 scale, RGB,
channel axis at ``-3`` (``[B, 3, H, W]`` or clips ``[B, T, 3, H, W]``). Segmentors hold the
statistics as buffers (:meth:`vidda.models.segmentors.base.Segmentor.preprocess`). The
photometric augmentations work on ``[0, 1]`` images: :func:`denormalize` goes there,
:func:`renormalize` back.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MEAN", "STD", "check_channels", "denormalize", "normalize", "renormalize"]

MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


def _stat(values: tuple[float, float, float], like: Tensor) -> Tensor:
    """``values`` as a ``[3, 1, 1]`` tensor on ``like``'s device, float dtype of ``like``."""
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return torch.tensor(values, dtype=dtype, device=like.device).view(3, 1, 1)


def check_channels(x: Tensor) -> None:
    """Raise ValueError unless ``x`` is ``[..., 3, H, W]``."""
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected RGB images [..., 3, H, W], got shape {tuple(x.shape)}")


def normalize(images: Tensor) -> Tensor:
    """0–255 images (uint8 or float) ``[..., 3, H, W]`` → normalised float32 (or input float dtype).

    ``[B, 3, H, W]`` and clips ``[B, T, 3, H, W]`` alike: ``(x - MEAN) / STD`` per channel.
    """
    check_channels(images)
    x = images if images.is_floating_point() else images.float()
    return (x - _stat(MEAN, x)) / _stat(STD, x)


def denormalize(x: Tensor) -> Tensor:
    """Normalised images ``[..., 3, H, W]`` → ``(x·STD + MEAN) / 255`` (≈ [0, 1], not clamped)."""
    check_channels(x)
    return (x * _stat(STD, x) + _stat(MEAN, x)) / 255.0


def renormalize(x01: Tensor) -> Tensor:
    """Inverse of :func:`denormalize`: ``[0, 1]`` images ``[..., 3, H, W]`` → normalised."""
    check_channels(x01)
    return (x01 * 255.0 - _stat(MEAN, x01)) / _stat(STD, x01)
