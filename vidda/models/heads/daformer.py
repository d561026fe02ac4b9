"""DAFormer decode head and its "conv1" variant (HRDA's scale-attention head).

Pipeline for features ``feats[i]`` of shape ``[B, C_i, H_i, W_i]`` (MiT: strides 4, 8, 16, 32):

1. ``embed_layers.{i}.proj``: per-pixel ``Linear(C_i → embed_dims)`` (no norm, no activation).
2. Levels 1.. are bilinearly resized to level 0's size; concatenation in level order [0, 1, …]
   gives ``len(in_channels) · embed_dims`` channels.
3. ``fuse_layer``: ``"sepaspp"`` (default) = :class:`~vidda.models.heads.common.ASPP` with
   depthwise-separable dilated branches (1, 6, 12, 18) and a regular 3×3 bottleneck;
   ``"aspp"`` = the same with regular dilated 3×3 branches; ``"conv1"`` = one 1×1 ConvModule.
4. ``Dropout2d(dropout_ratio)`` then ``conv_seg`` (1×1, channels → num_classes, N(0, 0.01²)).

Output: logits ``[B, num_classes, H_0, W_0]``, at ``out_stride = in_strides[0]``.
With MiT-b5 features and 19 classes: "sepaspp" has 3,712,275 parameters, "conv1" 530,707.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vidda.models.heads.common import (
    ASPP,
    ConvModule,
    MLPEmbed,
    check_features,
    make_classifier,
    resize,
)

__all__ = ["FUSE_TYPES", "DAFormerHead", "daformer_conv1"]

FUSE_TYPES = ("sepaspp", "aspp", "conv1")


class DAFormerHead(nn.Module):
    """DAFormer head: MLP embeddings of every level, context-aware fusion, 1×1 classifier.

    Args:
        in_channels: channels of the backbone features, e.g. ``(64, 128, 320, 512)``.
        num_classes: output channels (19 for Cityscapes; 1 for a non-classwise HRDA attention).
        embed_dims: width of each level's embedding.
        channels: width of the fused feature.
        fuse: ``"sepaspp"``, ``"aspp"`` or ``"conv1"`` (see module docstring).
        dilations: ASPP branch dilations (ignored by ``"conv1"``).
        dropout_ratio: ``Dropout2d`` probability before ``conv_seg`` (0 disables it).
        in_strides: input/feature ratio of each level; ``out_stride = in_strides[0]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        embed_dims: int = 256,
        channels: int = 256,
        fuse: str = "sepaspp",
        dilations: Sequence[int] = (1, 6, 12, 18),
        dropout_ratio: float = 0.1,
        in_strides: Sequence[int] = (4, 8, 16, 32),
    ) -> None:
        super().__init__()
        if fuse not in FUSE_TYPES:
            raise ValueError(f"fuse must be one of {FUSE_TYPES}, got {fuse!r}")
        self.in_channels = tuple(int(c) for c in in_channels)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.in_strides = tuple(int(s) for s in in_strides)
        self.out_stride = self.in_strides[0]
        self.embed_layers = nn.ModuleList(MLPEmbed(c, embed_dims) for c in self.in_channels)
        self.fuse_layer = _build_fuse(fuse, len(self.in_channels) * embed_dims, channels, dilations)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = make_classifier(channels, num_classes)

    def features(self, feats: Sequence[Tensor]) -> Tensor:
        """Fused feature ``[B, channels, H_0, W_0]`` (before dropout and ``conv_seg``)."""
        check_features(feats, self.in_channels, type(self).__name__)
        size = feats[0].shape[-2:]
        embedded = [
            resize(embed(f), size) for embed, f in zip(self.embed_layers, feats, strict=True)
        ]
        return self.fuse_layer(torch.cat(embedded, dim=1))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats[i]: [B, C_i, H_i, W_i]`` → logits ``[B, num_classes, H_0, W_0]``."""
        return self.conv_seg(self.dropout(self.features(feats)))


def _build_fuse(fuse: str, in_channels: int, channels: int, dilations: Sequence[int]) -> nn.Module:
    if fuse == "conv1":
        return ConvModule(in_channels, channels, 1)
    return ASPP(in_channels, channels, dilations, separable=fuse == "sepaspp")


def daformer_conv1(in_channels: Sequence[int], num_classes: int, **kwargs) -> DAFormerHead:
    """The "conv1" DAFormer head (fuse = one 1×1 ConvModule), HRDA's scale-attention head.

    HRDA passes ``num_classes`` = the number of classes (``attention_classwise``, all configs) or 1.
    """
    return DAFormerHead(in_channels=in_channels, num_classes=num_classes, fuse="conv1", **kwargs)
