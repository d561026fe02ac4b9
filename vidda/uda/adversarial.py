"""The video-discriminator step of a self-training iteration (its last step, after MIC).

After the segmentation losses the student predicts frames t and t−k of both domains (two-frame
students: the fused pairs (t, t−k) and (t−k, t−2k)); the generator loss on the target pair is
back-propagated into the student with D frozen, then D's loss on the detached pairs (source 0,
target 1) into D. D's parameters belong only to D's own Adam (:attr:`Adversary.optimizer`), which
the trainer steps after the segmentor's optimizer; its learning rate is set before every
iteration (:meth:`Adversary.set_lr`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vidda.config.schema import DiscriminatorConfig
from vidda.config.validate import MIN_DISCRIMINATOR_INPUT
from vidda.models.segmentors.inputs import Pair
from vidda.uda.discriminator import VideoDiscriminator

__all__ = ["Adversary"]

Predict = Callable[[Pair], Tensor]  # a pair → the student's logits [B, C, h, w]


class Adversary(nn.Module):
    """The video discriminator with its optimizer and schedule.

    Args:
        cfg: ``method.discriminator``.
        num_classes: C.
        joint_softmax: ``compat.joint_softmax`` (one softmax over both frames' 2C channels).
        total_iters: the run's iterations (D's poly decay runs over them).
    """

    def __init__(
        self, cfg: DiscriminatorConfig, num_classes: int, joint_softmax: bool, total_iters: int
    ) -> None:
        super().__init__()
        self.disc = VideoDiscriminator(
            num_classes, cfg.weight, cfg.lambda_adv, cfg.lr, (cfg.betas[0], cfg.betas[1]),
            cfg.power, cfg.min_lr, joint_softmax, cfg.video, cfg.width,
        )  # fmt: skip
        self.feature_scale = cfg.feature_scale
        self.total_iters = total_iters
        self.optimizer = self.disc.build_optimizer()

    def set_lr(self, step: int) -> float:
        """D's poly learning rate before iteration ``step``."""
        return self.disc.set_lr(step, self.total_iters)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """D's input size for ``height × width`` crops: ``feature_scale`` × the crop."""
        size = (int(height * self.feature_scale), int(width * self.feature_scale))
        if min(size) < MIN_DISCRIMINATOR_INPUT:
            raise ValueError(f"discriminator input {size} for {height}x{width} crops is below "
                             f"{MIN_DISCRIMINATOR_INPUT} pixels per side; use larger crops or "
                             "feature_scale")  # fmt: skip
        return size

    def train_step(
        self,
        predict: Predict,
        source: Sequence[Pair],
        target: Sequence[Pair],
        backward: Callable[[Tensor], None],
    ) -> dict[str, Tensor]:
        """Generator and discriminator losses, each back-propagated with ``backward``.

        Args:
            predict: the student's training forward, pair → logits.
            source, target: the inputs for frames t and t−k (only frame t for a single-frame
                discriminator), prepared (normalised) inputs.
            backward: back-propagates a loss (AMP-scaled by the trainer).
        Returns:
            ``loss_adv`` (generator) and ``loss_disc`` (discriminator), detached.
        """
        n = 2 if self.disc.video else 1
        size = self.input_size(*target[0].x.shape[-2:])
        with torch.no_grad():  # source predictions only feed D's own (detached) loss
            d_src = self.disc.make_input(*[predict(p) for p in source[:n]], size=size)
        d_trg = self.disc.make_input(*[predict(p) for p in target[:n]], size=size)
        g_loss = self.disc.generator_loss(d_trg)
        backward(g_loss)
        d_loss = self.disc.discriminator_loss(d_src, d_trg)
        backward(d_loss)
        self._average_gradients()
        return {"loss_adv": g_loss.detach(), "loss_disc": d_loss.detach()}

    def _average_gradients(self) -> None:
        """D is not wrapped in DDP: average its gradients over the ranks by hand."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        for p in self.disc.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(world)
