"""Frames and flows of a collated clip batch, addressed by canonical offset.

A clip batch (``vidda.data.transforms``) holds ``frames`` uint8 ``[B, T, 3, H, W]`` ordered like the
dataset's ``offsets`` (oldest first), ``flows`` float ``[B, T, 2, H, W]`` — frame i's backward flow
to the frame one canonical offset earlier, in pixels — and ``flow_valid`` bool ``[B, T, H, W]``.
:class:`ClipView` turns that into what the video techniques need: a frame at offset ``o`` and the
backward flow from frame ``o`` to frame ``o − k``, as the segmentors' input
(:class:`~vidda.models.segmentors.inputs.Pair`, frames as decoded: the segmentor's ``prepare``
normalises them). For ``k > 1`` the per-frame flows are chained:
``f_{o→o−k}(p) = f_o(p) + f_{o−1→o−k}(p + f_o(p))`` (bilinear), valid where every link is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vidda.flow.warp import backward_warp
from vidda.models.segmentors.inputs import Pair

__all__ = ["ClipView", "chain_flows"]


def chain_flows(flows: Sequence[Tensor], valids: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Compose backward flows ``[f_o, f_{o−1}, …]`` (each ``[B, 2, H, W]`` on its own frame's
    grid, validity ``[B, H, W]``) into the flow from frame o to the last frame's predecessor.

    Returns the chained flow ``[B, 2, H, W]`` and its validity ``[B, H, W]`` (every link valid
    where the chain reads it, and the end point inside the frame).
    """
    flow, valid = flows[0].float(), valids[0].bool()
    if len(flows) == 1:
        return flow, valid
    for nxt, nxt_valid in zip(flows[1:], valids[1:], strict=True):
        # sample the next link (and its validity) where the chain has arrived so far
        stack = torch.cat((nxt.float(), nxt_valid[:, None].float()), dim=1)
        sampled, inside = backward_warp(stack, flow, "bilinear", valid)
        flow = flow + sampled[:, :2]
        valid = inside & (sampled[:, 2] > 1.0 - 1e-4)
    _, inside = backward_warp(flow.new_zeros(flow[:, :1].shape), flow, "nearest", valid)
    return flow, inside


class ClipView:
    """Canonical-offset access to one dataset's clip batches.

    Args:
        offsets: the dataset's canonical offsets (``data.<key>.offsets``), ascending, 0 included.
        key: the config section, named in errors (e.g. ``"data.target"``).
    """

    def __init__(self, offsets: Sequence[int], key: str = "data") -> None:
        self.offsets = [int(o) for o in offsets]
        self.key = key

    def index(self, offset: int) -> int:
        """Position of canonical ``offset`` in the clip's frame axis."""
        if offset not in self.offsets:
            raise ValueError(f"{self.key}.offsets {self.offsets} has no frame at offset {offset}")
        return self.offsets.index(offset)

    def frame(self, clip: dict[str, Any], offset: int = 0) -> Tensor:
        """The frame at ``offset`` as decoded: ``[B, 3, H, W]`` (uint8, 0–255)."""
        return clip["frames"][:, self.index(offset)]

    def flow(self, clip: dict[str, Any], offset: int = 0, k: int = 1) -> tuple[Tensor, Tensor]:
        """Backward flow from frame ``offset`` to frame ``offset − k`` and its validity.

        Returns ``[B, 2, H, W]`` float and ``[B, H, W]`` bool.
        Raises:
            ValueError: a needed frame is not in the clip, or the flows do not match the frames.
        """
        frames, flows = clip["frames"], clip["flows"]
        if flows.ndim != 5 or flows.shape[2] != 2 or flows.shape[:2] != frames.shape[:2] or (
            flows.shape[-2:] != frames.shape[-2:]
        ):
            raise ValueError(
                f"{self.key}: flows {tuple(flows.shape)} do not match frames "
                f"{tuple(frames.shape)} (expected [B, T, 2, H, W] at the frames' size)"
            )
        links = [self.index(offset - j) for j in range(k)]
        self.index(offset - k)  # the frame the chain ends on must be in the clip too
        valid = clip["flow_valid"]
        return chain_flows([flows[:, i] for i in links], [valid[:, i] for i in links])

    def pair(
        self, clip: dict[str, Any], offset: int = 0, k: int = 1, prev_offset: int | None = None
    ) -> Pair:
        """Frame ``offset``, frame ``offset − k`` and the flow between them.

        ``prev_offset`` replaces the earlier frame (not the flow): the original's BDDVid alias
        (``compat.bdd_prev_frame_t4``) paired frame t−2k with the flow t → t−k.
        """
        flow, valid = self.flow(clip, offset, k)
        prev = self.frame(clip, offset - k if prev_offset is None else prev_offset)
        return Pair(self.frame(clip, offset), prev, flow, valid)
