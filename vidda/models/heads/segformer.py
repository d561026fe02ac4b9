"""SegFormer all-MLP decode head.

For features ``feats[i]`` of shape ``[B, C_i, H_i, W_i]``:

1. ``linear_c.{i}.proj``: per-pixel ``Linear(C_i → embed_dim)`` (768 in ``segformer_b5``).
2. Levels 1.. are bilinearly resized to level 0's size and concatenated in level order
   [0, 1, …] (the official NVlabs head uses reverse order and names ``linear_c4 … linear_c1``;
   decoders are trained from scratch, so only this order is implemented).
3. ``linear_fuse``: 1×1 ConvModule (BN, ReLU) to ``embed_dim``.
4. ``Dropout2d(dropout_ratio)`` then ``linear_pred``: 1×1 conv to ``num_classes`` with bias.

Difference from the mmseg/DAFormer original, on purpose: the original's base class also created an
*unused* ``conv_seg`` (128 → 19), which forced ``find_unused_parameters=True`` under DDP. It is not
recreated here, so checkpoints of this head have no ``conv_seg.*`` keys. ``linear_pred`` keeps
PyTorch's default conv init, as in the original (only ``conv_seg`` got the N(0, 0.01²) init there).

Output: logits ``[B, num_classes, H_0, W_0]``, at ``out_stride = in_strides[0]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vidda.models.heads.common import ConvModule, MLPEmbed, check_features, resize

__all__ = ["SegFormerHead"]


class SegFormerHead(nn.Module):
    """SegFormer MLP head.

    Args:
        in_channels: channels of the backbone features, e.g. ``(64, 128, 320, 512)``.
        num_classes: number of output channels.
        embed_dim: width of each level's embedding and of the fused feature.
        dropout_ratio: ``Dropout2d`` probability before ``linear_pred`` (0 disables it).
        in_strides: input/feature ratio of each level; ``out_stride = in_strides[0]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        embed_dim: int = 768,
        dropout_ratio: float = 0.1,
        in_strides: Sequence[int] = (4, 8, 16, 32),
    ) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.num_classes = int(num_classes)
        self.channels = int(embed_dim)
        self.in_strides = tuple(int(s) for s in in_strides)
        self.out_stride = self.in_strides[0]
        self.linear_c = nn.ModuleList(MLPEmbed(c, embed_dim) for c in self.in_channels)
        self.linear_fuse = ConvModule(len(self.in_channels) * embed_dim, embed_dim, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def features(self, feats: Sequence[Tensor]) -> Tensor:
        """Fused feature ``[B, embed_dim, H_0, W_0]`` (before dropout and ``linear_pred``)."""
        check_features(feats, self.in_channels, type(self).__name__)
        size = feats[0].shape[-2:]
        embedded = [resize(lin(f), size) for lin, f in zip(self.linear_c, feats, strict=True)]
        return self.linear_fuse(torch.cat(embedded, dim=1))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats[i]: [B, C_i, H_i, W_i]`` → logits ``[B, num_classes, H_0, W_0]``."""
        return self.linear_pred(self.dropout(self.features(feats)))
