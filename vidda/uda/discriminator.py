"""Video discriminator: adversarial alignment of frame pairs.

A fully-convolutional patch discriminator (AdaptSegNet's ``FCDiscriminator``) sees the class
probabilities of two frames of one clip, frame t and frame t−k, stacked along the channels, and
tells source pairs (label 0) from target pairs (label 1) with least-squares GAN losses:

* input (:func:`discriminator_input`): both frames' logits bilinearly resized to ``size`` (the
  original: ``feature_scale`` 0.5 × the training crop), then a **per-frame** softmax (default) or
  the original's **joint** softmax over all 2C channels (``joint_softmax=True``, the quirk
  ``compat.joint_softmax``). No flow alignment of the two frames, as in the original.
* generator loss (:meth:`VideoDiscriminator.generator_loss`), back-propagated into the segmentor
  through the target predictions, D frozen: ``s · λ · MSE(D(target pair), 0)``, s = 0.1 (the
  paper's ``--adv-scale``), λ = 0.001 (``lambda_adv_target['main']``).
* discriminator loss (:meth:`VideoDiscriminator.discriminator_loss`), on detached predictions:
  ``s · [0.5 · MSE(D(source pair), 0) + 0.5 · MSE(D(target pair), 1)]``.
* D has its own Adam (lr 1e-4, betas (0.9, 0.99)) with poly decay (power 0.9) to ``min_lr`` = 0.

Deviation from the original (``compat.disc_in_main_optimizer`` restores it): the original's main
AdamW was built over every parameter of the UDA module, D included, so D was stepped twice per
iteration.
Here D's parameters belong only to :meth:`VideoDiscriminator.build_optimizer`'s Adam; build the
main optimizer over the segmentor alone (``VideoDiscriminator`` is a separate module, not a
submodule of the segmentor).

Order of one adversarial iteration (as the original): zero both optimizers and
:meth:`~VideoDiscriminator.set_lr`; segmentation losses; the four student forwards of the two pairs;
``generator_loss(...)`` backward; ``discriminator_loss(...)`` backward; main optimizer step; D step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from vidda.schedule import lr_factor

__all__ = [
    "SOURCE_LABEL",
    "TARGET_LABEL",
    "FCDiscriminator",
    "VideoDiscriminator",
    "discriminator_input",
]

SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0


class FCDiscriminator(nn.Module):
    """AdaptSegNet's patch discriminator: five 4×4 stride-2 convolutions (padding 1).

    Channels ``in_channels → w → 2w → 4w → 8w → 1`` (w = 64), LeakyReLU(0.2) after each of the
    first four, no normalisation, no final activation, default PyTorch initialisation. Module
    names follow the original (``conv1`` … ``conv4``, ``classifier``).

    Args:
        in_channels: 2C for the video discriminator (C for a single-frame one).
        width: channels of the first convolution (64).
    Shapes:
        ``[B, in_channels, h, w]`` → ``[B, 1, h/32, w/32]`` (each conv maps a size n to ⌊n/2⌋).
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            self.add_module(f"conv{i + 1}", nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1))
        self.classifier = nn.Conv2d(chans[4], 1, 4, 2, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        """Patch scores ``[B, 1, h/32, w/32]`` (raw; no sigmoid) for inputs ``[B, C_in, h, w]``."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.act(conv(x))
        return self.classifier(x)


def discriminator_input(
    logits_t: Tensor,
    logits_tk: Tensor | None,
    joint_softmax: bool = False,
    size: tuple[int, int] | None = None,
) -> Tensor:
    """The discriminator's view of a frame pair.

    Args:
        logits_t: ``[B, C, h, w]`` logits of frame t (HRDA: the fused map; ACCEL: the fused
            logits of the pair (t, t−k)).
        logits_tk: ``[B, C, h, w]`` logits of frame t−k (ACCEL: fused (t−k, t−2k)), or None for
            a single-frame discriminator (then the result is the C-channel softmax of frame t).
        joint_softmax: the original's quirk (``compat.joint_softmax``): one softmax over the 2C
            concatenated channels instead of one per frame.
        size: ``(h', w')`` the logits are bilinearly resized to (align_corners=False) before the
            softmax. None → ``(int(0.5 h), int(0.5 w))``, half the logits' size. The original
            resizes to 0.5 × the *image* size (``feature_scale``): for full-resolution logits
            (ACCEL) the default is exactly that; for HRDA logits at stride 4 pass
            ``size=(H // 2, W // 2)`` of the image.
    Returns:
        ``[B, 2C, h', w']`` (``[B, C, h', w']`` without ``logits_tk``): per-frame softmax →
        each C-channel half sums to 1 at every pixel; joint → all 2C channels sum to 1.
    """
    if logits_t.ndim != 4:
        raise ValueError(f"logits_t must be [B, C, h, w], got shape {tuple(logits_t.shape)}")
    if logits_tk is not None and logits_tk.shape != logits_t.shape:
        raise ValueError(f"frame logits differ in shape: {tuple(logits_t.shape)} vs "
                         f"{tuple(logits_tk.shape)}")  # fmt: skip
    if size is None:
        size = (int(logits_t.shape[-2] * 0.5), int(logits_t.shape[-1] * 0.5))
    size = (int(size[0]), int(size[1]))

    def resize(z: Tensor) -> Tensor:
        if tuple(z.shape[-2:]) == size:
            return z
        return F.interpolate(z, size, mode="bilinear", align_corners=False)

    z_t = resize(logits_t)
    if logits_tk is None:
        return z_t.softmax(dim=1)
    z_tk = resize(logits_tk)
    if joint_softmax:
        return torch.cat((z_t, z_tk), dim=1).softmax(dim=1)
    return torch.cat((z_t.softmax(dim=1), z_tk.softmax(dim=1)), dim=1)


class VideoDiscriminator(nn.Module):
    """The adversarial part of a video-DA method: D, its losses, its optimizer and schedule.

    Args:
        num_classes: C; D takes 2C channels (C when ``video=False``).
        adv_scale: s, scales both the generator and the discriminator loss (0.1).
        lambda_adv: λ, the generator-loss weight (0.001); effective weight s · λ = 1e-4.
        lr, betas: D's Adam (1e-4, (0.9, 0.99)).
        power, min_lr: poly decay ``(lr − min_lr)(1 − i/T)^power + min_lr`` (0.9, 0).
        joint_softmax: the original's single softmax over 2C channels (compat quirk).
        video: pairs of frames (True, the paper's ``video_discrim``) or frame t alone.
        width: D's first-layer width (64).

    ``self.net`` is the :class:`FCDiscriminator`; ``self.optimizer`` is set by
    :meth:`build_optimizer`.
    """

    def __init__(
        self,
        num_classes: int,
        adv_scale: float = 0.1,
        lambda_adv: float = 0.001,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        power: float = 0.9,
        min_lr: float = 0.0,
        joint_softmax: bool = False,
        video: bool = True,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.video = video
        self.net = FCDiscriminator(num_classes * (2 if video else 1), width)
        self.adv_scale, self.lambda_adv = adv_scale, lambda_adv
        self.lr, self.betas = lr, tuple(betas)
        self.power, self.min_lr = power, min_lr
        self.joint_softmax = joint_softmax
        self.optimizer: torch.optim.Optimizer | None = None

    def forward(self, d_in: Tensor) -> Tensor:
        """D's patch scores ``[B, 1, h/32, w/32]`` for ``d_in`` ``[B, 2C, h, w]``."""
        return self.net(d_in)

    def make_input(
        self, logits_t: Tensor, logits_tk: Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:  # fmt: skip
        """:func:`discriminator_input` with this discriminator's softmax setting.

        ``logits_tk`` is required for a video discriminator and ignored otherwise.
        """
        if self.video and logits_tk is None:
            raise ValueError("a video discriminator needs the logits of frame t-k")
        return discriminator_input(
            logits_t, logits_tk if self.video else None, self.joint_softmax, size
        )

    def _frozen(self, d_in: Tensor) -> Tensor:
        """D applied with its parameters and buffers detached: no gradient can reach D."""
        params = {k: v.detach() for k, v in self.net.named_parameters()}
        params.update({k: v.detach() for k, v in self.net.named_buffers()})
        return functional_call(self.net, params, (d_in,))

    def generator_loss(self, d_in_target: Tensor) -> Tensor:
        """``s · λ · MSE(D(d_in_target), 0)``: target pairs should look like source (scalar).

        ``d_in_target`` ``[B, 2C, h, w]`` keeps its graph (gradients flow into the segmentor);
        D is applied with detached parameters, so backward accumulates nothing in D (the
        original toggled ``requires_grad``; the effect is the same).
        """
        out = self._frozen(d_in_target)
        loss = F.mse_loss(out, torch.full_like(out, SOURCE_LABEL))
        return self.adv_scale * self.lambda_adv * loss

    def discriminator_loss(self, d_in_source: Tensor, d_in_target: Tensor) -> Tensor:
        """``s · [0.5 · MSE(D(src), 0) + 0.5 · MSE(D(trg), 1)]`` on detached inputs (scalar).

        Both inputs ``[B, 2C, h, w]`` are detached here, so the segmentor receives no gradient.
        """
        out_s = self.net(d_in_source.detach())
        out_t = self.net(d_in_target.detach())
        loss_s = F.mse_loss(out_s, torch.full_like(out_s, SOURCE_LABEL))
        loss_t = F.mse_loss(out_t, torch.full_like(out_t, TARGET_LABEL))
        return self.adv_scale * (0.5 * loss_s + 0.5 * loss_t)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """D's own Adam over D's parameters only (stored as ``self.optimizer`` and returned).

        Each group records ``initial_lr`` so :func:`vidda.schedule.set_lr` also works.
        """
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=self.betas)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.lr
        return self.optimizer

    def lr_at(self, step: int, total: int) -> float:
        """``(lr − min_lr) · (1 − step/total)^power + min_lr`` (0-based ``step``)."""
        return (self.lr - self.min_lr) * lr_factor(step, total, self.power) + self.min_lr

    def set_lr(self, step: int, total: int) -> float:
        """Set D's learning rate before iteration ``step`` of ``total``; returns it."""
        if self.optimizer is None:
            raise RuntimeError("call build_optimizer() before set_lr()")
        lr = self.lr_at(step, total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr
