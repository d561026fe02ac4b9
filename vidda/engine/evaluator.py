"""Evaluation on a benchmark's validation split: both mIoU protocols from one confusion matrix,
the label-free scores of the predictions (:mod:`vidda.label_free`) and (``eval.temporal``) their
temporal consistency. Unlabelled clips (the user's videos) get the label-free scores only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from vidda.config.schema import EvalConfig
from vidda.engine.distributed import DistInfo
from vidda.label_free import LabelFreeScores
from vidda.metrics import ConfusionMatrix, to_json
from vidda.models.segmentors.inputs import Pair
from vidda.temporal import TemporalConsistency
from vidda.uda.clip_view import ClipView

Predictor = Callable[..., torch.Tensor]
"""``predict(batch, offset=0)``: logits ``[B, K, H, W]`` of the clip frame at ``offset``."""


def segmentor_predictor(
    model: torch.nn.Module,
    cfg: EvalConfig,
    offsets: Sequence[int] | None = None,
    frame_distance: int = 1,
) -> Predictor:
    """Key-frame logits ``[B, K, H, W]`` of a segmentor on validation clips.

    Args:
        model: a segmentor; when its ``predict_two_frame`` is set (ACCEL's fused evaluation) it
            is fed frame t, frame t − ``frame_distance`` and the flow between, else frame t.
        offsets: the validation clips' canonical offsets (``data.val.offsets``); None: the key
            frame is the clip's last one (single-frame evaluation only).
    """
    crop = tuple(cfg.crop_size) if cfg.crop_size else None
    stride = tuple(cfg.stride) if cfg.stride else None
    two_frame = bool(model.predict_two_frame)
    if offsets is None and two_frame:
        raise ValueError("a two-frame model's evaluation needs the validation clips' offsets")
    view = ClipView([0] if offsets is None else offsets, "data.val")
    key = -1 if offsets is None else view.index(0)

    def predict(batch: dict[str, Any], offset: int = 0) -> torch.Tensor:
        if two_frame:
            inputs = view.pair(batch, offset, frame_distance)
        else:
            inputs = Pair(batch["frames"][:, key if offset == 0 else view.index(offset)])
        return model.predict(model.prepare(inputs), cfg.mode, crop, stride)

    return predict


@torch.no_grad()
def evaluate(
    predict: Predictor,
    dataset: Dataset,
    cfg: EvalConfig,
    info: DistInfo | None = None,
    num_workers: int = 0,
    progress: bool = True,
    on_prediction: Callable[[dict[str, Any], torch.Tensor], None] | None = None,
    offsets: Sequence[int] | None = None,
    frame_distance: int = 1,
    labelled: bool = True,
    threshold: float = 0.968,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Score ``predict`` on every sample of ``dataset`` (sharded over ranks, counts reduced).

    Returns ``{"standard": result, "uvda": result, ...}`` for ``cfg.protocols`` (see
    ``ConfusionMatrix.compute``; JSON-able), each over the class subset ``cfg.classes`` — only
    when ``labelled`` (False: clips without ground truth, no mIoU) — and ``"label_free"``: the
    key-frame predictions' confidence, share at ``threshold``, entropy and information
    maximisation (:class:`~vidda.label_free.LabelFreeScores`, percent). With
    ``cfg.temporal`` also ``"temporal"``: the agreement (``miou``, ``pixel_acc`` in %, see
    :class:`~vidda.temporal.TemporalConsistency`) of each key-frame prediction with the
    prediction of frame t − ``frame_distance`` warped onto it by the clip's flow; ``offsets``
    are then the clips' canonical offsets (``data.val.offsets``).
    ``on_prediction(batch, pred [B, H, W])`` is called for every batch (e.g. to save maps).
    """
    info = info or DistInfo()
    shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    loader = DataLoader(shard, batch_size=1, num_workers=num_workers)
    cm = ConfusionMatrix(device=info.device) if labelled else None
    # built up front when C is known, so that a rank with an empty shard still joins the reduce
    free = LabelFreeScores(num_classes, threshold) if num_classes else None
    temporal = TemporalConsistency(device=info.device) if cfg.temporal else None
    view = ClipView(offsets or [0], "data.val")
    bar = tqdm(loader, desc="eval", unit="img", disable=not (progress and info.is_main))
    for batch in bar:
        batch = {k: v.to(info.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        logits = predict(batch)
        pred = logits.argmax(dim=1)
        if cm is not None:
            cm.update(pred, batch["label"])
        if free is None:
            free = LabelFreeScores(logits.shape[1], threshold)
        free.update(logits)
        if temporal is not None:
            prev = predict(batch, -frame_distance).argmax(dim=1)
            flow, valid = view.flow(batch, 0, frame_distance)
            temporal.update(pred, prev, flow, valid)
        if on_prediction is not None:
            on_prediction(batch, pred)
    result: dict[str, Any] = {}
    if cm is not None:
        cm.all_reduce()
        result = {p: to_json(cm.compute(cfg.classes, protocol=p)) for p in cfg.protocols}
    if free is not None:
        free.all_reduce()
        result["label_free"] = to_json(free.compute())
    if temporal is not None:
        temporal.all_reduce()
        result["temporal"] = to_json(temporal.compute(cfg.classes))
    return result
