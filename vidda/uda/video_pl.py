"""Teacher pseudo-labels of a frame pair and their flow-based refinement, plus the pseudo-label
accuracy that training logs against target ground truth.

:class:`PLRefiner` is the configured composition of :mod:`vidda.uda.refine`: warp frame t−k's
pseudo-label onto frame t (fixed warp, or the original's with ``compat.original_warp``), fill the
holes from frame t, apply the strategies. Tensors: labels int64 ``[B, H, W]`` (255 = ignore),
weights float ``[B, H, W]``, probabilities float ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidda.classes import IGNORE_INDEX
from vidda.config.schema import RefineConfig
from vidda.models.segmentors.inputs import Pair
from vidda.uda.pseudo import pseudo_label
from vidda.uda.refine import PL, refine, warp_pseudo_label
from vidda.uda.teacher import pseudo_mode

__all__ = ["PLRefiner", "pl_accuracy", "teacher_logits", "teacher_pseudo_label"]

PROB_STRATEGIES = ("max_conf", "consis_conf")  # strategies that read the probabilities


@torch.no_grad()
def teacher_logits(teacher: nn.Module, inp: Pair) -> Tensor:
    """Teacher logits ``[B, C, H, W]`` of frame t (two-frame teachers fuse frame t−k through the
    flow) from prepared inputs, predicted like the original's teacher
    (:func:`~vidda.uda.teacher.pseudo_mode`)."""
    with pseudo_mode(teacher):
        return teacher.inference(inp)


def teacher_pseudo_label(
    teacher: nn.Module,
    inp: Pair,
    threshold: float,
    valid_mask: Tensor | None = None,
    with_probs: bool = False,
) -> PL:
    """The teacher's :class:`~vidda.uda.refine.PL` of frame t: argmax label, one quality scalar
    per batch broadcast to ``[B, H, W]`` times the margin mask ``valid_mask`` ``[B, H, W]``, and
    (``with_probs``) the softmax ``[B, C, H, W]``."""
    logits = teacher_logits(teacher, inp)
    mask = None if valid_mask is None else valid_mask.float()
    label, weight, _ = pseudo_label(logits, threshold, mask)
    probs = logits.detach().float().softmax(dim=1) if with_probs else None
    return PL(label, weight, probs)


class PLRefiner:
    """Frame t's refined pseudo-label from its own and frame t−k's (``method.refine``).

    Args:
        cfg: the strategies, fill mode and thresholds.
        original_warp: ``compat.original_warp`` — the original's integer warp and heuristics.
    """

    def __init__(self, cfg: RefineConfig, original_warp: bool = False) -> None:
        self.cfg = cfg
        self.original_warp = original_warp
        names = set(cfg.strategies)
        self.needs_probs = bool(names & set(PROB_STRATEGIES)) or (
            "warp_frame" in names and cfg.warp_frame_threshold > 0
        )
        self.needs_gt = "oracle" in names

    def __call__(
        self,
        cur: PL,
        prev: PL,
        flow: Tensor,
        flow_valid: Tensor | None = None,
        gt: Tensor | None = None,
        source_crop_height: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Warp ``prev`` onto frame t with ``flow`` ``[B, 2, H, W]`` (t → t−k), fill, refine.

        Args:
            cur, prev: the teacher's pseudo-labels of frames t and t−k.
            flow_valid: ``[B, H, W]`` validity of ``flow``.
            gt: target ground truth ``[B, H, W]``; read only by the ``oracle`` strategy.
            source_crop_height: the source crop's height (the original's bottom-fill rule).
        Returns:
            refined label int64 ``[B, H, W]`` (255 = ignore) and weight ``[B, H, W]``.
        """
        warped = warp_pseudo_label(prev, flow, flow_valid, original=self.original_warp)
        return refine(
            cur,
            warped,
            self.cfg.strategies,
            gt if self.needs_gt else None,
            fill=None if self.cfg.fill == "none" else self.cfg.fill,
            source_crop_height=source_crop_height,
            warp_frame_threshold=self.cfg.warp_frame_threshold,
            consis_conf_threshold=self.cfg.consis_conf_threshold,
        )


def pl_accuracy(label: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Accuracy of a pseudo-label on the ground-truth pixels it keeps, and the share it keeps.

    Args:
        label: int ``[B, H, W]``; 255 = not kept (ignored by the loss).
        gt: int ``[B, H, W]`` target ground truth; 255 pixels are left out of both numbers.
    Returns:
        ``(accuracy, coverage)`` 0-d float32 tensors: correct / kept and kept / labelled, NaN when
        the denominator is 0 (the trainer's log means skip NaN). No host sync.
    """
    labelled = gt != IGNORE_INDEX
    kept = labelled & (label != IGNORE_INDEX)
    n_kept = kept.sum().float()
    correct = (kept & (label == gt.long())).sum().float()
    return correct / n_kept, n_kept / labelled.sum().float()
