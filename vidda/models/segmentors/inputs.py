"""What every segmentor takes: frame t and, for two-frame models, frame t−k and the flow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor

__all__ = ["Pair", "as_inputs"]


@dataclass
class Pair:
    """The input of one segmentor forward or prediction.

    Attributes:
        x: frame t ``[B, 3, H, W]``.
        prev: frame t−k ``[B, 3, H, W]`` (two-frame models), else None.
        flow: backward flow of frame t to frame t−k ``[B, 2, H, W]`` (pixels, on frame t's grid,
            pointing into frame t−k), or None.
        valid: the flow's validity ``[B, H, W]`` bool, or None (valid everywhere).

    Frames are 0–255 images as decoded before :meth:`Segmentor.prepare
    <vidda.models.segmentors.base.Segmentor.prepare>`, ImageNet-normalised after it; every
    segmentor method takes prepared (normalised) inputs.
    """

    x: Tensor
    prev: Tensor | None = None
    flow: Tensor | None = None
    valid: Tensor | None = None

    def single(self) -> Pair:
        """Frame t alone."""
        return Pair(self.x)

    def map_frames(self, fn: Callable[[Tensor], Tensor]) -> Pair:
        """``fn`` applied to ``x`` and ``prev``; flow and validity unchanged."""
        return replace(self, x=fn(self.x), prev=None if self.prev is None else fn(self.prev))


def as_inputs(inputs: Pair | Tensor) -> Pair:
    """``inputs`` as a :class:`Pair`; a tensor ``[B, 3, H, W]`` is frame t alone."""
    return inputs if isinstance(inputs, Pair) else Pair(inputs)
