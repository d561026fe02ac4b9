"""ClassMix masks and mixing (DACS), also of frame pairs and flows (consistent mixup).

* The candidate classes are the unique values of the **whole source label batch**, 255 included
  (a DACS quirk kept on purpose). For every batch element ``i`` draw ``ceil(n/2)`` of the ``n``
  candidates without replacement (``np.random.Generator.choice``) and paste the pixels of source
  image ``i`` whose label is one of them: ``mask_i = isin(source_label_i, drawn_i)``.
* :func:`mix` takes source where the mask is 1 and target elsewhere, for images ``[B, C, H, W]``,
  labels/weights ``[B, H, W]`` and clips ``[B, T, C, H, W]`` / ``[B, T, H, W]``: one mask is shared
  by every frame of a clip ("consistent mixup"); flows and their validity masks are mixed with the
  same mask (:func:`mix_flows`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["class_mix_masks", "draw_mix_classes", "masks_from_classes", "mix", "mix_flows"]


def draw_mix_classes(source_labels: Tensor, rng: np.random.Generator) -> list[Tensor]:
    """For each batch element, the source classes to paste.

    Args:
        source_labels: ``[B, H, W]`` integer source labels (255 = ignore, a candidate like any
            other value).
        rng: numpy generator; ``B`` calls of ``rng.choice(classes, ceil(n/2), replace=False)``.
    Returns:
        ``B`` int64 tensors of ``ceil(n/2)`` class ids each, on ``source_labels``' device.

    Reads the unique classes back to the host (one sync per call, as in the original).
    """
    if source_labels.ndim != 3:
        raise ValueError(f"source_labels must be [B, H, W], got shape {tuple(source_labels.shape)}")
    classes = torch.unique(source_labels).cpu().numpy()
    n = len(classes)
    k = (n + n % 2) // 2
    return [
        torch.as_tensor(rng.choice(classes, k, replace=False), device=source_labels.device).long()
        for _ in range(source_labels.shape[0])
    ]


def masks_from_classes(source_labels: Tensor, drawn: list[Tensor]) -> Tensor:
    """Bool ``[B, H, W]``: True where ``source_labels[i]`` is in ``drawn[i]``."""
    if len(drawn) != source_labels.shape[0]:
        raise ValueError(f"{len(drawn)} class sets for a batch of {source_labels.shape[0]}")
    pairs = zip(source_labels, drawn, strict=True)
    return torch.stack([torch.isin(lab.long(), cls) for lab, cls in pairs])


def class_mix_masks(source_labels: Tensor, rng: np.random.Generator) -> Tensor:
    """ClassMix masks: source labels ``[B, H, W]`` → bool ``[B, H, W]`` (True = source pixel)."""
    return masks_from_classes(source_labels, draw_mix_classes(source_labels, rng))


def _expand_mask(mask: Tensor, ndim: int) -> Tensor:
    """``[B, H, W]`` mask viewed so that it broadcasts over a tensor with ``ndim`` axes.

    3 axes ``[B, H, W]`` → as is; 4 axes ``[B, C, H, W]`` or ``[B, T, H, W]`` → ``[B, 1, H, W]``;
    5 axes ``[B, T, C, H, W]`` → ``[B, 1, 1, H, W]``.
    """
    if ndim not in (3, 4, 5):
        raise ValueError(f"can mix tensors with 3, 4 or 5 axes, got {ndim}")
    return mask.reshape(mask.shape[:1] + (1,) * (ndim - 3) + mask.shape[1:])


def mix(mask: Tensor, source: Tensor | float, target: Tensor | float) -> Tensor:
    """``source`` where ``mask`` else ``target``; the same mask for every channel and frame.

    Args:
        mask: ``[B, H, W]`` bool or 0/1 (a ``[B, 1, H, W]`` mask is accepted too).
        source, target: tensors of one of the shapes ``[B, H, W]``, ``[B, C, H, W]``,
            ``[B, T, H, W]`` or ``[B, T, C, H, W]`` (same shape, any dtype incl. bool and int64),
            or a Python number for one of the two (e.g. ``mix(mask, 1.0, weight)``).
    Returns:
        the mixed tensor, shape and dtype of the tensor argument(s).
    """
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"mask must be [B, H, W], got shape {tuple(mask.shape)}")
    like = source if isinstance(source, Tensor) else target
    if not isinstance(like, Tensor):
        raise TypeError("at least one of source and target must be a tensor")
    if isinstance(source, Tensor) and isinstance(target, Tensor) and source.shape != target.shape:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} differ")
    if like.shape[0] != mask.shape[0] or like.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit tensor {tuple(like.shape)}")
    m = _expand_mask(mask.to(device=like.device, dtype=torch.bool), like.ndim)
    return torch.where(m, source, target)


def mix_flows(
    mask: Tensor, source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """Mix backward flows and their validity with one mask (ACCEL's consistent mixup).

    Args:
        mask: ``[B, H, W]``.
        source, target: ``(flow, valid)`` pairs, flow ``[B, 2, H, W]`` or ``[B, T, 2, H, W]`` (u, v
            in pixels) and valid ``[B, H, W]`` or ``[B, T, H, W]`` bool.
    Returns:
        the mixed ``(flow, valid)``: the source's vector and validity where the mask is 1.
    """
    return mix(mask, source[0], target[0]), mix(mask, source[1], target[1])
