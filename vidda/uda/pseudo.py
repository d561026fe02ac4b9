"""Teacher pseudo-labels and their quality weight (DACS).

* Label = argmax of the softmax of the (detached) teacher logits; confidence = the max probability.
* Quality ``q`` = share of **all** B·H·W pixels whose confidence is ≥ τ (τ = 0.968): **one scalar
  for the whole batch**, margins included, broadcast to a ``[B, H, W]`` map.
* Region filtering multiplies that map: v2 (HRDA/MIC/VDA) by the ``valid_mask`` carried through the
  data pipeline (``crop_pseudo_margins``), v1 (DAFormer) by zeroing the top/bottom rows of the
  crop. The two are mutually exclusive.
* Pseudo-labels never contain 255; ignoring happens through the weight only.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["PSEUDO_THRESHOLD", "pseudo_label", "quality"]

PSEUDO_THRESHOLD = 0.968


def quality(confidence: Tensor, threshold: float = PSEUDO_THRESHOLD) -> Tensor:
    """Share of pixels with ``confidence >= threshold``: confidence ``[B, H, W]`` → 0-d float32.

    Stays on the device (no host sync).
    """
    return (confidence >= threshold).float().mean()


def pseudo_label(
    logits: Tensor,
    threshold: float = PSEUDO_THRESHOLD,
    valid_mask: Tensor | None = None,
    *,
    ignore_top: int = 0,
    ignore_bottom: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pseudo-labels, per-pixel weights and confidences from teacher logits.

    Args:
        logits: ``[B, K, H, W]`` teacher logits at label resolution (detached here; any float dtype,
            the softmax runs in float32).
        threshold: τ of the quality weight.
        valid_mask: optional ``[B, H, W]`` (bool or 0/1) pixels allowed to carry pseudo-labels
            (v2 margins); multiplies the weight.
        ignore_top, ignore_bottom: v1 margins — zero the weight of the first ``ignore_top`` and the
            last ``ignore_bottom`` rows. Not allowed together with ``valid_mask``.
    Returns:
        label int64 ``[B, H, W]`` (never 255), weight float32 ``[B, H, W]`` (= q · margin mask) and
        confidence float32 ``[B, H, W]``.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, K, H, W], got shape {tuple(logits.shape)}")
    if valid_mask is not None and (ignore_top or ignore_bottom):
        raise ValueError("valid_mask (crop_pseudo_margins) and ignore_top/bottom are exclusive")
    if ignore_top < 0 or ignore_bottom < 0:
        raise ValueError("ignore_top and ignore_bottom must be >= 0")
    probs = logits.detach().float().softmax(dim=1)
    confidence, label = probs.max(dim=1)
    weight = quality(confidence, threshold).expand_as(confidence).clone()
    if valid_mask is not None:
        if valid_mask.shape != weight.shape:
            raise ValueError(
                f"valid_mask {tuple(valid_mask.shape)} does not match labels {tuple(weight.shape)}"
            )
        weight = weight * valid_mask.to(weight.dtype)
    if ignore_top:
        weight[:, :ignore_top] = 0.0
    if ignore_bottom:
        weight[:, weight.shape[1] - min(ignore_bottom, weight.shape[1]) :] = 0.0
    return label, weight, confidence
