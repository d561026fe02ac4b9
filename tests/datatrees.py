"""Miniature dataset trees in the exact on-disk formats the loaders read (names, bit depths).

Each frame's pixels encode its frame number (``frame_value``), so a test can check that the loader
returned the frames it should, in order.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vidda.flow.io import write_flow

H, W = 24, 40  # small native size for all fixture datasets


def frame_value(frame: int) -> int:
    return (frame * 7) % 251


def write_frame(path: Path, frame: int, size: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((*size, 3), frame_value(frame), np.uint8)
    image[0, 0] = (10, 20, 30)  # R, G, B marker to catch channel-order mistakes
    if path.suffix == ".jpg":  # JPEG is lossy: a flat image with the marker survives ±few levels
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    else:
        cv2.imwrite(str(path), image[..., ::-1])


def write_label(path: Path, values: tuple[int, ...] = (0, 13), size=(H, W)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.zeros(size, np.uint8)
    for i, v in enumerate(values):
        label[:, i * size[1] // len(values) :] = v
    cv2.imwrite(str(path), label)
    return label


def write_const_flow(path: Path, frame: int, size=(H, W)) -> None:
    """A constant flow whose u encodes the frame number (u = frame / 8, v = -1)."""
    flow = np.zeros((*size, 2), np.float32)
    flow[..., 0] = frame / 8
    flow[..., 1] = -1
    write_flow(path, flow)


def cityscapes_seq(root: Path) -> Path:
    """Train: aachen (labelled 000019) and bochum (labelled 000313); val: frankfurt 000294."""
    for split, name, frames in (
        ("train", "aachen/aachen_000000_000019", range(17, 20)),
        ("train", "bochum/bochum_000000_000313", range(311, 314)),
        ("val", "frankfurt/frankfurt_000000_000294", range(292, 295)),
    ):
        city, base = name.split("/")
        stem = base.rsplit("_", 1)[0]
        for f in frames:
            write_frame(
                root / f"leftImg8bit_sequence/{split}/{city}/{stem}_{f:06d}_leftImg8bit.png", f
            )
            write_const_flow(
                root / f"flow/backward_k1/{split}/{city}/{stem}_{f:06d}_leftImg8bit.png", f
            )
        write_label(root / f"gtFine/{split}/{name}_gtFine_labelTrainIds.png")
        splits = root / "splits"
        splits.mkdir(parents=True, exist_ok=True)
        with open(splits / f"{split}.txt", "a") as fh:
            fh.write(name + "\n")
    return root


def viper_seq(root: Path) -> Path:
    for seq, key in (("001", 10), ("002", 20)):
        for f in range(key - 2, key + 1):
            write_frame(root / f"train/img/{seq}/{seq}_{f:05d}.jpg", f)
            write_const_flow(root / f"flow/backward_k1/train/{seq}/{seq}_{f:05d}.png", f)
        write_label(root / f"train/cls/{seq}/{seq}_{key:05d}_labelTrainIds.png", (0, 13, 2))
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits/train.txt").write_text("001/001_00010\n002/002_00020")  # no final newline
    return root


def synthia_seq(root: Path, frames: range = range(0, 6)) -> Path:
    for f in frames:
        write_frame(root / f"RGB/Stereo_Left/Omni_F/{f:06d}.png", f)
        write_const_flow(root / f"flow/backward_k1/train/{f:06d}.png", f)
        if f >= 2:
            write_label(root / f"GT/LABELS/Stereo_Left/Omni_F/{f:06d}_labelTrainIds_updated.png",
                        (0, 5, 12))  # fmt: skip
    return root


def bddvid(root: Path) -> Path:
    ids = ("53f06672-e942bc38", "c33ec7c6-ab13ff1b")
    for split, vid in (("train", ids[0]), ("val_orig_10k", ids[1])):
        for f in range(303, 312):
            write_frame(root / f"{split}/images/{vid}_{f}.jpg", f)
            write_const_flow(root / f"flow/backward_k2/{split}/{vid}_{f}.png", f)
        write_label(root / f"{split}/labels/{vid}_307.png", (0, 18, 255))
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits/valid_imgs_train.txt").write_text(f"{ids[0]}_307\n")
    (root / "splits/valid_imgs_val.txt").write_text(f"{ids[1]}_307\n")
    return root
