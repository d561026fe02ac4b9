"""``EncoderDecoder``: one backbone, one decode head; whole-image or sliding-window inference."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidda.models.losses import seg_loss
from vidda.models.segmentors.base import Segmentor, check_predict_mode
from vidda.models.segmentors.inputs import Pair, as_inputs
from vidda.models.segmentors.resize import resize
from vidda.models.segmentors.sliding import slide


class EncoderDecoder(Segmentor):
    """Backbone → decode head, on frame t alone.

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

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Head logits of images ``x`` [B, 3, H, W]: [B, K, H / out_stride, W / out_stride]."""
        return self.decode_head(self.extract(x))

    def forward_train(
        self,
        inputs: Pair | torch.Tensor,
        box: tuple[int, int, int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """``{"logits": [B, K, h, w] at the head's stride, "features": backbone features}``."""
        features = self.extract(as_inputs(inputs).x)
        return {"logits": self.decode_head(features), "features": features}

    def loss(
        self, outputs: dict[str, Any], label: torch.Tensor, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss_seg": CE}`` of the logits against ``label`` [B, H, W]."""
        return {"loss_seg": seg_loss(outputs["logits"], label, weight)}

    def inference(self, inputs: Pair | torch.Tensor) -> torch.Tensor:
        """Logits at the resolution of frame t: [B, K, H, W] (mmseg's ``encode_decode``)."""
        x = as_inputs(inputs).x
        return resize(self.logits(x), x.shape[-2:])

    def predict(
        self,
        inputs: Pair | torch.Tensor,
        mode: str = "whole",
        crop: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Test-time logits [B, K, H, W] of frame t: one pass (``whole``) or batched windows."""
        check_predict_mode(mode, crop, stride)
        x = as_inputs(inputs).x
        if mode == "whole":
            return self.inference(x)
        return slide(self.inference, x, crop, stride)
