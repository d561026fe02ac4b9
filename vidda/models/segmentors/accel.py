"""ACCEL: temporal fusion of the current frame's logits with the flow-warped previous frame's.

One shared segmentor (EncoderDecoder or HRDA) runs on frame t with gradients and on frame t−k
without; both logits are bilinearly upsampled to the image size H × W, the t−k logits are
backward-warped onto frame t with the flow ``f_t`` (``[B, 2, H, W]``, pixels, on frame t's grid
pointing into frame t−k), and a 1×1 convolution without bias, initialised to ``[I | 0]``, fuses
``[current (K); warped (K)]`` into K logits. At initialisation the model is therefore exactly its
base segmentor.

Defaults vs the original (each original behaviour is a constructor switch, see ``docs/compat.md``):

* invalid warped pixels (outside frame t−k, invalid flow): the warped half takes the current
  frame's logits there, so fusion at initialisation is the identity everywhere
  (``invalid_fill="zero"`` zeroes them instead). ``compat_invalid_255``: the original's 255 in
  every warped channel (its ignore value, written into logits).
* warping operator: ``vidda.flow.warp.backward_warp`` (bilinear, explicit validity);
  ``original_warp=True``: the original's integer floor warp with its heuristics.
* HRDA's HR-crop output: by default **not fused**; ``outputs["hr"]`` stays the current frame's own
  crop logits, so the HR loss (0.1) trains frame t's detail branch on its crop, and the fusion
  layer is trained by the fused full-frame loss (0.9). The original also fused the HR output,
  stretching both branches' crop logits to H × W and warping the t−k one (a different random
  crop, hence spatially meaningless); ``hr_fusion="original"`` reproduces that. The context
  output ``lr`` is fused like the main logits (as the original; its loss weight is 0 in every
  paper config).
* teacher / test fusion: warped t−k logits; ``compat_unwarped=True`` fuses the *unwarped* t−k
  logits like the original's teacher. Fusing at full resolution equals the original's
  fuse-then-upsample exactly (a per-pixel linear map commutes with bilinear resizing).
* evaluation: :meth:`ACCEL.predict` fuses; ``compat_single_frame_eval=True`` evaluates the base
  segmentor on frame t alone (what the original's test loop did). The original's wrong window
  reordering is not reproduced: windows cover both frames and the flow identically.
"""

from __future__ import annotations

from typing import Any, get_args

import torch
from torch import Tensor, nn

from vidda.classes import IGNORE_INDEX
from vidda.config.schema import AccelInvalidFill
from vidda.flow.warp import backward_warp, original_warp
from vidda.models.segmentors.base import Segmentor, check_predict_mode
from vidda.models.segmentors.inputs import Pair
from vidda.models.segmentors.resize import resize
from vidda.models.segmentors.sliding import slide

__all__ = ["ACCEL"]

INVALID_FILLS: tuple[str, ...] = get_args(AccelInvalidFill)
HR_FUSIONS = ("none", "original")


class ACCEL(Segmentor):
    """A segmentor applied to a frame pair (t, t−k) and fused through the backward flow.

    Args:
        segmentor: the shared base network (``EncoderDecoder`` or ``HRDA``), with
            ``forward_train``, ``loss``, ``inference``, ``predict`` and ``out_stride``.
        num_classes: K, the segmentor's number of output channels.
        invalid_fill: what the warped half holds where the warp is invalid: "current" (frame t's
            own logits, default) or "zero".
        hr_fusion: "none" (HRDA's ``hr`` output = frame t's own crop logits, default) or
            "original" (the original's misaligned fusion of the stretched crop logits).
        original_warp: use the original's integer warp (``compat.original_warp``).
        compat_invalid_255: put 255 in every warped channel where the warp is invalid.
        compat_unwarped: ``inference`` / ``predict`` fuse the unwarped t−k logits (teacher bug).
        compat_single_frame_eval: ``predict`` runs the base segmentor on frame t only.

    Attributes ``segmentor`` and ``fusion`` (``nn.Conv2d(2K, K, 1, bias=False)``); the
    ``state_dict`` holds ``segmentor.*`` and ``fusion.weight``. Inputs are :class:`Pair` s with
    frame t−k and the flow (:attr:`two_frame`).
    """

    two_frame = True

    def __init__(
        self,
        segmentor: Segmentor,
        num_classes: int,
        invalid_fill: str = "current",
        hr_fusion: str = "none",
        original_warp: bool = False,
        compat_invalid_255: bool = False,
        compat_unwarped: bool = False,
        compat_single_frame_eval: bool = False,
    ) -> None:
        super().__init__()
        if invalid_fill not in INVALID_FILLS:
            raise ValueError(f"invalid_fill must be one of {INVALID_FILLS}, got {invalid_fill!r}")
        if hr_fusion not in HR_FUSIONS:
            raise ValueError(f"hr_fusion must be one of {HR_FUSIONS}, got {hr_fusion!r}")
        self.segmentor = segmentor
        self.num_classes = num_classes
        self.fusion = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)
        self.reset_fusion()
        self.invalid_fill = invalid_fill
        self.hr_fusion = hr_fusion
        self.original_warp = original_warp
        self.compat_invalid_255 = compat_invalid_255
        self.compat_unwarped = compat_unwarped
        self.compat_single_frame_eval = compat_single_frame_eval

    @property
    def out_stride(self) -> int:
        """The base network's logit stride (its head's). ACCEL's fused outputs (``logits``,
        ``lr``, ``inference``) are at full resolution, stride 1; HRDA's unfused ``hr`` keeps it."""
        return int(self.segmentor.out_stride)

    @property
    def feature_scale(self) -> float:
        return self.segmentor.feature_scale

    @property
    def backbone(self) -> nn.Module:
        """The shared base network's backbone."""
        return self.segmentor.backbone

    @property
    def predict_two_frame(self) -> bool:
        """False with ``compat_single_frame_eval``: :meth:`predict` then reads frame t only."""
        return not self.compat_single_frame_eval

    @torch.no_grad()
    def reset_fusion(self) -> None:
        """Set the fusion weight to ``[I_K | 0]``: identity on the current logits."""
        k = self.num_classes
        self.fusion.weight.zero_()
        self.fusion.weight[:, :k, 0, 0] = torch.eye(k, dtype=self.fusion.weight.dtype)

    # ------------------------------------------------------------------ pieces

    def warp(
        self, logits_tk: Tensor, current: Tensor, flow: Tensor, flow_valid: Tensor | None = None
    ) -> Tensor:
        """The t−k logits on frame t's grid, invalid pixels filled per the settings.

        Args:
            logits_tk: ``[B, K, H, W]`` logits of frame t−k at the flow's resolution.
            current: ``[B, K, H, W]`` frame t's logits (the "current" fill).
            flow: ``[B, 2, H, W]`` backward flow of frame t (pixels).
            flow_valid: optional ``[B, H, W]`` validity of the flow.
        Returns:
            ``[B, K, H, W]`` warped logits.
        """
        if self.original_warp:
            warped, valid = original_warp(logits_tk, flow, flow_valid)
        else:
            warped, valid = backward_warp(logits_tk, flow, "bilinear", flow_valid)
        invalid = ~valid[:, None]
        if self.compat_invalid_255:
            return warped.masked_fill(invalid, float(IGNORE_INDEX))
        if self.invalid_fill == "current":
            return torch.where(invalid, current, warped)
        return warped.masked_fill(invalid, 0.0)

    def fuse(self, current: Tensor, warped: Tensor) -> Tensor:
        """``fusion(cat([current, warped]))``: ``[B, K, H, W]`` × 2 → ``[B, K, H, W]``."""
        return self.fusion(torch.cat((current, warped), dim=1))

    def _fuse_pair(
        self, z_t: Tensor, z_tk: Tensor, flow: Tensor, flow_valid: Tensor | None,
        size: tuple[int, int],
    ) -> Tensor:  # fmt: skip
        """Upsample both logits to ``size``, warp t−k onto t, fuse."""
        z_t, z_tk = resize(z_t, size), resize(z_tk, size)
        return self.fuse(z_t, self.warp(z_tk, z_t, flow, flow_valid))

    @staticmethod
    def _check_pair(inputs: Pair) -> tuple[Tensor, Tensor, Tensor, tuple[int, int]]:
        """Frames t and t−k, the flow, and the image size; ValueError if one is missing or the
        shapes disagree."""
        if not isinstance(inputs, Pair) or inputs.prev is None or inputs.flow is None:
            raise ValueError("ACCEL needs a Pair with frame t−k (prev) and the flow t → t−k")
        x_t, x_tk, flow = inputs.x, inputs.prev, inputs.flow
        if x_t.shape != x_tk.shape or x_t.ndim != 4:
            raise ValueError(f"frames must both be [B, 3, H, W]: {tuple(x_t.shape)}, "
                             f"{tuple(x_tk.shape)}")  # fmt: skip
        b, _, h, w = x_t.shape
        if tuple(flow.shape) != (b, 2, h, w):
            raise ValueError(f"flow must be [B, 2, H, W] = {(b, 2, h, w)}, got {tuple(flow.shape)}")
        return x_t, x_tk, flow, (h, w)

    # ------------------------------------------------------------------ training

    def forward_train(
        self,
        inputs: Pair,
        box: Any = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """One training pass over a frame pair.

        Args:
            inputs: frames t ``x`` (with grad) and t−k ``prev`` (run under ``no_grad``, with its
                own HRDA crop drawn from ``generator``), ``[B, 3, H, W]``; the backward ``flow``
                ``[B, 2, H, W]`` of frame t and its optional validity ``valid`` ``[B, H, W]``.
            box: HRDA crop box for frame t (None: drawn from ``generator``).
        Returns:
            the frame-t branch's outputs with ``logits`` replaced by the fused ``[B, K, H, W]``
            (and HRDA's ``lr`` by its fused ``[B, K, H, W]``; ``hr`` per ``hr_fusion``), plus
            ``features``, ``box``, ``attention`` of frame t — ``loss`` works like the base's.
        """
        x_t, x_tk, flow, size = self._check_pair(inputs)
        flow_valid = inputs.valid
        with torch.no_grad():
            prev = self.segmentor.forward_train(x_tk, generator=generator)
        out = dict(self.segmentor.forward_train(x_t, box=box, generator=generator))
        out["logits"] = self._fuse_pair(out["logits"], prev["logits"], flow, flow_valid, size)
        if "lr" in out and "lr" in prev:
            out["lr"] = self._fuse_pair(out["lr"], prev["lr"], flow, flow_valid, size)
        if self.hr_fusion == "original" and "hr" in out and "hr" in prev:
            out["hr"] = self._fuse_pair(out["hr"], prev["hr"], flow, flow_valid, size)
        return out

    def loss(
        self, outputs: dict[str, Any], label: Tensor, weight: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The base segmentor's loss on the fused outputs (HRDA: 0.9 fused + 0.1 HR crop)."""
        return self.segmentor.loss(outputs, label, weight)

    # ------------------------------------------------------------------ inference

    def inference(self, inputs: Pair) -> Tensor:
        """Fused logits ``[B, K, H, W]`` of a pair (teacher pseudo-labels, test windows).

        Both frames go through the base ``inference`` in one batch ``[2B, 3, H, W]`` (as the
        original's stacked batch); the t−k logits are warped onto t (``compat_unwarped``: not).
        """
        x_t, x_tk, flow, size = self._check_pair(inputs)
        z_t, z_tk = self.segmentor.inference(torch.cat((x_t, x_tk), dim=0)).chunk(2, dim=0)
        z_t, z_tk = resize(z_t, size), resize(z_tk, size)
        if self.compat_unwarped:
            return self.fuse(z_t, z_tk)
        return self.fuse(z_t, self.warp(z_tk, z_t, flow, inputs.valid))

    def predict(
        self,
        inputs: Pair,
        mode: str = "whole",
        crop: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> Tensor:
        """Test-time logits ``[B, K, H, W]`` of frame t: ``whole`` or batched ``slide`` windows.

        Sliding windows cut both frames, the flow and its validity identically (flow values are
        unchanged by cropping: they stay in pixels); a vector pointing outside its window is
        invalid inside that window and falls back per ``invalid_fill``. Window logits are
        averaged as for the base segmentors.
        """
        check_predict_mode(mode, crop, stride)
        if self.compat_single_frame_eval:
            return self.segmentor.predict(inputs.single(), mode, crop, stride)
        if mode == "whole":
            return self.inference(inputs)
        x_t, x_tk, flow, _ = self._check_pair(inputs)
        flow_valid = inputs.valid
        c = x_t.shape[1]
        parts = [x_t, x_tk, flow.to(x_t.dtype)]
        if flow_valid is not None:
            parts.append(flow_valid[:, None].to(x_t.dtype))
        stacked = torch.cat(parts, dim=1)  # [B, 2c + 2 (+ 1), H, W]

        def window(s: Tensor) -> Tensor:
            valid = s[:, 2 * c + 2] > 0.5 if flow_valid is not None else None
            return self.inference(Pair(s[:, :c], s[:, c : 2 * c], s[:, 2 * c : 2 * c + 2], valid))

        return slide(window, stacked, crop, stride)
