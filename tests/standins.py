"""Small stand-in networks for segmentor mechanics tests (fast, deterministic shapes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Stride4(nn.Module):
    """A backbone stand-in: two features at strides 4 and 8."""

    out_channels = (8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 4, stride=4)
        self.b = nn.Conv2d(8, 8, 2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.a(x)
        return [a, self.b(a)]


class Head(nn.Module):
    """A head stand-in: both features fused at stride 4 into ``k`` classes."""

    out_stride = 4

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, k, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        up = F.interpolate(feats[1], feats[0].shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([feats[0], up], 1))
