"""Decode heads by name: ``forward(features: list[Tensor]) -> logits [B, K, H_o, W_o]``.

Each head takes ``in_channels`` (the backbone's ``out_channels``) and ``num_classes`` and exposes
``out_stride`` relative to the backbone's first feature map's input (DAFormer/SegFormer on MiT: 4;
DeepLabV2 on ResNet-101 v1c: that of the last feature, 8).
"""

from __future__ import annotations

from torch import nn

from vidda.models.backbones import _resolve

_HEADS: dict[str, str] = {
    "daformer": "vidda.models.heads.daformer:DAFormerHead",
    "daformer_conv1": "vidda.models.heads.daformer:daformer_conv1",
    "segformer": "vidda.models.heads.segformer:SegFormerHead",
    "dlv2": "vidda.models.heads.dlv2:DLV2Head",
}


def head_names() -> list[str]:
    return sorted(_HEADS)


def build_head(
    name: str, in_channels: tuple[int, ...], num_classes: int = 19, **kwargs
) -> nn.Module:
    """Build head ``name`` on features with ``in_channels``, predicting ``num_classes``."""
    return _resolve(_HEADS, name, "head")(
        in_channels=in_channels, num_classes=num_classes, **kwargs
    )
