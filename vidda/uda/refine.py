"""Flow-based pseudo-label refinement: the teacher's label of frame t−k warped onto frame t.

The teacher labels frame t and the earlier frame t−k; frame t−k's pseudo-label is warped onto frame
t with the backward flow ``f_t`` (:func:`warp_pseudo_label`), holes are optionally filled from frame
t (:func:`fill_holes`), and a configured list of strategies combines the two (:func:`refine`).
The refined label is trained with the schedule described by :class:`RefineSchedule`.

Tensors: labels int64 ``[B, H, W]`` (255 = ignore), weights float ``[B, H, W]``, probabilities
float ``[B, C, H, W]``. Every function returns new tensors and leaves its inputs untouched; all
are per-pixel, so the whole batch is processed at once (the original looped over images).

Strategies, always applied in the original code's fixed order whatever order the list gives:

=============  ==================================  ========================================
name           function                            original flag
=============  ==================================  ========================================
consis         :func:`consistency_filter`          ``consis_filter``
max_conf       :func:`max_confidence`              ``max_confidence``
warp_frame     :func:`warp_frame`                  ``TPS_warp_pl_confidence`` (+ ``_thresh``)
consis_conf    :func:`consistency_confidence`      ``consis_confidence_filter``
rare_class     :func:`rare_class_filter`           ``consis_filter_rare_class``
oracle         :func:`oracle`                      ``oracle_mask`` (uses target ground truth)
class_thing    :func:`class_restrict` ("thing")    ``class_mask_warp="thing"``
class_stuff    :func:`class_restrict` ("stuff")    ``class_mask_warp="stuff"``
=============  ==================================  ========================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import torch
from torch import Tensor

from vidda.classes import IGNORE_INDEX, LABELS, NUM_CLASSES
from vidda.config.schema import RefineStrategy, strategy_problem
from vidda.flow.warp import FB_ALPHA, FB_BETA, backward_warp, original_warp, warp_labels

__all__ = [
    "COMMON_CLASSES",
    "FILL_SIDE",
    "PL",
    "RARE_CLASSES",
    "RARITY_ORDER",
    "STRATEGIES",
    "STUFF_CLASSES",
    "THING_CLASSES",
    "RefineSchedule",
    "class_restrict",
    "consistency_confidence",
    "consistency_filter",
    "fill_holes",
    "fill_region",
    "fill_row_limit",
    "max_confidence",
    "oracle",
    "rare_class_filter",
    "refine",
    "warp_frame",
    "warp_pseudo_label",
]

IGN = IGNORE_INDEX

STRATEGIES: tuple[str, ...] = get_args(RefineStrategy)
"""Strategy names in the order :func:`refine` applies them."""

RARITY_ORDER: tuple[int, ...] = (3, 5, 12, 16, 18, 17, 7, 6, 15, 4, 11, 14, 9, 8, 1, 2, 10, 13, 0)
"""Cityscapes trainIds from most to least rare (the original's fixed ranking)."""
NUM_RARE = 11
RARE_CLASSES: tuple[int, ...] = RARITY_ORDER[:NUM_RARE]
"""wall, pole, rider, train, bicycle, motorcycle, traffic sign/light, bus, fence, person."""
COMMON_CLASSES: tuple[int, ...] = RARITY_ORDER[NUM_RARE:]
"""The rest; the ignore label also counts as common."""

THING_CLASSES: tuple[int, ...] = tuple(
    sorted({lab.train_id for lab in LABELS if lab.has_instances and lab.train_id != IGN})
)
"""Cityscapes classes with instances: person, rider, car, truck, bus, train, motorcycle, bicycle."""
STUFF_CLASSES: tuple[int, ...] = tuple(c for c in range(NUM_CLASSES) if c not in THING_CLASSES)

FILL_SIDE = 100
"""Width in pixels of the left and right bands of ``bottom_pl_fill``."""


@dataclass
class PL:
    """A pseudo-label of one frame.

    Attributes:
        label: int64 ``[B, H, W]``, 255 = ignore (a teacher label never holds 255; a warped one
            holds 255 where the warp is invalid).
        weight: float ``[B, H, W]`` per-pixel loss weight.
        probs: optional float ``[B, C, H, W]`` softmax probabilities (needed by ``max_conf``,
            ``warp_frame`` and ``consis_conf``).
        valid: optional bool ``[B, H, W]`` where ``probs`` are meaningful (for a warped PL: where
            the warp is valid). ``None`` = everywhere, except pixels whose max probability is the
            original's 255 marker.
    """

    label: Tensor
    weight: Tensor
    probs: Tensor | None = None
    valid: Tensor | None = None


# --------------------------------------------------------------------------- warping


def warp_pseudo_label(
    prev: PL,
    flow: Tensor,
    flow_valid: Tensor | None = None,
    *,
    original: bool = False,
    fb_flow: Tensor | None = None,
    fb_threshold: tuple[float, float] = (FB_ALPHA, FB_BETA),
    fb_valid: Tensor | None = None,
) -> PL:
    """Warp frame t−k's pseudo-label (label, weight, optional probabilities) onto frame t.

    Args:
        prev: frame t−k's :class:`PL` (``[B, H, W]`` / ``[B, C, H, W]``).
        flow: ``[B, 2, H, W]`` backward flow ``f_t`` of frame t (target ``flow[0]``).
        flow_valid: optional ``[B, H, W]`` flow validity.
        original: ``compat.original_warp``: stack ``[label, weight, probs]`` and use
            :func:`~vidda.flow.warp.original_warp` (invalid probabilities hold 255, as in the
            original); otherwise labels and weights are warped nearest and probabilities bilinear.
        fb_flow, fb_threshold, fb_valid: optional forward–backward check (fixed mode only).
    Returns:
        The warped :class:`PL`: label 255 and weight 0 where the warp is invalid, ``valid`` set.
    """
    if original:
        parts = [prev.label[:, None].float(), prev.weight[:, None].float()]
        if prev.probs is not None:
            parts.append(prev.probs.float())
        out, ok = original_warp(torch.cat(parts, dim=1), flow, flow_valid)
        label = out[:, 0].long()  # 255 where invalid
        weight = out[:, 1].masked_fill(~ok, 0.0).to(prev.weight.dtype)
        probs = out[:, 2:] if prev.probs is not None else None
        return PL(label, weight, probs, ok)
    fb = (fb_flow, fb_threshold, fb_valid)
    label, ok = warp_labels(
        prev.label, flow, flow_valid, fb_flow=fb_flow, fb_threshold=fb_threshold, fb_valid=fb_valid
    )
    weight, _ = backward_warp(prev.weight[:, None].float(), flow, "nearest", flow_valid, *fb)
    weight = weight[:, 0].masked_fill(~ok, 0.0).to(prev.weight.dtype)
    probs = None
    if prev.probs is not None:
        probs, _ = backward_warp(prev.probs, flow, "bilinear", flow_valid, *fb)
    return PL(label, weight, probs, ok)


# --------------------------------------------------------------------------- hole filling


def fill_row_limit(height: int, source_crop_height: int | None = None) -> int:
    """First row of the bottom fill band: 800 if the *source* crop height is 1024, else
    ``int(height * 0.7)`` in floating point (720 → 503, as in the original)."""
    source_crop_height = height if source_crop_height is None else source_crop_height
    return 800 if source_crop_height == 1024 else int(height * 0.7)


def fill_region(
    height: int,
    width: int,
    source_crop_height: int | None = None,
    side: int = FILL_SIDE,
    device: torch.device | str | None = None,
) -> Tensor:
    """The ``bottom_pl_fill`` band, bool ``[H, W]``: rows ≥ :func:`fill_row_limit` or the ``side``
    leftmost or rightmost columns (maps narrower than ``2 · side`` are entirely in the band)."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    limit = fill_row_limit(height, source_crop_height)
    return (rows >= limit) | (cols < side) | (cols >= width - side)


def fill_holes(
    warped_label: Tensor,
    warped_weight: Tensor,
    cur_label: Tensor,
    cur_weight: Tensor,
    mode: str = "bottom",
    source_crop_height: int | None = None,
    valid: Tensor | None = None,
    side: int = FILL_SIDE,
) -> tuple[Tensor, Tensor]:
    """Fill holes of the warped pseudo-label with frame t's own label and weight.

    Args:
        warped_label, warped_weight: ``[B, H, W]`` warped frame t−k pseudo-label.
        cur_label, cur_weight: ``[B, H, W]`` frame t pseudo-label.
        mode: "bottom" (``bottom_pl_fill``): inside :func:`fill_region` wherever the warped weight
            is exactly 0; "all" (``pl_fill``): wherever the warp is invalid.
        source_crop_height: height of the *source* crop (the original's rule reads it; 1024 → row
            limit 800); ``None`` = the map's height.
        valid: ``[B, H, W]`` warp validity for "all"; default: warped label != 255.
        side: width of the side bands of "bottom".
    Returns:
        filled label int64 ``[B, H, W]`` and weight ``[B, H, W]``.
    """
    if mode == "bottom":
        h, w = warped_label.shape[-2:]
        region = fill_region(h, w, source_crop_height, side, warped_label.device)
        take = region & (warped_weight == 0)
    elif mode == "all":
        take = ~valid.bool() if valid is not None else warped_label == IGN
    else:
        raise ValueError(f"fill mode must be 'bottom' or 'all', got {mode!r}")
    return torch.where(take, cur_label, warped_label), torch.where(take, cur_weight, warped_weight)


# --------------------------------------------------------------------------- strategies


def _drop(label: Tensor, weight: Tensor, bad: Tensor) -> tuple[Tensor, Tensor]:
    return label.masked_fill(bad, IGN), weight.masked_fill(bad, 0.0)


def _confidence(probs: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Max probability ``[B, H, W]`` and where it is meaningful (``valid``, not the 255 marker)."""
    conf = probs.max(dim=1).values
    ok = conf != IGN
    if valid is not None:
        ok &= valid.bool()
    return conf, ok


def consistency_filter(label: Tensor, weight: Tensor, cur_label: Tensor) -> tuple[Tensor, Tensor]:
    """``consis``: where the warped label differs from frame t's, label 255 and weight 0.

    Invalid warps (255) are removed unless filled. Kept pixels keep the *warped* weight.
    """
    return _drop(label, weight, label != cur_label)


def max_confidence(
    label: Tensor,
    weight: Tensor,
    probs: Tensor,
    cur_label: Tensor,
    cur_weight: Tensor,
    cur_probs: Tensor,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``max_conf``: per pixel, the more confident of the warped and the current pseudo-label.

    Frame t wins where ``max P_t > max P~`` or the warped probabilities are invalid (``valid``
    False, or the original's 255 marker); ties go to the warped label. Creates no ignore pixels.
    """
    c_t = cur_probs.max(dim=1).values
    c_w, ok = _confidence(probs, valid)
    cur = (c_t > c_w) | ~ok
    return torch.where(cur, cur_label, label), torch.where(cur, cur_weight, weight)


def warp_frame(
    label: Tensor,
    weight: Tensor,
    probs: Tensor | None = None,
    threshold: float = 0.0,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``warp_frame`` (TPS): drop warped pixels whose max probability is below ``threshold``.

    With the papers' threshold 0.0 this never fires, i.e. the warped label is used as is.
    Pixels with invalid warped probabilities are not touched (the original's 255 is never < τ).
    """
    if probs is None:
        if threshold > 0.0:
            raise ValueError("warp_frame with a threshold > 0 needs the warped probabilities")
        return label, weight
    c_w, ok = _confidence(probs, valid)
    return _drop(label, weight, (c_w < threshold) & ok)


def consistency_confidence(
    label: Tensor,
    weight: Tensor,
    cur_label: Tensor,
    cur_probs: Tensor,
    threshold: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``consis_conf``: keep pixels where the warped label equals frame t's **and** frame t's max
    probability exceeds the threshold; elsewhere 255 / weight 0."""
    c_t = cur_probs.max(dim=1).values
    keep = (label == cur_label) & (c_t > threshold)
    return _drop(label, weight, ~keep)


def _rarity(label: Tensor) -> Tensor:
    """Rank in :data:`RARITY_ORDER` (0 = rarest); 255 and unknown ids → 255 (common)."""
    lut = torch.full((256,), IGN, dtype=torch.long, device=label.device)
    lut[torch.tensor(RARITY_ORDER, device=label.device)] = torch.arange(
        len(RARITY_ORDER), device=label.device
    )
    return lut[label.clamp(0, 255)].masked_fill((label < 0) | (label > 255), IGN)


def rare_class_filter(cur: Tensor, warped: Tensor, rare_common_compare: bool = True) -> Tensor:
    """``rare_class``: combine frame t's and the warped label, favouring rare classes.

    Agreeing pixels keep the label. With ``rare_common_compare=True`` (training), a disagreeing
    pixel takes the label that is rare (:data:`RARE_CLASSES`) when the other is common (255 counts
    as common), otherwise 255. With ``False`` (the original's unit-test mode) it takes the rarer of
    the two whenever that one is rare.

    Args:
        cur, warped: int64 ``[B, H, W]``.
    Returns:
        int64 ``[B, H, W]``. (:func:`refine` then sets the weight to 0 where the result is 255.)
    """
    r_cur, r_warp = _rarity(cur), _rarity(warped)
    rare_cur, rare_warp = r_cur < NUM_RARE, r_warp < NUM_RARE
    out = torch.where(cur == warped, cur, torch.full_like(cur, IGN))
    differ = cur != warped
    if rare_common_compare:
        take_cur = differ & rare_cur & ~rare_warp
        take_warp = differ & rare_warp & ~rare_cur
    else:
        take_cur = differ & rare_cur & (r_cur < r_warp)
        take_warp = differ & rare_warp & (r_warp < r_cur)
    out = torch.where(take_cur, cur, out)
    return torch.where(take_warp, warped, out)


def oracle(label: Tensor, weight: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """``oracle``: keep only pixels where the label equals the target ground truth ``gt``
    (int ``[B, H, W]``, 255 = ignore, which is never kept). An upper bound, not a UDA method."""
    if gt.ndim == 4 and gt.shape[1] == 1:
        gt = gt[:, 0]
    keep = (label == gt) & (gt != IGN)
    return _drop(label, weight, ~keep)


def class_restrict(
    label: Tensor,
    weight: Tensor,
    which: str = "thing",
    things: Sequence[int] = THING_CLASSES,
) -> tuple[Tensor, Tensor]:
    """Class-restricted warp: keep only ``which`` ("thing" or "stuff") classes; the others
    become 255 with weight 0. (The original's weight update was a no-op after the label had been
    overwritten — harmless, as ignored pixels get no loss; here the weight is zeroed too.)"""
    if which not in ("thing", "stuff"):
        raise ValueError(f"which must be 'thing' or 'stuff', got {which!r}")
    is_thing = torch.isin(label, torch.as_tensor(list(things), device=label.device))
    drop = (~is_thing if which == "thing" else is_thing) & (label != IGN)
    return _drop(label, weight, drop)


# --------------------------------------------------------------------------- pipeline


def _need(obj: Tensor | None, what: str, strategy: str) -> Tensor:
    if obj is None:
        raise ValueError(f"refinement strategy {strategy!r} needs {what}")
    return obj


def refine(
    cur: PL,
    warped: PL,
    strategies: Sequence[str],
    gt: Tensor | None = None,
    *,
    fill: str | None = None,
    source_crop_height: int | None = None,
    warp_frame_threshold: float = 0.0,
    consis_conf_threshold: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Refined pseudo-label of frame t from its own and the warped frame t−k pseudo-label.

    Args:
        cur: frame t's :class:`PL` (label never 255; ``probs`` needed by ``max_conf`` and
            ``consis_conf``).
        warped: the warped frame t−k :class:`PL` (:func:`warp_pseudo_label`; ``probs`` needed by
            ``max_conf`` and, with a threshold > 0, ``warp_frame``).
        strategies: names from :data:`STRATEGIES`; applied in that fixed order, not list order.
            An empty list means "use the warped label as is" (after filling).
        gt: target ground truth int ``[B, H, W]``, required by ``oracle`` only.
        fill: ``None``, "bottom" (``bottom_pl_fill``, used by every paper refinement run) or
            "all" (``pl_fill``); applied before the strategies (:func:`fill_holes`).
        source_crop_height: the source crop height read by the "bottom" fill.
        warp_frame_threshold: τ of ``warp_frame`` (papers: 0.0, a no-op).
        consis_conf_threshold: the threshold of ``consis_conf``.
    Returns:
        label int64 ``[B, H, W]`` (255 = ignore) and weight ``[B, H, W]`` (0 wherever the label is
        255 after any dropping strategy).
    """
    names = set(strategies)
    problem = strategy_problem(list(strategies))
    if problem:
        raise ValueError(problem)

    label, weight = warped.label, warped.weight
    if fill is not None:
        label, weight = fill_holes(
            label, weight, cur.label, cur.weight, fill, source_crop_height, warped.valid
        )
    if "consis" in names:
        label, weight = consistency_filter(label, weight, cur.label)
    if "max_conf" in names:
        label, weight = max_confidence(
            label,
            weight,
            _need(warped.probs, "the warped probabilities", "max_conf"),
            cur.label,
            cur.weight,
            _need(cur.probs, "frame t's probabilities", "max_conf"),
            warped.valid,
        )
    if "warp_frame" in names:
        label, weight = warp_frame(label, weight, warped.probs, warp_frame_threshold, warped.valid)
    if "consis_conf" in names:
        label, weight = consistency_confidence(
            label,
            weight,
            cur.label,
            _need(cur.probs, "frame t's probabilities", "consis_conf"),
            consis_conf_threshold,
        )
    if "rare_class" in names:
        label = rare_class_filter(cur.label, label, rare_common_compare=True)
        weight = weight.masked_fill(label == IGN, 0.0)
    if "oracle" in names:
        label, weight = oracle(label, weight, _need(gt, "the target ground truth", "oracle"))
    for which in ("thing", "stuff"):
        if f"class_{which}" in names:
            label, weight = class_restrict(label, weight, which)
    return label, weight


# --------------------------------------------------------------------------- training


@dataclass
class RefineSchedule:
    """How the original trains the refined pseudo-label.

    From ``begin`` on, the refined label (in place of frame t's) goes through the ordinary ClassMix
    (the original's ``--warp-cutmix``, on in every paper run: source classes pasted onto target
    frame t; label = source GT where pasted, refined label elsewhere; weight = 1 where pasted,
    refined weight elsewhere) and the student's loss on it is scaled by ``l_warp_lambda``
    ("L_warp"). The ordinary DACS mix loss on the unrefined label is scaled by ``l_mix_lambda``.
    The paper's refinement runs use 1.0 / 0.0 / 1500, so **no target loss at all is trained before
    step 1500** (the original's behaviour); ``begin = 0`` avoids that gap. MIC's masked loss, when
    enabled, always uses frame t's unrefined pseudo-label.

    Attributes:
        l_warp_lambda: weight of the loss on the refined (warped) pseudo-label.
        l_mix_lambda: weight of the ordinary mix loss on frame t's unrefined pseudo-label.
        begin: first step (0-based iteration counter) at which the refined loss is used.
    """

    l_warp_lambda: float = 1.0
    l_mix_lambda: float = 0.0
    begin: int = 1500

    def __post_init__(self) -> None:
        if self.l_warp_lambda < 0 or self.l_mix_lambda < 0:
            raise ValueError("l_warp_lambda and l_mix_lambda must be >= 0")
        if self.begin < 0:
            raise ValueError(f"begin must be >= 0, got {self.begin}")

    def active(self, step: int) -> bool:
        """Whether the refined pseudo-label is computed and trained at ``step``."""
        return self.l_warp_lambda > 0 and step >= self.begin

    def mix_active(self) -> bool:
        """Whether the ordinary mix loss (unrefined pseudo-label) is trained."""
        return self.l_mix_lambda > 0

    def target_loss_weights(self, step: int) -> tuple[float, float]:
        """``(warp, mix)`` loss weights at ``step``; ``(0, 0)`` = no target loss this step."""
        return (self.l_warp_lambda if self.active(step) else 0.0), self.l_mix_lambda
