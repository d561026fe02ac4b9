"""``vidda eval CFG CKPT``: the benchmark's protocol on its validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import torch

from vidda.classes import TRAIN_ID_TO_ID, colorize
from vidda.config.derived import has_labels
from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.data.build import build_dataset
from vidda.engine.checkpoint import CheckpointError, load_checkpoint
from vidda.engine.distributed import distributed_run
from vidda.engine.evaluator import evaluate, segmentor_predictor
from vidda.metrics import format_table
from vidda.models.build import build_segmentor


def load_student(cfg: Config, path: Path, device: torch.device) -> torch.nn.Module:
    """The checkpoint's student (``models.student``) in ``cfg``'s architecture, in eval mode."""
    state = load_checkpoint(path)
    weights = state.get("models", {}).get("student") if isinstance(state, dict) else None
    if weights is None:
        raise CheckpointError(f"{path} holds no student weights (models.student)")
    model = build_segmentor(cfg.model, load_pretrained=False, compat=cfg.compat)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not fit the config's model: {str(err).splitlines()[0]}"
        ) from err
    return model.to(device).eval()


def run_eval(
    cfg: Config,
    checkpoint: Path,
    out_dir: Path | None = None,
    save: tuple[str, ...] = (),
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate ``cfg``; evaluate ``checkpoint`` on ``cfg.data.val``; print the tables; write JSON
    (+ maps)."""
    validate(cfg)
    with distributed_run(cfg.train.device) as info:  # left again once the metrics are reduced
        model = load_student(cfg, checkpoint, info.device)
        val = build_dataset(cfg.data.val, train=False, compat=cfg.compat, key="data.val",
                            cache_dir=(out_dir or checkpoint.parent) / "video_cache",
                            progress=progress)  # fmt: skip
        saver = None
        if out_dir is not None and save:
            saver = _Saver(out_dir, save)
        predictor = segmentor_predictor(model, cfg.eval, cfg.data.val.offsets,
                                        cfg.method.frame_distance)  # fmt: skip
        result = evaluate(predictor, val, cfg.eval, info, num_workers=workers, progress=progress,
                          on_prediction=saver, offsets=cfg.data.val.offsets,
                          frame_distance=cfg.method.frame_distance,
                          labelled=has_labels(cfg.data.val),
                          threshold=cfg.method.pseudo_threshold,
                          num_classes=cfg.model.num_classes)  # fmt: skip
    if info.is_main:
        for protocol, r in result.items():
            if protocol == "label_free":
                print(f"== label-free: confidence {_pct(r['confidence'])}, confident "
                      f"(>= {cfg.method.pseudo_threshold}) {_pct(r['confident'])}, entropy "
                      f"{_pct(r['entropy'])}, information maximisation {_pct(r['im'])} ==")
                continue
            if protocol == "temporal":
                print(f"== temporal consistency (frame t vs warped frame "
                      f"t-{cfg.method.frame_distance}): mIoU {_pct(r['miou'])}, pixel accuracy "
                      f"{_pct(r['pixel_acc'])} over {r['pixels']} pixels ==")  # fmt: skip
                continue
            print(f"== {protocol} protocol, classes: {cfg.eval.classes} ==")
            print(format_table(r))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            doc = {"config": cfg.name, "checkpoint": str(checkpoint), "results": result}
            (out_dir / "eval.json").write_text(json.dumps(doc, indent=1))
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


class _Saver:
    """Writes trainId, Cityscapes labelId and/or colour PNGs of each prediction."""

    def __init__(self, out_dir: Path, kinds: tuple[str, ...]) -> None:
        self.out_dir, self.kinds = out_dir, kinds

    def __call__(self, batch: dict[str, Any], pred: torch.Tensor) -> None:
        for name, p in zip(batch["name"], pred.cpu().numpy().astype("uint8"), strict=True):
            stem = name.replace("/", "_")
            if "trainid" in self.kinds:
                self._write("trainid", f"{stem}_trainIds.png", p)
            if "labelid" in self.kinds:
                self._write("labelid", f"{stem}_labelIds.png", TRAIN_ID_TO_ID[p])
            if "color" in self.kinds:
                self._write("color", f"{stem}_color.png", colorize(p)[..., ::-1])

    def _write(self, kind: str, name: str, image) -> None:
        folder = self.out_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), image)
