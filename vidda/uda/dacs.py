"""Self-training with an EMA teacher (DACS), composed with the techniques built around it:
DAFormer's feature distance, MIC, flow-based pseudo-label refinement, the video discriminator and
two-frame (ACCEL) students; HRDA enters through the segmentor.

One iteration, each loss back-propagated at once, then one optimizer step by the trainer:

1. the EMA teacher is updated (``before_step``; the discriminator's lr too);
2. source loss, plus the ImageNet feature distance (``fd``);
3. the teacher labels target frame t (one scalar quality weight, margins masked);
4. ``refiner``: from the schedule's first step on, the teacher also labels frame t−k, which is
   warped onto frame t and refined (:class:`~vidda.uda.video_pl.PLRefiner`); that label is
   trained with the schedule's warp weight;
5. the ordinary target loss on frame t's unrefined label, weight 1 (the schedule's mix weight
   when refinement is on);
6. ``mic``: masked image consistency on frame t's unrefined label;
7. ``adversary``: the video-discriminator step (:class:`~vidda.uda.adversarial.Adversary`).

Target losses train on a ClassMix of source and target (``mixer``, :mod:`vidda.uda.mixed_target`)
or on the target as is (no mixer). A two-frame student (ACCEL) gets frame t, frame t−k and the
flow t → t−k for every forward, and its teacher fuses the warped t−k logits. The parts are built
from a config by :func:`vidda.uda.methods.build_method`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vidda.models.normalize import denormalize
from vidda.models.segmentors.inputs import Pair
from vidda.uda.adversarial import Adversary
from vidda.uda.clip_view import ClipView
from vidda.uda.fd import ImageNetFD
from vidda.uda.method import Method, StepContext
from vidda.uda.mic import MaskedConsistency
from vidda.uda.mixed_target import TargetMixer
from vidda.uda.refine import PL, RefineSchedule
from vidda.uda.teacher import EMATeacher
from vidda.uda.video_pl import PLRefiner, pl_accuracy, teacher_pseudo_label

Logs = dict[str, Tensor]


@dataclass
class TargetClips:
    """Where the frames of a clip batch are, and which frame is "t−k".

    Attributes:
        source, target: the two datasets' clip views.
        frame_distance: k.
        target_prev: canonical offset of the target's "frame t−k" for the teacher (``-k``; the
            original's BDDVid alias ``-2k``).
        target_labelled: whether target clips carry ground truth (read for logging the
            pseudo-labels' accuracy and by the ``oracle`` strategy); False for the user's videos.
    """

    source: ClipView
    target: ClipView
    frame_distance: int = 1
    target_prev: int = -1
    target_labelled: bool = True


class DACS(Method):
    """DACS self-training composed with the parts handed in (each None when off).

    Args:
        student: the segmentor trained; ``student_forward`` its DDP wrapper (or None).
        teacher: the EMA teacher of ``student``.
        clips: the clip views and frame offsets.
        pseudo_threshold: the teacher's confidence threshold τ of the quality weight.
        mixer: ClassMix + strong augmentation of the target losses' inputs; None trains on the
            target as is.
        fd: the ImageNet feature distance on the source features.
        mic: the masked target of the MIC loss.
        refiner, schedule: pseudo-label refinement and the weights of the target losses.
        adversary: the video discriminator.
    """

    uses_target = True

    def __init__(
        self,
        student: nn.Module,
        student_forward: nn.Module | None,
        teacher: EMATeacher,
        clips: TargetClips,
        pseudo_threshold: float = 0.968,
        mixer: TargetMixer | None = None,
        fd: ImageNetFD | None = None,
        mic: MaskedConsistency | None = None,
        refiner: PLRefiner | None = None,
        schedule: RefineSchedule | None = None,
        adversary: Adversary | None = None,
    ) -> None:
        super().__init__(student, student_forward)
        self.teacher = teacher
        self.clips = clips
        self.k = clips.frame_distance
        self.two_frame = bool(student.two_frame)
        self.pseudo_threshold = pseudo_threshold
        self.mixer, self.fd, self.mic = mixer, fd, mic
        self.refiner = refiner
        self.schedule = schedule or RefineSchedule(l_warp_lambda=0.0, l_mix_lambda=1.0, begin=0)
        self.adversary = adversary

    # ------------------------------------------------------------------ Method API

    def extra_state(self) -> dict[str, nn.Module]:
        state: dict[str, nn.Module] = {"teacher": self.teacher.model}
        if self.fd is not None:
            state["imnet"] = self.fd.imnet
        if self.adversary is not None:
            state["discriminator"] = self.adversary.disc
        return state

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {} if self.adversary is None else {"discriminator": self.adversary.optimizer}

    def before_step(self, step: int) -> None:
        self.teacher.update(self.student, step)
        if self.adversary is not None:
            self.adversary.set_lr(step)

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> tuple[Logs, Logs]:
        src, tgt = batch["source"], batch["target"]
        views = self.clips
        s_in, t_in = self._inputs(src, views.source), self._inputs(tgt, views.target)
        y_s = src["label"].long()
        logs: Logs = {}
        panels: Logs = {}

        # (2) source, feature distance on the same graph
        out = self._forward(s_in, ctx.generator)
        losses = self.student.loss(out, y_s)
        loss = sum(losses.values())
        logs.update({f"{k}_src": v.detach() for k, v in losses.items()})
        if self.fd is not None:
            fd = self.fd(out["features"][-1], s_in.x, y_s)
            logs["loss_fd"] = fd.detach()
            loss = loss + fd
        ctx.backward(loss)

        # (3) pseudo-label of target frame t; its accuracy against the target ground truth
        # where there is one (NaN for a crop without labelled pixels; ground truth is read only
        # for logging and by the oracle strategy)
        with_probs = self.refiner is not None and self.refiner.needs_probs
        cur = self._pseudo_label(t_in, tgt, with_probs)
        gt = tgt["label"] if views.target_labelled else None
        logs["pl_weight"] = cur.weight.mean().detach()
        if gt is not None:
            logs["pl_acc_raw"] = pl_accuracy(cur.label, gt)[0]

        # (4) refined pseudo-label, (5) ordinary target loss
        w_warp, w_mix = self.schedule.target_loss_weights(ctx.step)
        if self.refiner is not None and w_warp > 0:
            label, weight = self._refined(cur, tgt, t_in, gt, with_probs, y_s.shape[-2])
            if gt is not None:
                logs["pl_acc_refined"], logs["pl_coverage_refined"] = pl_accuracy(label, gt)
            logs.update(self._target_loss("warp", label, weight, w_warp, s_in, t_in, y_s,
                                          ctx, panels))  # fmt: skip
            if ctx.visuals:
                panels["refined_label"] = label[0]
        if w_mix > 0:
            logs.update(self._target_loss("mix", cur.label, cur.weight, w_mix, s_in, t_in, y_s,
                                          ctx, panels))  # fmt: skip

        # (6) masked image consistency
        if self.mic is not None:
            logs.update(self._mic(t_in, cur, ctx))

        # (7) video discriminator
        if self.adversary is not None:
            src_pairs, tgt_pairs = [s_in], [t_in]
            if self.adversary.disc.video:
                src_pairs.append(self._prev_inputs(src, views.source, -self.k))
                tgt_pairs.append(self._prev_inputs(tgt, views.target, views.target_prev))
            logs.update(self.adversary.train_step(
                lambda p: self._forward(p, ctx.generator)["logits"], src_pairs, tgt_pairs,
                ctx.backward,
            ))  # fmt: skip
            logs["lr_disc"] = torch.tensor(self.adversary.optimizer.param_groups[0]["lr"])

        if ctx.visuals:
            panels.update(source=views.source.frame(src, 0)[0], source_label=y_s[0],
                          target=views.target.frame(tgt, 0)[0], pseudo_label=cur.label[0],
                          prediction=out["logits"][0].argmax(0))  # fmt: skip
        return logs, panels

    # ------------------------------------------------------------------ inputs and forwards

    def _inputs(self, clip: dict[str, Any], view: ClipView) -> Pair:
        """Prepared frame t (two-frame students: with frame t−k and the flow t → t−k)."""
        if self.two_frame:
            return self.student.prepare(view.pair(clip, 0, self.k))
        return self.student.prepare(Pair(view.frame(clip, 0)))

    def _prev_inputs(self, clip: dict[str, Any], view: ClipView, prev: int) -> Pair:
        """Frame t−k as the model sees it: alone, or (two-frame) with t−2k and the flow between.

        ``prev`` is the canonical offset of "frame t−k" (``-k``; the BDDVid alias ``-2k``).
        """
        if self.two_frame:
            return self.student.prepare(view.pair(clip, -self.k, self.k))
        return self.student.prepare(Pair(view.frame(clip, prev)))

    def _forward(self, inp: Pair, generator: torch.Generator) -> dict[str, Any]:
        """The student's training forward (through its DDP wrapper)."""
        return self.student_forward(inp, generator=generator)

    def _pseudo_label(self, inp: Pair, clip: dict[str, Any], with_probs: bool) -> PL:
        return teacher_pseudo_label(self.teacher.model, inp, self.pseudo_threshold,
                                    clip["pl_valid"], with_probs)  # fmt: skip

    def _refined(
        self, cur: PL, tgt: dict[str, Any], t_in: Pair, gt: Tensor | None, with_probs: bool,
        source_height: int,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Frame t−k's pseudo-label warped onto frame t and refined: label, weight ``[B, H, W]``."""
        views = self.clips
        prev_in = self._prev_inputs(tgt, views.target, views.target_prev)
        prev = self._pseudo_label(prev_in, tgt, with_probs)  # key-frame margins, as the original
        if t_in.flow is not None:
            flow, valid = t_in.flow, t_in.valid
        else:
            flow, valid = views.target.flow(tgt, 0, self.k)
        assert self.refiner is not None
        return self.refiner(cur, prev, flow, valid, gt, source_crop_height=source_height)

    # ------------------------------------------------------------------ losses

    def _target_loss(
        self, name: str, label: Tensor, weight: Tensor, scale: float, s_in: Pair, t_in: Pair,
        y_s: Tensor, ctx: StepContext, panels: Logs,
    ) -> Logs:  # fmt: skip
        """``scale`` × the student's loss on a target label ``[B, H, W]`` with weight ``[B, H, W]``:
        ClassMixed with the source (``mixer``) or on the target as is."""
        inp = t_in
        if self.mixer is not None:
            inp, label, weight = self.mixer(s_in, t_in, y_s, label, weight, ctx.rng,
                                            ctx.generator)  # fmt: skip
        out = self._forward(inp, ctx.generator)
        losses = self.student.loss(out, label, weight)
        ctx.backward(scale * sum(losses.values()))
        if ctx.visuals:
            tag = "mixed" if name == "mix" else f"mixed_{name}"
            panels.update({tag: _to_uint8(inp.x[0]), f"{tag}_label": label[0]})
        return {f"{k}_{name}": scale * v.detach() for k, v in losses.items()}

    def _mic(self, t_in: Pair, cur: PL, ctx: StepContext) -> Logs:
        """MIC: train on the masked target with frame t's unrefined pseudo-label."""
        assert self.mic is not None
        out = self._forward(self.mic(t_in, ctx.generator), ctx.generator)
        losses = self.student.loss(out, cur.label, cur.weight)
        ctx.backward(self.mic.weight * sum(losses.values()))
        return {f"{k}_mic": self.mic.weight * v.detach() for k, v in losses.items()}


def _to_uint8(x: Tensor) -> Tensor:
    return (denormalize(x) * 255).clamp(0, 255).to(torch.uint8)
