"""DACS self-training, as extended by DAFormer (FD), HRDA (through the segmentor), MIC and the
video techniques of Unified VideoDA.

One iteration (``image_da_core.md`` §4.1, ``video_techniques.md`` §7.1), each loss
back-propagated at once, then one optimizer step by the trainer:

1. the EMA teacher is updated (``before_step``; the discriminator's lr too);
2. source loss, plus the ImageNet feature distance;
3. the teacher labels target frame t (one scalar quality weight, margins masked);
4. ``method.refine``: from ``refine.begin`` on, the teacher also labels frame t−k, which is warped
   onto frame t and refined (:class:`~vidda.uda.video_pl.PLRefiner`); that label is trained with
   weight ``refine.l_warp``;
5. the ordinary target loss on frame t's unrefined label, weight 1 (``refine.l_mix`` when
   refinement is on);
6. MIC on a block-masked, colour-augmented target (always frame t's unrefined label);
7. ``method.discriminator``: the video-discriminator step
   (:class:`~vidda.uda.adversarial.Adversary`).

Target losses train on a ClassMix of source and target (``mix: class``; strong augmentation) or on
the target as is (``mix: none``). A two-frame student (ACCEL) gets frame t, frame t−k and the flow
t → t−k for every forward; ClassMix then pastes the source with one mask into both frames and the
flow ("consistent mixup", ``consistent_mix``), and its teacher fuses the warped t−k logits.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidda.config.schema import Config
from vidda.models.segmentors.accel import ACCEL
from vidda.uda.adversarial import Adversary
from vidda.uda.augment import StrongAugParams, strong_augment
from vidda.uda.clip_view import ClipView, Pair, target_previous_offset
from vidda.uda.fd import feature_distance
from vidda.uda.method import Method, StepContext
from vidda.uda.mic import block_mask, mask_images
from vidda.uda.mix import class_mix_masks, mix, mix_flows
from vidda.uda.normalize import denormalize
from vidda.uda.refine import PL, RefineSchedule
from vidda.uda.teacher import EMATeacher
from vidda.uda.video_pl import PLRefiner, pl_accuracy, teacher_pseudo_label

Logs = dict[str, Tensor]


class DACS(Method):
    """DACS with FD (``method.fd``), MIC (``method.mic``), pseudo-label refinement
    (``method.refine``), the video discriminator (``method.discriminator``) and ACCEL students."""

    uses_target = True

    def __init__(self, student: nn.Module, student_forward: nn.Module | None, cfg: Config):
        super().__init__(student, student_forward)
        m = cfg.method
        self.cfg = m
        self.k = m.frame_distance
        self.two_frame = isinstance(student, ACCEL)
        self.base = student.segmentor if self.two_frame else student
        self.teacher = EMATeacher(student, alpha=m.ema_alpha)
        self.imnet: nn.Module | None = None
        if m.fd.enabled:  # a frozen copy of the (ImageNet-initialised) backbone
            self.imnet = copy.deepcopy(self.base.backbone).eval().requires_grad_(False)
        self.aug = StrongAugParams(m.color_jitter_p, m.color_jitter_s, m.blur)
        self.aug_per_frame = cfg.compat.mixup_aug_per_frame
        self.src_view = ClipView(cfg.data.source.offsets, "data.source")
        self.tgt_view = ClipView(cfg.data.target.offsets, "data.target")
        self.tgt_prev = target_previous_offset(cfg, self.two_frame)
        self.refiner: PLRefiner | None = None
        self.schedule = RefineSchedule(l_warp_lambda=0.0, l_mix_lambda=1.0, begin=0)
        if m.refine.enabled:  # trained mixed like the other target losses (`mix`)
            self.refiner = PLRefiner(m.refine, cfg.compat.original_warp)
            self.schedule = RefineSchedule(m.refine.l_warp, m.refine.l_mix, m.refine.begin)
        self.adversary: Adversary | None = None
        if m.discriminator.enabled:
            self.adversary = Adversary(m.discriminator, cfg.model.num_classes,
                                       cfg.compat.joint_softmax, cfg.schedule.iters)  # fmt: skip

    # ------------------------------------------------------------------ Method API

    def extra_state(self) -> dict[str, nn.Module]:
        state: dict[str, nn.Module] = {"teacher": self.teacher.model}
        if self.imnet is not None:
            state["imnet"] = self.imnet
        if self.adversary is not None:
            state["discriminator"] = self.adversary.disc
        return state

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {} if self.adversary is None else {"discriminator": self.adversary.optimizer}

    def train(self, mode: bool = True) -> DACS:
        super().train(mode)
        if self.imnet is not None:
            self.imnet.eval()  # BN running statistics, no drop-path (as the original)
        return self

    def before_step(self, step: int) -> None:
        self.teacher.update(self.student, step)
        if self.adversary is not None:
            self.adversary.set_lr(step)

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> tuple[Logs, Logs]:
        src, tgt = batch["source"], batch["target"]
        s_in, t_in = self._inputs(src, self.src_view), self._inputs(tgt, self.tgt_view)
        y_s = src["label"].long()
        logs: Logs = {}
        panels: Logs = {}

        # (2) source, feature distance on the same graph
        out = self._forward(s_in, ctx.generator)
        losses = self.student.loss(out, y_s)
        loss = sum(losses.values())
        logs.update({f"{k}_src": v.detach() for k, v in losses.items()})
        if self.imnet is not None:
            fd = self.cfg.fd.weight * self._feature_distance(out, s_in.x, y_s)
            logs["loss_fd"] = fd.detach()
            loss = loss + fd
        ctx.backward(loss)

        # (3) pseudo-label of target frame t; its accuracy against the target ground truth
        # (NaN for a crop without labelled pixels; ground truth is read only for logging and
        # by the oracle strategy)
        with_probs = self.refiner is not None and self.refiner.needs_probs
        cur = self._pseudo_label(t_in, tgt, with_probs)
        gt = tgt["label"]
        logs["pl_weight"] = cur.weight.mean().detach()
        logs["pl_acc_raw"] = pl_accuracy(cur.label, gt)[0]

        # (4) refined pseudo-label, (5) ordinary target loss
        w_warp, w_mix = self.schedule.target_loss_weights(ctx.step)
        if self.refiner is not None and w_warp > 0:
            label, weight = self._refined(cur, tgt, t_in, gt, with_probs, y_s.shape[-2])
            logs["pl_acc_refined"], logs["pl_coverage_refined"] = pl_accuracy(label, gt)
            logs.update(self._target_loss("warp", label, weight, w_warp, s_in, t_in, y_s,
                                          ctx, panels))  # fmt: skip
            if ctx.visuals:
                panels["refined_label"] = label[0]
        if w_mix > 0:
            logs.update(self._target_loss("mix", cur.label, cur.weight, w_mix, s_in, t_in, y_s,
                                          ctx, panels))  # fmt: skip

        # (6) masked image consistency
        if self.cfg.mic.enabled:
            logs.update(self._mic(t_in, cur, ctx))

        # (7) video discriminator
        if self.adversary is not None:
            src_pairs, tgt_pairs = [s_in], [t_in]
            if self.adversary.disc.video:
                src_pairs.append(self._prev_inputs(src, self.src_view, -self.k))
                tgt_pairs.append(self._prev_inputs(tgt, self.tgt_view, self.tgt_prev))
            logs.update(self.adversary.train_step(
                lambda p: self._forward(p, ctx.generator)["logits"], src_pairs, tgt_pairs,
                ctx.backward,
            ))  # fmt: skip
            logs["lr_disc"] = torch.tensor(self.adversary.optimizer.param_groups[0]["lr"])

        if ctx.visuals:
            panels.update(source=src["frames"][0, self.src_view.index(0)], source_label=y_s[0],
                          target=tgt["frames"][0, self.tgt_view.index(0)],
                          pseudo_label=cur.label[0],
                          prediction=out["logits"][0].argmax(0))  # fmt: skip
        return logs, panels

    # ------------------------------------------------------------------ inputs and forwards

    def _inputs(self, clip: dict[str, Any], view: ClipView) -> Pair:
        """Frame t (two-frame students: with frame t−k and the flow t → t−k)."""
        if self.two_frame:
            return view.pair(clip, 0, self.k)
        return Pair(view.frame(clip, 0))

    def _prev_inputs(self, clip: dict[str, Any], view: ClipView, prev: int) -> Pair:
        """Frame t−k as the model sees it: alone, or (two-frame) with t−2k and the flow between.

        ``prev`` is the canonical offset of "frame t−k" (``-k``; the BDDVid alias ``-2k``).
        """
        if self.two_frame:
            return view.pair(clip, -self.k, self.k)
        return Pair(view.frame(clip, prev))

    def _forward(self, inp: Pair, generator: torch.Generator) -> dict[str, Any]:
        """The student's training forward (through its DDP wrapper)."""
        if inp.prev is None:
            return self.student_forward(inp.x, generator=generator)
        return self.student_forward(inp.x, x_tk=inp.prev, flow=inp.flow, flow_valid=inp.valid,
                                    generator=generator)  # fmt: skip

    def _pseudo_label(self, inp: Pair, clip: dict[str, Any], with_probs: bool) -> PL:
        return teacher_pseudo_label(self.teacher.model, inp, self.cfg.pseudo_threshold,
                                    clip["pl_valid"], with_probs)  # fmt: skip

    def _refined(
        self, cur: PL, tgt: dict[str, Any], t_in: Pair, gt: Tensor, with_probs: bool,
        source_height: int,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Frame t−k's pseudo-label warped onto frame t and refined: label, weight ``[B, H, W]``."""
        prev_in = self._prev_inputs(tgt, self.tgt_view, self.tgt_prev)
        prev = self._pseudo_label(prev_in, tgt, with_probs)  # key-frame margins, as the original
        if t_in.flow is not None:
            flow, valid = t_in.flow, t_in.valid
        else:
            flow, valid = self.tgt_view.flow(tgt, 0, self.k)
        assert self.refiner is not None
        return self.refiner(cur, prev, flow, valid, gt, source_crop_height=source_height)

    # ------------------------------------------------------------------ losses

    def _target_loss(
        self, name: str, label: Tensor, weight: Tensor, scale: float, s_in: Pair, t_in: Pair,
        y_s: Tensor, ctx: StepContext, panels: Logs,
    ) -> Logs:  # fmt: skip
        """``scale`` × the student's loss on a target label ``[B, H, W]`` with weight ``[B, H, W]``:
        ClassMixed with the source (``mix: class``) or on the target as is."""
        if self.cfg.mix == "class":
            masks = class_mix_masks(y_s, ctx.rng)
            inp = self._mixed_inputs(masks, s_in, t_in, ctx.generator)
            label = mix(masks, y_s, label)
            weight = mix(masks, torch.ones_like(weight), weight)
        else:
            inp = t_in
        out = self._forward(inp, ctx.generator)
        losses = self.student.loss(out, label, weight)
        ctx.backward(scale * sum(losses.values()))
        if ctx.visuals:
            tag = "mixed" if name == "mix" else f"mixed_{name}"
            panels.update({tag: _to_uint8(inp.x[0]), f"{tag}_label": label[0]})
        return {f"{k}_{name}": scale * v.detach() for k, v in losses.items()}

    def _mixed_inputs(
        self, masks: Tensor, s: Pair, t: Pair, generator: torch.Generator
    ) -> Pair:
        """ClassMix ``masks`` ``[B, H, W]`` pasting source onto target, then strong augmentation.

        Two-frame inputs: the same mask for frame t−k and the flow (``consistent_mix``; else frame
        t−k and the flow stay the target's), and one augmentation draw per clip for both frames
        (``compat.mixup_aug_per_frame``: drawn per frame, as the original).
        """
        x = mix(masks, s.x, t.x)
        if s.prev is None or t.prev is None:
            return Pair(strong_augment(x, self.aug, generator, per_image=True))
        if self.cfg.consistent_mix:
            prev = mix(masks, s.prev, t.prev)
            assert s.flow is not None and s.valid is not None and t.flow is not None
            flow, valid = mix_flows(masks, (s.flow, s.valid), (t.flow, t.valid))
        else:
            prev, flow, valid = t.prev, t.flow, t.valid
        if self.aug_per_frame:
            x = strong_augment(x, self.aug, generator, per_image=True)
            prev = strong_augment(prev, self.aug, generator, per_image=True)
        else:
            clip = strong_augment(torch.stack((x, prev), dim=1), self.aug, generator,
                                  per_image=True)  # fmt: skip
            x, prev = clip.unbind(dim=1)
        return Pair(x, prev, flow, valid)

    def _mic(self, t_in: Pair, cur: PL, ctx: StepContext) -> Logs:
        """MIC: colour-augment and block-mask the target (both frames alike), train on frame t's
        unrefined pseudo-label."""
        aug = StrongAugParams(self.aug.color_jitter_p, self.aug.color_jitter_s, blur=True)
        frames = t_in.x if t_in.prev is None else torch.stack((t_in.x, t_in.prev), dim=1)
        frames = strong_augment(frames, aug, ctx.generator)
        x = t_in.x
        m = block_mask(x.shape[:1] + x.shape[2:], self.cfg.mic.block_size,
                       self.cfg.mic.mask_ratio, ctx.generator).to(x.device)  # fmt: skip
        masked = mask_images(frames, m)
        if t_in.prev is None:
            inp = Pair(masked)
        else:
            inp = Pair(masked[:, 0], masked[:, 1], t_in.flow, t_in.valid)
        out = self._forward(inp, ctx.generator)
        losses = self.student.loss(out, cur.label, cur.weight)
        ctx.backward(self.cfg.mic.weight * sum(losses.values()))
        return {f"{k}_mic": self.cfg.mic.weight * v.detach() for k, v in losses.items()}

    def _feature_distance(self, out: dict[str, Any], x: Tensor, y: Tensor) -> Tensor:
        """FD between the student's last-stage source features and the frozen copy's, on the
        image those features came from (HRDA: the 0.5× context)."""
        assert self.imnet is not None
        feat = out["features"][-1]
        scale = getattr(self.base, "lr_scale", 1.0)
        with torch.no_grad():
            x_in = x if scale == 1.0 else F.interpolate(
                x, scale_factor=scale, mode="bilinear", align_corners=False)  # fmt: skip
            ref = self.imnet(x_in)[-1]
        return feature_distance(feat, ref, y, self.cfg.fd.classes, self.cfg.fd.min_ratio)


def _to_uint8(x: Tensor) -> Tensor:
    return (denormalize(x) * 255).clamp(0, 255).to(torch.uint8)
