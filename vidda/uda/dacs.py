"""DACS self-training, as extended by DAFormer (FD), HRDA (through the segmentor) and MIC.

One iteration (``image_da_core.md`` §4.1): the EMA teacher is updated; the source loss (+ the
ImageNet feature distance) is back-propagated; the teacher labels the target crop (one scalar
quality weight, margins masked); ClassMix pastes half of the source classes onto the target and
the strongly augmented mix is trained on; MIC trains on a block-masked, colour-augmented target.
Each loss is back-propagated at once; the trainer makes one optimizer step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidda.config.schema import MethodConfig
from vidda.uda.augment import StrongAugParams, strong_augment
from vidda.uda.fd import feature_distance
from vidda.uda.method import Method, StepContext
from vidda.uda.mic import block_mask, mask_images
from vidda.uda.mix import class_mix_masks, mix
from vidda.uda.normalize import denormalize, normalize
from vidda.uda.pseudo import pseudo_label
from vidda.uda.teacher import EMATeacher, pseudo_mode


class DACS(Method):
    """DACS with optional ImageNet feature distance (``cfg.fd``) and MIC (``cfg.mic``)."""

    uses_target = True

    def __init__(self, student: nn.Module, student_forward: nn.Module | None, cfg: MethodConfig):
        super().__init__(student, student_forward)
        self.cfg = cfg
        self.teacher = EMATeacher(student, alpha=cfg.ema_alpha)
        self.imnet: nn.Module | None = None
        if cfg.fd.enabled:  # a frozen copy of the (ImageNet-initialised) backbone
            self.imnet = copy.deepcopy(student.backbone).eval().requires_grad_(False)
        self.aug = StrongAugParams(cfg.color_jitter_p, cfg.color_jitter_s, cfg.blur)

    def extra_state(self) -> dict[str, nn.Module]:
        state = {"teacher": self.teacher.model}
        if self.imnet is not None:
            state["imnet"] = self.imnet
        return state

    def train(self, mode: bool = True) -> DACS:
        super().train(mode)
        if self.imnet is not None:
            self.imnet.eval()  # BN running statistics, no drop-path (as the original)
        return self

    def before_step(self, step: int) -> None:
        self.teacher.update(self.student, step)

    def train_step(
        self, batch: dict[str, Any], ctx: StepContext
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        src, tgt = batch["source"], batch["target"]
        x_s, y_s = normalize(src["frames"][:, -1]), src["label"].long()
        x_t = normalize(tgt["frames"][:, -1])
        logs: dict[str, torch.Tensor] = {}

        # (1) source, (2) feature distance on the same graph
        out = self.student_forward(x_s, generator=ctx.generator)
        losses = self.student.loss(out, y_s)
        loss = sum(losses.values())
        logs.update({f"{k}_src": v.detach() for k, v in losses.items()})
        if self.imnet is not None:
            fd = self.cfg.fd.weight * self._feature_distance(out, x_s, y_s)
            logs["loss_fd"] = fd.detach()
            loss = loss + fd
        ctx.backward(loss)

        # (3) pseudo-labels of the target crop
        with torch.no_grad(), pseudo_mode(self.teacher.model):
            pl, weight, _ = pseudo_label(
                self.teacher.model.inference(x_t), self.cfg.pseudo_threshold,
                tgt["pl_valid"].float(),
            )  # fmt: skip
        logs["pl_weight"] = weight.mean().detach()

        # (4) ClassMix + strong augmentation
        panels: dict[str, torch.Tensor] = {}
        if self.cfg.mix == "class":
            masks = class_mix_masks(y_s, ctx.rng)
            x_m = strong_augment(mix(masks, x_s, x_t), self.aug, ctx.generator, per_image=True)
            y_m = mix(masks, y_s, pl)
            w_m = mix(masks, torch.ones_like(weight), weight)
            out_m = self.student_forward(x_m, generator=ctx.generator)
            losses = self.student.loss(out_m, y_m, w_m)
            ctx.backward(sum(losses.values()))
            logs.update({f"{k}_mix": v.detach() for k, v in losses.items()})
            if ctx.visuals:
                panels.update(mixed=_to_uint8(x_m[0]), mixed_label=y_m[0])

        # (5) masked image consistency
        if self.cfg.mic.enabled:
            aug = StrongAugParams(self.aug.color_jitter_p, self.aug.color_jitter_s, blur=True)
            x_a = strong_augment(x_t, aug, ctx.generator)
            m = block_mask(x_a.shape[:1] + x_a.shape[2:], self.cfg.mic.block_size,
                           self.cfg.mic.mask_ratio, ctx.generator).to(x_a.device)  # fmt: skip
            out_k = self.student_forward(mask_images(x_a, m), generator=ctx.generator)
            losses = self.student.loss(out_k, pl, weight)
            ctx.backward(self.cfg.mic.weight * sum(losses.values()))
            logs.update({f"{k}_mic": self.cfg.mic.weight * v.detach() for k, v in losses.items()})

        if ctx.visuals:
            panels.update(source=src["frames"][0, -1], source_label=y_s[0],
                          target=tgt["frames"][0, -1], pseudo_label=pl[0],
                          prediction=out["logits"][0].argmax(0))  # fmt: skip
        return logs, panels

    def _feature_distance(self, out: dict[str, Any], x: torch.Tensor, y: torch.Tensor):
        """FD between the student's last-stage source features and the frozen copy's, on the
        image those features came from (HRDA: the 0.5× context)."""
        feat = out["features"][-1]
        scale = getattr(self.student, "lr_scale", 1.0)
        with torch.no_grad():
            x_in = x if scale == 1.0 else F.interpolate(
                x, scale_factor=scale, mode="bilinear", align_corners=False)  # fmt: skip
            ref = self.imnet(x_in)[-1]
        return feature_distance(feat, ref, y, self.cfg.fd.classes, self.cfg.fd.min_ratio)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (denormalize(x) * 255).clamp(0, 255).to(torch.uint8)
