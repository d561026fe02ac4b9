"""``EncoderDecoder``: one backbone, one decode head; whole-image or sliding-window inference."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidda.models.losses import seg_loss
from vidda.models.segmentors.sliding import slide


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits to ``size`` (H, W), align_corners=False; no-op when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


class EncoderDecoder(nn.Module):
    """Backbone → decode head. Logits come at the head's stride; ``inference`` upsamples them.

    Args:
        backbone: module returning a list of feature maps, with ``out_channels``.
        head: decode head (``vidda.models.heads``) with ``out_stride``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = head

    @property
    def out_stride(self) -> int:
        return int(self.decode_head.out_stride)

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of images ``x`` [B, 3, H, W]."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, H / out_stride, W / out_stride]."""
        return self.decode_head(self.extract(x))

    def forward_train(self, x: torch.Tensor, **_: Any) -> dict[str, Any]:
        """``{"logits": [B, K, h, w], "features": backbone features}``."""
        features = self.extract(x)
        return {"logits": self.decode_head(features), "features": features}

    def loss(
        self, outputs: dict[str, Any], label: torch.Tensor, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss_seg": CE}`` of the logits against ``label`` [B, H, W]."""
        return {"loss_seg": seg_loss(outputs["logits"], label, weight)}

    def inference(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the resolution of ``x``: [B, K, H, W] (mmseg's ``encode_decode``)."""
        return upsample(self(x), x.shape[-2:])

    def predict(
        self,
        x: torch.Tensor,
        mode: str = "whole",
        crop: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Test-time logits [B, K, H, W]: one pass (``whole``) or batched windows (``slide``)."""
        if mode == "whole":
            return self.inference(x)
        if mode != "slide" or crop is None or stride is None:
            raise ValueError(f"predict: mode must be 'whole' or 'slide' with crop and stride, "
                             f"got mode={mode!r}, crop={crop}, stride={stride}")  # fmt: skip
        return slide(self.inference, x, crop, stride)
