"""ResNet-V1c backbone, dilated to output stride 8.

V1c = ResNet with a *deep stem*: three 3×3 conv-BN-ReLU (3 → 32 at stride 2, 32 → 32, 32 → 64)
instead of one 7×7 conv, then a 3×3 / stride 2 max-pool. Stages ``layer1..4`` are bottleneck blocks
(expansion 4, "pytorch" style: the stride sits on the 3×3 ``conv2``), with per-stage strides
(1, 2, 1, 1) and dilations (1, 1, 2, 4). With ``contract_dilation`` the first block of a dilated
stage uses half the dilation, so layer3 runs dilations [1, 2, 2, …] and layer4 [2, 4, 4]. Every 3×3
padding equals its dilation.

State-dict keys follow the mmcv/mmseg ``open-mmlab://resnet101_v1c`` checkpoint:
``stem.{0,1,3,4,6,7}`` (conv, BN, conv, BN, conv, BN), ``layer{i}.{j}.{conv1,bn1,conv2,bn2,conv3,
bn3}`` and, on the first block of each stage, ``layer{i}.0.downsample.{0,1}`` (1×1 strided conv,
BN). No conv has a bias; there is no ``fc``. ResNet-101-V1c has 42,519,392 parameters.

Forward: ``[B, 3, H, W]`` → ``[layer1, layer2, layer3, layer4]`` with ``out_channels``
(256, 512, 1024, 2048) and ``out_strides`` (4, 8, 8, 8). BN is plain ``BatchNorm2d`` and follows
``train()``/``eval()`` (mmseg ``norm_eval=False``).

Init (used only when no pretrained weights are loaded): Kaiming-normal (fan_out, relu) convs,
BN weight 1 and bias 0; ``zero_init_residual=True`` additionally zeroes every ``bn3.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["DEPTHS", "Bottleneck", "ResNetV1c", "resnet101_v1c"]

# depth → blocks per stage
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, dilation) → 1×1 bottleneck with residual; ``planes · 4`` outputs.

    Shapes: ``[B, inplanes, H, W] -> [B, 4·planes, H', W']``, ``H' = (H - 1) // stride + 1``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``[B, inplanes, H, W] -> [B, 4·planes, H', W']``."""
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _make_layer(
    inplanes: int, planes: int, blocks: int, stride: int, dilation: int, contract_dilation: bool
) -> nn.Sequential:
    """One stage; the first block carries the stride and (if needed) the downsample path."""
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
    layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
    layers += [Bottleneck(out, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetV1c(nn.Module):
    """Dilated ResNet-V1c returning the four stage outputs.

    Args:
        depth: 50, 101 or 152.
        in_channels: image channels.
        stem_channels: output of the deep stem (its first two convs have half of it).
        base_channels: ``planes`` of layer1 (doubled per stage; outputs are 4× planes).
        strides, dilations: per stage.
        contract_dilation: halve the dilation of a dilated stage's first block.
        zero_init_residual: zero every ``bn3.weight`` at init.
    """

    def __init__(
        self,
        depth: int = 101,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        strides: Sequence[int] = (1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 4),
        contract_dilation: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        if len(strides) != 4 or len(dilations) != 4:
            raise ValueError("strides and dilations need one entry per stage (4)")
        half = stem_channels // 2
        self.stem = nn.Sequential(
            *_conv_bn_relu(in_channels, half, stride=2),
            *_conv_bn_relu(half, half),
            *_conv_bn_relu(half, stem_channels),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes, total_stride = stem_channels, 4
        channels, out_strides = [], []
        for i, (blocks, s, d) in enumerate(zip(DEPTHS[depth], strides, dilations, strict=True)):
            planes = base_channels * 2**i
            layer = _make_layer(inplanes, planes, blocks, s, d, contract_dilation)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * Bottleneck.expansion
            total_stride *= s
            channels.append(inplanes)
            out_strides.append(total_stride)
        self.depth = depth
        self.out_channels = tuple(channels)
        self.out_strides = tuple(out_strides)
        self.reset_parameters(zero_init_residual)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """Kaiming-normal (fan_out, relu) convs; BN weight 1, bias 0 (``bn3`` weight 0 if asked)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, C, H, W]`` → 4 maps ``[B, out_channels[i], ⌈H/s_i⌉, ⌈W/s_i⌉]``.

        ``s_i = out_strides[i]``; every stride-2 op maps a size h to ``⌈h/2⌉``.
        """
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


def resnet101_v1c(**kwargs) -> ResNetV1c:
    """ResNet-101-V1c at output stride 8 (strides (1, 2, 1, 1), dilations (1, 1, 2, 4))."""
    return ResNetV1c(depth=101, **kwargs)
