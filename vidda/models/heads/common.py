"""Building blocks shared by the decode heads.

* :class:`ConvModule` — conv → optional BN → optional ReLU, children named ``conv``, ``bn`` and
  ``activate`` (the state-dict layout of the mmseg checkpoints). The conv carries a bias only when
  no BN follows. Init: Kaiming-normal (fan_out, relu) conv weight, zero bias, BN weight 1 / bias 0.
* :class:`DepthwiseSeparableConvModule` — ``depthwise_conv`` (k×k, groups = C_in, BN, ReLU) then
  ``pointwise_conv`` (1×1, BN, ReLU).
* :class:`ASPP` — parallel dilated branches (``aspp_modules``) concatenated and fused by a
  regular 3×3 ``bottleneck`` ConvModule.
* :class:`MLPEmbed` — a per-pixel ``Linear`` (``proj``) applied to a ``[B, C, H, W]`` map.
* :func:`resize` — bilinear resize with ``align_corners=False``.
* :func:`make_classifier` — the 1×1 classifier conv with N(0, 0.01²) weight and zero bias.

All blocks keep the memory format of their input (channels_last stays channels_last).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASPP",
    "ConvModule",
    "DepthwiseSeparableConvModule",
    "MLPEmbed",
    "check_features",
    "make_classifier",
    "resize",
]


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinearly resize ``x`` ``[B, C, H, W]`` to ``[B, C, *size]`` (align_corners=False).

    Returns ``x`` itself when it already has that size.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """Conv2d, then optional ``BatchNorm2d``, then optional ReLU (mmcv ``ConvModule`` semantics).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as in
            :class:`torch.nn.Conv2d`.
        norm: add ``bn`` (BatchNorm2d, eps 1e-5, momentum 0.1, affine).
        act: add ``activate`` (in-place ReLU).
        bias: conv bias; ``None`` (default) means "only when ``norm`` is off".

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: bool = True,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        use_bias = (not norm) if bias is None else bias
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=use_bias,
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out, relu) conv weight, zero conv bias, BN weight 1 and bias 0."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if self.bn is not None:
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H', W']``."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise k×k ConvModule (groups = C_in, BN, ReLU) then pointwise 1×1 ConvModule (BN, ReLU).

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
        )
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H', W']``."""
        return self.pointwise_conv(self.depthwise_conv(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling without image-pool branch (DAFormer's ``fuse_layer``).

    Branch ``aspp_modules.{i}`` is a 1×1 ConvModule when ``dilations[i] == 1``, otherwise a 3×3
    convolution with that dilation (padding = dilation): a :class:`DepthwiseSeparableConvModule`
    when ``separable`` else a regular :class:`ConvModule`. The branch outputs are concatenated
    (``len(dilations) * channels``) and fused by ``bottleneck``, a regular 3×3 ConvModule.

    Shapes: ``[B, in_channels, H, W] -> [B, channels, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dilations: Sequence[int] = (1, 6, 12, 18),
        separable: bool = True,
    ) -> None:
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.aspp_modules = nn.ModuleList(
            _aspp_branch(in_channels, channels, d, separable) for d in self.dilations
        )
        self.bottleneck = ConvModule(len(self.dilations) * channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, channels, H, W]``."""
        return self.bottleneck(torch.cat([branch(x) for branch in self.aspp_modules], dim=1))


def _aspp_branch(in_channels: int, channels: int, dilation: int, separable: bool) -> nn.Module:
    if dilation == 1:
        return ConvModule(in_channels, channels, 1)
    if separable:
        return DepthwiseSeparableConvModule(
            in_channels, channels, 3, padding=dilation, dilation=dilation
        )
    return ConvModule(in_channels, channels, 3, padding=dilation, dilation=dilation)


class MLPEmbed(nn.Module):
    """Per-pixel linear embedding ``proj`` (an ``nn.Linear``; PyTorch default init).

    Equivalent to flattening ``[B, C, H, W]`` to ``H·W`` tokens, applying ``Linear(C → D)`` and
    reshaping back. The result ``[B, D, H, W]`` is a channels_last-strided view, which the
    following resize, concatenation and convolutions keep.
    """

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, D, H, W]``."""
        return self.proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_classifier(channels: int, num_classes: int, std: float = 0.01) -> nn.Conv2d:
    """A 1×1 ``Conv2d(channels → num_classes)`` with bias, weight ~ N(0, std²) and bias 0."""
    conv = nn.Conv2d(channels, num_classes, 1)
    nn.init.normal_(conv.weight, mean=0.0, std=std)
    nn.init.zeros_(conv.bias)
    return conv


def check_features(feats: Sequence[Tensor], in_channels: Sequence[int], who: str) -> None:
    """Raise ``ValueError`` unless ``feats`` holds one ``[B, C_i, H_i, W_i]`` map per C_i."""
    if len(feats) != len(in_channels):
        raise ValueError(f"{who}: expected {len(in_channels)} feature maps, got {len(feats)}")
    for i, (f, c) in enumerate(zip(feats, in_channels, strict=True)):
        if f.dim() != 4 or f.shape[1] != c:
            raise ValueError(f"{who}: feature {i} should be [B, {c}, H, W], got {list(f.shape)}")
