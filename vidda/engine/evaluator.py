"""Evaluation on a benchmark's validation split: both mIoU protocols from one confusion matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from vidda.config.schema import EvalConfig
from vidda.engine.distributed import DistInfo
from vidda.metrics import ConfusionMatrix, to_json
from vidda.uda.normalize import normalize

Predictor = Callable[[dict[str, Any]], torch.Tensor]


def segmentor_predictor(model: torch.nn.Module, cfg: EvalConfig) -> Predictor:
    """Key-frame logits [B, K, H, W] of a single-frame segmentor (from ``frames[:, -1]``)."""
    crop = tuple(cfg.crop_size) if cfg.crop_size else None
    stride = tuple(cfg.stride) if cfg.stride else None

    def predict(batch: dict[str, Any]) -> torch.Tensor:
        return model.predict(normalize(batch["frames"][:, -1]), cfg.mode, crop, stride)

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
) -> dict[str, Any]:
    """Score ``predict`` on every sample of ``dataset`` (sharded over ranks, counts reduced).

    Returns ``{"standard": result, "uvda": result, ...}`` for ``cfg.protocols`` (see
    ``ConfusionMatrix.compute``; JSON-able), each over the class subset ``cfg.classes``.
    ``on_prediction(batch, pred [B, H, W])`` is called for every batch (e.g. to save maps).
    """
    info = info or DistInfo()
    shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    loader = DataLoader(shard, batch_size=1, num_workers=num_workers)
    cm = ConfusionMatrix(device=info.device)
    bar = tqdm(loader, desc="eval", unit="img", disable=not (progress and info.is_main))
    for batch in bar:
        batch = {k: v.to(info.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        pred = predict(batch).argmax(dim=1)
        cm.update(pred, batch["label"])
        if on_prediction is not None:
            on_prediction(batch, pred)
    cm.all_reduce()
    return {p: to_json(cm.compute(cfg.classes, protocol=p)) for p in cfg.protocols}
