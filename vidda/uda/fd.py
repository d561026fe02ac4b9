"""ImageNet feature distance (FD) of DAFormer.

FD = mean, over the feature locations whose down-scaled source label is a "thing" class, of the L2
norm (over channels) of ``f_student − f_imnet``. The label is down-scaled by
:func:`downscale_label_ratio` with ``s = W_label // W_feat``. The loss term is ``λ_fd · FD``
(λ_fd = 0.005). When no location is selected the result is a zero that still belongs to the
student's graph (zero gradient, no NaN), so the term is skipped without a special case.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidda.config.schema import FD_THING_CLASSES
from vidda.models.segmentors.resize import rescale

__all__ = [
    "FD_CLASSES_GTA_SYNTHIA",
    "ImageNetFD",
    "downscale_label_ratio",
    "fd_mask",
    "feature_distance",
]

FD_CLASSES_GTA_SYNTHIA: tuple[int, ...] = FD_THING_CLASSES  # the method.fd.classes default
"""DAFormer's FD classes: traffic light and sign, and the eight thing classes (person … bicycle).
Runs with a VIPER source list them without rider (12), which VIPER lacks
(``configs/_base_/data/viper_*.yaml``)."""


def downscale_label_ratio(
    label: Tensor,
    scale_factor: int,
    min_ratio: float = 0.75,
    n_classes: int = 19,
    ignore: int = 255,
) -> Tensor:
    """Down-scale a label map by majority vote with a minimum share.

    ``ignore`` counts as an extra class ``n_classes``. For every ``s × s`` cell the winning class
    ``c*`` and its share ρ are found (ties go to the lower class id); the result is ``ignore`` where
    ``c*`` is the extra class or ``ρ < min_ratio``, else ``c*``. Trailing rows/columns that do not
    fill a cell are dropped (``H // s``).

    Args:
        label: ``[B, H, W]`` integer labels in ``[0, n_classes)`` or ``ignore``.
        scale_factor: ``s >= 1``.
    Returns:
        int64 ``[B, H // s, W // s]``.

    Memory: one ``[B, 1, H, W]`` float map at a time (a loop over classes, no one-hot tensor).
    """
    if label.ndim != 3:
        raise ValueError(f"label must be [B, H, W], got shape {tuple(label.shape)}")
    if scale_factor < 1:
        raise ValueError(f"scale_factor must be >= 1, got {scale_factor}")
    lab = label.long().unsqueeze(1)
    lab = torch.where(lab == ignore, torch.full_like(lab, n_classes), lab)
    best_ratio: Tensor | None = None
    best_class: Tensor | None = None
    for c in range(n_classes + 1):
        ratio = F.avg_pool2d((lab == c).float(), scale_factor)[:, 0]
        if best_ratio is None or best_class is None:
            best_ratio, best_class = ratio, torch.zeros_like(ratio, dtype=torch.long)
            continue
        better = ratio > best_ratio
        best_ratio = torch.where(better, ratio, best_ratio)
        best_class = torch.where(better, torch.full_like(best_class, c), best_class)
    assert best_ratio is not None and best_class is not None
    drop = (best_class == n_classes) | (best_ratio < min_ratio)
    return torch.where(drop, torch.full_like(best_class, ignore), best_class)


def fd_mask(
    label: Tensor,
    feat_hw: tuple[int, int],
    classes: Sequence[int] | None,
    min_ratio: float = 0.75,
    n_classes: int = 19,
) -> Tensor:
    """Bool ``[B, h, w]``: feature locations whose down-scaled label is in ``classes``.

    ``s = W_label // w``; ``classes=None`` selects every location.
    """
    b = label.shape[0]
    h, w = feat_hw
    if classes is None:
        return torch.ones((b, h, w), dtype=torch.bool, device=label.device)
    scale = label.shape[-1] // w
    small = downscale_label_ratio(label, scale, min_ratio, n_classes)
    if tuple(small.shape[-2:]) != (h, w):
        raise ValueError(
            f"label {tuple(label.shape[-2:])} down-scaled by {scale} is {tuple(small.shape[-2:])}, "
            f"features are {(h, w)}"
        )
    wanted = torch.as_tensor(list(classes), dtype=torch.long, device=label.device)
    return torch.isin(small, wanted)


def feature_distance(
    f_student: Tensor,
    f_imnet: Tensor,
    label: Tensor,
    classes: Sequence[int] | None = FD_CLASSES_GTA_SYNTHIA,
    min_ratio: float = 0.75,
    n_classes: int = 19,
) -> Tensor:
    """Masked mean feature distance (the FD term before λ_fd).

    Args:
        f_student: ``[B, C, h, w]`` last-stage student features on the source images (in graph).
        f_imnet: ``[B, C, h, w]`` features of the frozen ImageNet model on the same images
            (detached here).
        label: ``[B, H, W]`` source labels, ``H // h == W // w == s``.
        classes: the FD classes; ``None`` = every location.
        min_ratio, n_classes: of :func:`downscale_label_ratio`.
    Returns:
        0-d float32: mean over selected locations of ``‖f_student − f_imnet‖₂`` over channels;
        ``0`` (with zero gradient) when nothing is selected. No host sync.
    """
    if f_student.shape != f_imnet.shape or f_student.ndim != 4:
        raise ValueError(
            f"features must both be [B, C, h, w]: {tuple(f_student.shape)}, {tuple(f_imnet.shape)}"
        )
    diff = f_student.float() - f_imnet.detach().float()
    dist = torch.linalg.vector_norm(diff, ord=2, dim=1)  # [B, h, w]
    mask = fd_mask(label, (dist.shape[-2], dist.shape[-1]), classes, min_ratio, n_classes)
    # where(), not multiply: an inf/NaN outside the mask must not leak into the sum.
    total = torch.where(mask, dist, torch.zeros_like(dist)).sum()
    return total / mask.sum().clamp_min(1).to(total.dtype)


class ImageNetFD(nn.Module):
    """``weight`` × FD between the student's last-stage source features and those of a frozen
    copy of its backbone, taken when the method is built (the ImageNet initialisation).

    Args:
        backbone: the student's backbone (deep-copied, frozen, kept in eval mode: BN running
            statistics, no drop-path).
        weight: λ_fd (0.005).
        classes, min_ratio: of :func:`feature_distance`.
        feature_scale: the scale of the image the student's features come from (HRDA: its
            context scale); the copy sees the source image rescaled alike.

    The copy is ``self.imnet`` (checkpoints hold it as ``imnet``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        weight: float,
        classes: Sequence[int] | None = FD_CLASSES_GTA_SYNTHIA,
        min_ratio: float = 0.75,
        feature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.imnet = copy.deepcopy(backbone).eval().requires_grad_(False)
        self.weight, self.classes, self.min_ratio = weight, classes, min_ratio
        self.feature_scale = feature_scale

    def train(self, mode: bool = True) -> ImageNetFD:
        super().train(mode)
        self.imnet.eval()
        return self

    def forward(self, features: Tensor, x: Tensor, label: Tensor) -> Tensor:
        """λ_fd · FD of student features ``[B, C, h, w]`` (in graph) on prepared source images
        ``x`` ``[B, 3, H, W]`` with labels ``[B, H, W]``; 0-d."""
        with torch.no_grad():
            ref = self.imnet(rescale(x, self.feature_scale))[-1]
        return self.weight * feature_distance(features, ref, label, self.classes, self.min_ratio)
