"""DeepLabV2 ("DLV2") decode head.

An ASPP on one backbone feature (``in_index``, default the last: ResNet-101 layer4, 2048
channels). Branch ``aspp_modules.{i}`` is a single biased 3×3 ``Conv2d`` with dilation
``dilations[i]`` and padding equal to it, producing ``num_classes`` channels directly (no BN, no
ReLU, no dropout, no separate classifier). The logits are the **sum** of the branches.

Dilations default to (6, 12): every VDA DLV2 config inherits ``deeplabv2red_r50-d8.py``, which
overrides the base (6, 12, 18, 24) to mimic the AdaptSegNet-lineage early return. Pass
``dilations=(6, 12, 18, 24)`` for the four-branch head of the paper.

Init: every branch weight ~ N(0, 0.01²), every bias 0.
Keys: ``aspp_modules.{i}.conv.{weight,bias}``.
With 2048 input channels, 19 classes and (6, 12): 2 × (2048·19·9 + 19) = 700,454 parameters.

Output: logits ``[B, num_classes, H, W]`` at the resolution of ``feats[in_index]``, i.e.
``out_stride = in_strides[in_index]`` (8 on ResNet-101 v1c, whose strides are (4, 8, 8, 8)).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vidda.models.heads.common import ConvModule, check_features

__all__ = ["DLV2Head"]


class DLV2Head(nn.Module):
    """DeepLabV2 ASPP classifier: sum of dilated 3×3 convs straight to class logits.

    Args:
        in_channels: channels of all backbone features, e.g. ``(256, 512, 1024, 2048)``.
        num_classes: number of output channels.
        dilations: one branch per dilation (padding = dilation).
        in_index: which feature the head reads (default: the last).
        in_strides: input/feature ratio of each level (default: ResNet v1c's (4, 8, 8, 8));
            ``out_stride = in_strides[in_index]``.
        init_std: standard deviation of the normal weight init.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        dilations: Sequence[int] = (6, 12),
        in_index: int = -1,
        in_strides: Sequence[int] = (4, 8, 8, 8),
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.num_classes = int(num_classes)
        self.in_index = int(in_index)
        self.dilations = tuple(int(d) for d in dilations)
        if not self.dilations:
            raise ValueError("DLV2Head needs at least one dilation")
        self.in_strides = tuple(int(s) for s in in_strides)
        self.out_stride = self.in_strides[self.in_index]
        c_in = self.in_channels[self.in_index]
        self.aspp_modules = nn.ModuleList(
            ConvModule(c_in, num_classes, 3, padding=d, dilation=d, norm=False, act=False)
            for d in self.dilations
        )
        self.reset_parameters(init_std)

    def reset_parameters(self, std: float = 0.01) -> None:
        """Branch weights ~ N(0, std²), biases 0 (mmseg's ``Normal(std=0.01)`` init)."""
        for branch in self.aspp_modules:
            nn.init.normal_(branch.conv.weight, mean=0.0, std=std)
            nn.init.zeros_(branch.conv.bias)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats[i]: [B, C_i, H_i, W_i]`` → ``[B, num_classes, H_k, W_k]`` (k = in_index)."""
        check_features(feats, self.in_channels, type(self).__name__)
        x = feats[self.in_index]
        out = self.aspp_modules[0](x)
        for branch in self.aspp_modules[1:]:
            out = out + branch(x)
        return out
