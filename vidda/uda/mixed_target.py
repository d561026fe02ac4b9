"""The mixed target that DACS's target losses train on (``method.mix: class``).

ClassMix pastes source pixels of half the source batch's classes onto the target
(:mod:`vidda.uda.mix`); the pasted pixels take the source label with weight 1, the others keep the
target's pseudo-label and weight. The mixed images are then strongly augmented (colour jitter,
blur: :func:`vidda.uda.augment.strong_augment`). For two-frame students the same mask pastes the
source into frame t−k and the flow too ("consistent mixup"), and one augmentation draw covers both
frames of a clip.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vidda.models.segmentors.inputs import Pair
from vidda.uda.augment import StrongAugParams, strong_augment
from vidda.uda.mix import class_mix_masks, mix, mix_flows

__all__ = ["TargetMixer"]


class TargetMixer:
    """ClassMix of source onto target, then strong augmentation.

    Args:
        aug: the strong augmentation of the mixed images.
        consistent: two-frame inputs: paste the source into frame t−k and the flow with the same
            mask (else frame t−k and the flow stay the target's).
        aug_per_frame: two-frame inputs: draw the augmentation per frame (the original's
            ``compat.mixup_aug_per_frame``) instead of once per clip.
    """

    def __init__(self, aug: StrongAugParams, consistent: bool = True,
                 aug_per_frame: bool = False) -> None:  # fmt: skip
        self.aug = aug
        self.consistent = consistent
        self.aug_per_frame = aug_per_frame

    def __call__(
        self,
        source: Pair,
        target: Pair,
        source_label: Tensor,
        label: Tensor,
        weight: Tensor,
        rng: np.random.Generator,
        generator: torch.Generator,
    ) -> tuple[Pair, Tensor, Tensor]:
        """Mixed, augmented inputs with their label and weight.

        Args:
            source, target: prepared inputs (frames ``[B, 3, H, W]``; flows for two-frame models).
            source_label: ``[B, H, W]`` source labels (the ClassMix candidates).
            label, weight: the target's pseudo-label and weight ``[B, H, W]``.
            rng: draws the pasted classes; generator: draws the augmentation.
        Returns:
            the mixed inputs, label int64 ``[B, H, W]`` and weight ``[B, H, W]``.
        """
        masks = class_mix_masks(source_label, rng)
        inputs = self._inputs(masks, source, target, generator)
        mixed_label = mix(masks, source_label, label)
        mixed_weight = mix(masks, torch.ones_like(weight), weight)
        return inputs, mixed_label, mixed_weight

    def _inputs(self, masks: Tensor, s: Pair, t: Pair, generator: torch.Generator) -> Pair:
        x = mix(masks, s.x, t.x)
        if s.prev is None or t.prev is None:
            return Pair(strong_augment(x, self.aug, generator, per_image=True))
        if self.consistent:
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
