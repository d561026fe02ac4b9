"""How good a trained run's pseudo-labels are on the target's training split, against its labels.

For analysis (and the ``vidda demo --video`` report): the run's EMA teacher labels every target
training clip as it is (no crop, flip or colour jitter), once as the ordinary DACS pseudo-label
of frame t and once refined with the run's ``method.refine`` (frame t−k's label warped onto
frame t, holes filled, strategies applied). Both are compared with frame t's ground truth:

* ``pl_acc_raw``: accuracy of the unrefined label on all labelled pixels (it keeps every pixel);
* ``pl_acc_refined``: accuracy of the refined label on the pixels it keeps;
* ``pl_coverage_refined``: the share of labelled pixels the refined label keeps.

Target labels are read here only; training never sees them (except the ``oracle`` strategy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import DataLoader

from vidda.classes import IGNORE_INDEX
from vidda.config.derived import target_previous_offset
from vidda.config.schema import Config
from vidda.data.build import build_dataset
from vidda.errors import UserError
from vidda.models.build import build_segmentor
from vidda.models.segmentors.inputs import Pair
from vidda.uda.clip_view import ClipView
from vidda.uda.video_pl import PLRefiner, teacher_pseudo_label

__all__ = ["PLQualityError", "measure_pl_quality"]


class PLQualityError(UserError):
    """The run cannot be measured (no teacher, no refinement configured, no target labels)."""


@torch.no_grad()
def measure_pl_quality(
    cfg: Config, state: dict[str, Any], max_clips: int | None = None
) -> dict[str, float]:
    """Pseudo-label accuracy of the teacher in checkpoint ``state`` (a run of ``cfg``).

    Args:
        cfg: the run's config; ``method.refine`` gives the refinement, ``data.target`` the clips.
        state: the run's checkpoint (``models.teacher`` is read).
        max_clips: measure on the first ``max_clips`` training clips only (``None``: all).
    Returns:
        ``pl_acc_raw``, ``pl_acc_refined``, ``pl_coverage_refined`` (fractions 0..1) and
        ``pixels`` (labelled pixels counted).
    """
    refine_cfg = cfg.method.refine
    if not refine_cfg.enabled:
        raise PLQualityError(f"run {cfg.name!r}: method.refine is not enabled; nothing to compare")
    teacher = build_segmentor(cfg.model, load_pretrained=False, compat=cfg.compat)
    weights = state.get("models", {}).get("teacher")
    if weights is None:
        raise PLQualityError(f"run {cfg.name!r}: the checkpoint holds no teacher (models.teacher)")
    teacher.load_state_dict(weights)
    teacher.eval()

    data_cfg = dataclasses.replace(cfg.data.target, crop_size=[], flip=False, photometric=False)
    dataset = build_dataset(data_cfg, train=False, compat=cfg.compat, key="data.target")
    refiner = PLRefiner(refine_cfg, cfg.compat.original_warp)
    view = ClipView(data_cfg.offsets, "data.target")
    k = cfg.method.frame_distance
    two_frame = bool(teacher.two_frame)
    prev_offset = target_previous_offset(cfg, two_frame)  # as training pairs them

    counts = torch.zeros(4, dtype=torch.float64)  # labelled, raw correct, kept, kept correct
    for i, clip in enumerate(DataLoader(dataset, batch_size=1)):
        if max_clips is not None and i >= max_clips:
            break
        gt = clip["label"].long()  # 255 where a clip has no label: counted nowhere
        raw = view.pair(clip, 0, k, prev_offset=None if two_frame else prev_offset)
        pair = teacher.prepare(raw)
        cur_in = pair if two_frame else pair.single()
        prev_in = teacher.prepare(view.pair(clip, -k, k)) if two_frame else Pair(pair.prev)
        margins = clip.get("pl_valid")
        cur = teacher_pseudo_label(teacher, cur_in, cfg.method.pseudo_threshold, margins,
                                   refiner.needs_probs)  # fmt: skip
        prev = teacher_pseudo_label(teacher, prev_in, cfg.method.pseudo_threshold, margins,
                                    refiner.needs_probs)  # fmt: skip
        refined, _ = refiner(cur, prev, pair.flow, pair.valid, gt, source_crop_height=None)
        labelled = gt != IGNORE_INDEX
        kept = labelled & (refined != IGNORE_INDEX)
        counts += torch.tensor([
            labelled.sum(), (labelled & (cur.label == gt)).sum(),
            kept.sum(), (kept & (refined == gt)).sum(),
        ], dtype=torch.float64)  # fmt: skip
    labelled, raw_ok, kept, kept_ok = counts.tolist()
    if labelled == 0:
        raise PLQualityError(f"{cfg.data.target.root}: no labelled target pixels to compare")
    return {
        "pl_acc_raw": raw_ok / labelled,
        "pl_acc_refined": kept_ok / kept if kept else float("nan"),
        "pl_coverage_refined": kept / labelled,
        "pixels": labelled,
    }
