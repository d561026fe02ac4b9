"""HRDA: a low-resolution context pass, a high-resolution detail crop, class-wise scale attention.

Training (one call of ``forward_train``), for images [B, 3, H, W]:
the context is the image at ``lr_scale`` (0.5); one detail crop of ``hr_crop`` pixels is cut from
the full-resolution image (one box for the whole batch, offsets multiples of ``crop_divisible``).
The shared backbone encodes both; the head gives S_lr and S_hr, the attention head
A = sigmoid(att(F_lr)), masked to the crop's footprint in training. Fused logits:
S_f = up(A) · place(S_hr) + up((1 − A) · S_lr), the product formed *before* upsampling.
Loss: (1 − λ_hr − λ_lr)·CE(S_f) + λ_hr·CE(S_hr on the crop) (+ λ_lr·CE(S_lr)).

Inference (``inference``): no mask; the high-resolution logits come from overlapping, batched
``hr_crop`` windows over the whole image (stride hr_crop / 2), averaged at the head's stride.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidda.models.losses import seg_loss
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.inputs import Pair, as_inputs
from vidda.models.segmentors.resize import rescale, resize
from vidda.models.segmentors.sliding import slide

Box = tuple[int, int, int, int]  # y1, y2, x1, x2 in full-resolution pixels


class HRDA(EncoderDecoder):
    """Multi-resolution segmentor (HRDA) around one backbone and one decode head.

    Args:
        backbone, head: as for ``EncoderDecoder``; the head is shared by both scales.
        attention_head: head predicting the scale attention (K or 1 channels), or None with
            ``fixed_attention`` set.
        lr_scale, hr_scale: the context and detail scales (0.5 and 1 in every paper config).
        hr_crop: detail crop (H, W) in pixels of the ``hr_scale`` image.
        crop_divisible: detail-crop offsets are multiples of this.
        hr_loss_weight, lr_loss_weight: λ_hr (0.1) and λ_lr (0).
        hr_slide_overlap: at inference, HR windows overlap by half (True) or tile (False).
        fixed_attention: a constant attention instead of the attention head (ablations:
            0 = context only, 1 = detail only).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        attention_head: nn.Module | None,
        lr_scale: float = 0.5,
        hr_scale: float = 1.0,
        hr_crop: tuple[int, int] = (512, 512),
        crop_divisible: int = 8,
        hr_loss_weight: float = 0.1,
        lr_loss_weight: float = 0.0,
        hr_slide_overlap: bool = True,
        fixed_attention: float | None = None,
    ) -> None:
        super().__init__(backbone, head)
        if (attention_head is None) == (fixed_attention is None):
            raise ValueError("HRDA needs exactly one of attention_head and fixed_attention")
        if not 0 < lr_scale <= hr_scale:
            raise ValueError(f"HRDA scales must satisfy 0 < lr_scale <= hr_scale, got "
                             f"{lr_scale}, {hr_scale}")  # fmt: skip
        self.scale_attention = attention_head
        self.lr_scale, self.hr_scale = lr_scale, hr_scale
        self.hr_crop = tuple(hr_crop)
        self.crop_divisible = crop_divisible
        self.hr_loss_weight, self.lr_loss_weight = hr_loss_weight, lr_loss_weight
        self.hr_slide_overlap = hr_slide_overlap
        self.fixed_attention = fixed_attention

    @property
    def feature_scale(self) -> float:
        """``forward_train``'s ``features`` are the context's: ``lr_scale``."""
        return float(self.lr_scale)

    # ------------------------------------------------------------------ pieces

    def _attention(self, features: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """A = sigmoid(attention head) [B, K or 1, h, w], or the fixed constant."""
        if self.scale_attention is None:
            return torch.full_like(like[:, :1], float(self.fixed_attention))
        return torch.sigmoid(self.scale_attention(features))

    def draw_crop_box(self, h: int, w: int, generator: torch.Generator | None = None) -> Box:
        """One detail-crop box for an [h, w] image (the original's offsets: 0..M rounded down
        to ``crop_divisible``, M = size − crop; so with M = 512 the largest offset is 504)."""
        ch, cw = min(self.hr_crop[0], h), min(self.hr_crop[1], w)
        d = self.crop_divisible

        def offset(margin: int) -> int:
            n = (margin + 1) // d
            return int(torch.randint(0, max(n, 1), (1,), generator=generator)) * d

        y, x = offset(h - ch), offset(w - cw)
        return y, y + ch, x, x + cw

    def _fuse(
        self, s_lr: torch.Tensor, att: torch.Tensor, s_hr_canvas: torch.Tensor
    ) -> torch.Tensor:
        """S_f = up(A) · Ŝ_hr + up((1 − A) · S_lr), at the detail scale's logit resolution."""
        size = s_hr_canvas.shape[-2:]
        return resize(att, size) * s_hr_canvas + resize((1 - att) * s_lr, size)

    # ------------------------------------------------------------------ training

    def forward_train(
        self,
        inputs: Pair | torch.Tensor,
        box: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Logits of one training pass over frame t, images ``x`` [B, 3, H, W].

        Returns ``logits`` (fused S_f at H·hr_scale / os), ``lr`` ((1 − A)·S_lr), ``hr`` (S_hr of
        the crop), ``attention`` (masked A), ``box`` and ``features`` (the context features).
        """
        x = as_inputs(inputs).x
        os_ = self.out_stride
        x_hr = rescale(x, self.hr_scale)
        hh, hw = x_hr.shape[-2:]
        if box is None:
            box = self.draw_crop_box(hh, hw, generator)
        y1, y2, x1, x2 = box
        f_lr = self.extract(rescale(x, self.lr_scale))
        s_lr = self.decode_head(f_lr)
        att = self._attention(f_lr, s_lr)
        s_hr = self.decode_head(self.extract(x_hr[:, :, y1:y2, x1:x2]))
        # The attention only looks at the crop's footprint; the original truncates the scaled
        # coordinates with int(), which can be one LR cell off when os / lr_scale > divisible.
        f = os_ * self.hr_scale / self.lr_scale
        mask = torch.zeros_like(att)
        mask[:, :, int(y1 / f) : int(y2 / f), int(x1 / f) : int(x2 / f)] = 1
        att = att * mask
        size = (hh // os_, hw // os_)
        canvas = s_hr.new_zeros((*s_hr.shape[:2], *size))
        canvas[:, :, y1 // os_ : y2 // os_, x1 // os_ : x2 // os_] = s_hr
        return {
            "logits": self._fuse(s_lr, att, canvas),
            "lr": (1 - att) * s_lr,
            "hr": s_hr,
            "attention": att,
            "box": box,
            "features": f_lr,
        }

    def loss(
        self, outputs: dict[str, Any], label: torch.Tensor, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``loss_seg`` = (1 − λ_hr − λ_lr)·CE(fused), ``loss_seg_hr`` = λ_hr·CE(S_hr, crop)
        (and ``loss_seg_lr`` = λ_lr·CE(S_lr) when λ_lr > 0); each entry is already weighted."""
        y1, y2, x1, x2 = outputs["box"]
        scale = self.hr_scale
        crop_label = self._crop_map(label, (y1, y2, x1, x2), scale)
        crop_weight = None
        if isinstance(weight, torch.Tensor) and weight.dim() == label.dim():
            crop_weight = self._crop_map(weight, (y1, y2, x1, x2), scale)
        elif weight is not None:
            crop_weight = weight
        fused_w = 1.0 - self.hr_loss_weight - self.lr_loss_weight
        losses = {"loss_seg": fused_w * seg_loss(outputs["logits"], label, weight)}
        if self.hr_loss_weight > 0:
            losses["loss_seg_hr"] = self.hr_loss_weight * seg_loss(
                outputs["hr"], crop_label, crop_weight
            )
        if self.lr_loss_weight > 0:
            losses["loss_seg_lr"] = self.lr_loss_weight * seg_loss(outputs["lr"], label, weight)
        return losses

    @staticmethod
    def _crop_map(m: torch.Tensor, box: Box, scale: float) -> torch.Tensor:
        """The crop of a full-resolution map [B, H, W] that the detail box covers."""
        y1, y2, x1, x2 = (int(round(c / scale)) for c in box)
        return m[..., y1:y2, x1:x2]

    # ------------------------------------------------------------------ inference

    def inference(self, inputs: Pair | torch.Tensor) -> torch.Tensor:
        """Fused logits at the resolution of frame t [B, K, H, W] (teacher and test windows)."""
        x = as_inputs(inputs).x
        os_ = self.out_stride
        f_lr = self.extract(rescale(x, self.lr_scale))
        s_lr = self.decode_head(f_lr)
        att = self._attention(f_lr, s_lr)
        x_hr = rescale(x, self.hr_scale)
        crop = (min(self.hr_crop[0], x_hr.shape[-2]), min(self.hr_crop[1], x_hr.shape[-1]))
        stride = (crop[0] // 2, crop[1] // 2) if self.hr_slide_overlap else crop
        s_hr = slide(self.logits, x_hr, crop, stride, out_stride=os_)
        return resize(self._fuse(s_lr, att, s_hr), x.shape[-2:])
