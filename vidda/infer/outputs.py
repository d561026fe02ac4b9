"""What ``vidda infer`` writes under ``--out DIR``.

Per frame (``<kind>/<name>.png``, written atomically so an interrupted run never leaves a
truncated file that a resumed run would trust):

* ``trainid``: ``uint8`` trainIds (0..18; the model's classes);
* ``labelid``: Cityscapes labelIds (``TRAIN_ID_TO_ID``), what cityscapesScripts scores;
* ``color``: the Cityscapes palette (R,G,B);
* ``overlay``: the frame blended with the colours, with a legend.

For the whole run: ``areas.csv`` (each frame's pixel share per class), ``overlay.mp4`` (the
overlays as a video; mp4v, falling back to MJPG ``overlay.avi`` and then to ``overlay/`` PNGs when
OpenCV has no codec) and ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidda.classes import (
    CLASSES,
    ID_TO_TRAIN_ID,
    IGNORE_INDEX,
    NUM_CLASSES,
    PALETTE,
    TRAIN_ID_TO_ID,
    palette_lut,
)
from vidda.errors import UserError

__all__ = [
    "DEFAULT_SAVE",
    "PNG_KINDS",
    "SAVE_CHOICES",
    "AreasTable",
    "OutputError",
    "OverlayVideo",
    "PredictionFiles",
    "class_shares",
    "write_json",
]

log = logging.getLogger(__name__)

PNG_KINDS = ("trainid", "labelid", "color", "overlay")
SAVE_CHOICES = (*PNG_KINDS, "areas")
DEFAULT_SAVE = ("trainid", "color")


_BGR_PALETTE = palette_lut()[:, ::-1].copy()  # uint8 [256, 3]: trainId → B,G,R


class OutputError(UserError):
    """An output that cannot be written (disk full, no permission, ...)."""


def class_names(num_classes: int) -> list[str]:
    """Cityscapes names for the 19 trainIds, ``class_<i>`` otherwise."""
    return list(CLASSES) if num_classes == NUM_CLASSES else [f"class_{i}" for i in
                                                             range(num_classes)]  # fmt: skip


def class_shares(pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``float64 [K]``: share of ``pred``'s (``uint8 [H, W]``) pixels holding each class."""
    return np.bincount(pred.ravel(), minlength=num_classes)[:num_classes] / pred.size


def _imwrite(path: Path, image: np.ndarray) -> None:
    """Write a PNG via a temporary file and a rename; raises :class:`OutputError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        if not cv2.imwrite(str(tmp), image):
            raise OutputError(f"cannot write {path}")
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)


def _color_to_train_id(rgb: np.ndarray) -> np.ndarray:
    """Invert the palette: ``uint8 [H, W, 3]`` R,G,B → trainIds (255 for other colours)."""
    key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    codes = np.array([(r << 16) | (g << 8) | b for r, g, b in PALETTE], np.int64)
    order = np.argsort(codes)
    pos = np.clip(np.searchsorted(codes[order], key), 0, len(codes) - 1)
    found = codes[order][pos] == key
    return np.where(found, order[pos], IGNORE_INDEX).astype(np.uint8)


class PredictionFiles:
    """The per-frame PNGs of ``kinds`` (a subset of :data:`PNG_KINDS`) under ``out_dir``."""

    def __init__(self, out_dir: Path, kinds: tuple[str, ...]) -> None:
        self.out_dir = Path(out_dir)
        self.kinds = tuple(k for k in PNG_KINDS if k in kinds)

    def path(self, kind: str, name: str) -> Path:
        return self.out_dir / kind / f"{name}.png"

    def complete(self, name: str) -> bool:
        """Every requested PNG of frame ``name`` exists (and there is at least one)."""
        return bool(self.kinds) and all(self.path(k, name).is_file() for k in self.kinds)

    def read_back(self, name: str) -> np.ndarray | None:
        """The trainIds ``uint8 [H, W]`` of a written frame, from its trainid, labelid or colour
        PNG (in that order); None when none of them is there or readable."""
        for kind in ("trainid", "labelid", "color"):
            if kind not in self.kinds:
                continue
            flag = cv2.IMREAD_COLOR if kind == "color" else cv2.IMREAD_UNCHANGED
            image = cv2.imread(str(self.path(kind, name)), flag)
            if image is None or (kind != "color" and image.ndim != 2):
                continue
            if kind == "trainid":
                return image.astype(np.uint8)
            if kind == "labelid":
                return ID_TO_TRAIN_ID[image]
            return _color_to_train_id(image[..., ::-1])
        return None

    def write(self, name: str, pred: np.ndarray, overlay: np.ndarray | None = None) -> None:
        """Write frame ``name``'s PNGs from its trainIds ``pred`` (``uint8 [H, W]``);
        ``overlay`` (``uint8 [H, W, 3]`` R,G,B) is needed when ``overlay`` PNGs are asked for."""
        if "trainid" in self.kinds:
            _imwrite(self.path("trainid", name), pred)
        if "labelid" in self.kinds:
            _imwrite(self.path("labelid", name), TRAIN_ID_TO_ID[pred])  # 19 classes only
        if "color" in self.kinds:
            _imwrite(self.path("color", name), _BGR_PALETTE[pred])
        if "overlay" in self.kinds:
            if overlay is None:
                raise ValueError("overlay PNGs need the overlay image")
            _imwrite(self.path("overlay", name), overlay[..., ::-1])


class AreasTable:
    """``areas.csv``: one row per frame — index, name, then each class's pixel share (0..1)."""

    def __init__(self, path: Path, num_classes: int = NUM_CLASSES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")  # noqa: SIM115 - closed by close()
        self._csv = csv.writer(self._file)
        self._csv.writerow(["frame", "name", *class_names(num_classes)])

    def write(self, index: int, name: str, shares: np.ndarray) -> None:
        self._csv.writerow([index, name, *(f"{s:.6f}" for s in shares)])

    def close(self) -> None:
        self._file.close()


class OverlayVideo:
    """The overlay frames as a video (opened on the first frame, at ``fps``).

    Tries mp4v (``overlay.mp4``), then MJPG (``overlay.avi``); when OpenCV can open neither, it
    says so once and writes ``overlay/<name>.png`` instead. ``path`` is what was written.
    """

    CODECS = (("mp4v", "overlay.mp4"), ("MJPG", "overlay.avi"))

    def __init__(self, out_dir: Path, fps: float) -> None:
        self.out_dir = Path(out_dir)
        self.fps = float(fps)
        self.path: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._pngs = False

    def _open(self, size: tuple[int, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for codec, name in self.CODECS:
            writer = cv2.VideoWriter(str(self.out_dir / name), cv2.VideoWriter_fourcc(*codec),
                                     self.fps, (size[1], size[0]))  # fmt: skip
            if writer.isOpened():
                self._writer, self.path = writer, self.out_dir / name
                if codec != self.CODECS[0][0]:
                    log.warning("no mp4v codec in this OpenCV build; overlay video written as %s",
                                self.path)  # fmt: skip
                return
            writer.release()
            (self.out_dir / name).unlink(missing_ok=True)
        self._pngs, self.path = True, self.out_dir / "overlay"
        log.warning("OpenCV cannot write mp4v or MJPG video here; overlay frames written as PNGs "
                    "to %s instead", self.path)  # fmt: skip

    def write(self, name: str, overlay: np.ndarray) -> None:
        """Append one ``uint8 [H, W, 3]`` R,G,B overlay frame (named ``name``)."""
        if self._writer is None and not self._pngs:
            self._open(overlay.shape[:2])
        if self._pngs:
            _imwrite(self.out_dir / "overlay" / f"{name}.png", overlay[..., ::-1])
        else:
            self._writer.write(np.ascontiguousarray(overlay[..., ::-1]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
