"""The interface every segmentor implements, single-frame and two-frame alike.

A segmentor maps a :class:`~vidda.models.segmentors.inputs.Pair` (frame t; for two-frame models
also frame t−k and the backward flow t → t−k) to class logits:

* :meth:`Segmentor.prepare` — 0–255 frames as decoded → ImageNet-normalised inputs (the model's
  own statistics, held as buffers). Every other method takes prepared inputs; training
  augmentations (ClassMix, colour jitter, blur, MIC masks) work on prepared inputs.
* :meth:`Segmentor.forward_train` (also ``forward``, which DDP wraps) — one training pass:
  a dict with ``logits`` and whatever :meth:`Segmentor.loss` needs (``features``; HRDA's ``hr``,
  ``lr``, ``box``, ``attention``).
* :meth:`Segmentor.loss` — the weighted cross-entropy terms of those outputs.
* :meth:`Segmentor.inference` — logits ``[B, K, H, W]`` at the input's resolution in one
  whole-image pass (the EMA teacher's pseudo-labels).
* :meth:`Segmentor.predict` — test-time logits ``[B, K, H, W]``: ``whole`` or ``slide`` windows.

Callers ask the interface what a model needs (:attr:`Segmentor.two_frame`,
:attr:`Segmentor.predict_two_frame`) instead of testing its class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vidda.models.normalize import MEAN, STD, check_channels
from vidda.models.segmentors.inputs import Pair

__all__ = ["PREDICT_MODES", "Segmentor", "check_predict_mode"]

PREDICT_MODES = ("whole", "slide")


def check_predict_mode(
    mode: str, crop: tuple[int, int] | None, stride: tuple[int, int] | None
) -> None:
    """Raise ValueError unless ``mode`` is ``whole``, or ``slide`` with a crop and a stride."""
    if mode == "whole" or (mode == "slide" and crop is not None and stride is not None):
        return
    raise ValueError(f"predict: mode must be 'whole' or 'slide' with crop and stride, "
                     f"got mode={mode!r}, crop={crop}, stride={stride}")  # fmt: skip


class Segmentor(nn.Module):
    """Base class of the segmentors (see the module docstring for the protocol).

    Attributes:
        two_frame: ``forward_train`` and ``inference`` need frame t−k and the flow.
    """

    two_frame: bool = False

    def __init__(self) -> None:
        super().__init__()
        # Not persistent: checkpoints and imported weights hold the networks only.
        self.register_buffer("pixel_mean", torch.tensor(MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(STD).view(3, 1, 1), persistent=False)

    @property
    def predict_two_frame(self) -> bool:
        """Whether :meth:`predict` needs frame t−k and the flow."""
        return self.two_frame

    @property
    def out_stride(self) -> int:
        """Stride of the head's logits relative to the input."""
        raise NotImplementedError

    @property
    def feature_scale(self) -> float:
        """Scale of the image that ``forward_train``'s ``features`` are computed from (1; HRDA:
        its context scale)."""
        return 1.0

    def preprocess(self, frames: Tensor) -> Tensor:
        """0–255 images (uint8 or float) ``[..., 3, H, W]`` → ``(x − mean) / std`` (float32, or the
        input's float dtype)."""
        check_channels(frames)
        x = frames if frames.is_floating_point() else frames.float()
        mean = self.pixel_mean.to(device=x.device, dtype=x.dtype)
        std = self.pixel_std.to(device=x.device, dtype=x.dtype)
        return (x - mean) / std

    def prepare(self, inputs: Pair) -> Pair:
        """``inputs`` with both frames preprocessed (flow and validity unchanged)."""
        return inputs.map_frames(self.preprocess)

    def forward(self, inputs: Pair | Tensor, **kwargs: Any) -> dict[str, Any]:
        """Same as :meth:`forward_train` (what DistributedDataParallel wraps)."""
        return self.forward_train(inputs, **kwargs)

    def forward_train(
        self,
        inputs: Pair | Tensor,
        box: tuple[int, int, int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """One training pass; ``box``/``generator``: HRDA's detail crop (ignored elsewhere)."""
        raise NotImplementedError

    def loss(
        self, outputs: dict[str, Any], label: Tensor, weight: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Weighted loss terms of ``forward_train``'s outputs against ``label`` ``[B, H, W]``."""
        raise NotImplementedError

    def inference(self, inputs: Pair | Tensor) -> Tensor:
        """Logits ``[B, K, H, W]`` at the input's resolution, one whole-image pass."""
        raise NotImplementedError

    def predict(
        self,
        inputs: Pair | Tensor,
        mode: str = "whole",
        crop: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> Tensor:
        """Test-time logits ``[B, K, H, W]``: one pass (``whole``) or batched ``slide`` windows of
        ``crop`` every ``stride`` pixels, averaged."""
        raise NotImplementedError
