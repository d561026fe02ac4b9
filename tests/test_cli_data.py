"""The data-preparation commands end to end: convert, flow compute, then data check."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from datatrees import cityscapes_seq

from vidda.cli import main
from vidda.flow.io import read_flow


def textured(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (5, 5), 1)


def test_flow_compute_writes_what_the_loader_reads_and_resumes(tmp_path: Path, capsys):
    root = cityscapes_seq(tmp_path / "cs")
    shutil.rmtree(root / "flow")
    # Real motion: frame f is the texture shifted right by 2·f pixels, so the backward flow of
    # frame f into f-1 is u = -2 (the content was 2 px further left one frame earlier).
    texture = textured(0, 48, 200)
    for png in (root / "leftImg8bit_sequence").rglob("*.png"):
        f = int(png.name.split("_")[2])
        shift = 2 * (f % 40)
        cv2.imwrite(str(png), np.ascontiguousarray(texture[12:36, 80 - shift : 120 - shift]))
    assert main(["data", "check", "--dataset", "cityscapes-seq", str(root), "--workers", "0"]) == 1
    argv = ["flow", "compute", str(root), "--dataset", "cityscapes-seq", "--workers", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6 flows to compute" in out  # train: 2 entries × offsets -1, 0; val: 1 × 2
    flow, valid = read_flow(
        root / "flow/backward_k1/train/aachen/aachen_000000_000019_leftImg8bit.png"
    )
    assert np.median(flow[valid][:, 0]) == pytest.approx(-2.0, abs=0.3)
    assert main(["data", "check", "--dataset", "cityscapes-seq", str(root), "--workers", "0"]) == 0
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out


def test_flow_compute_needs_a_config_or_a_dataset(tmp_path: Path, capsys):
    assert main(["flow", "compute", str(tmp_path)]) == 2
    assert "--dataset" in capsys.readouterr().err


def test_convert_cityscapes_label_ids(tmp_path: Path, capsys):
    gt = tmp_path / "cs/gtFine/train/aachen"
    gt.mkdir(parents=True)
    ids = np.array([[7, 8, 26, 0], [33, 24, 1, 23]], np.uint8)  # road sidewalk car unlabeled ...
    cv2.imwrite(str(gt / "aachen_000000_000019_gtFine_labelIds.png"), ids)
    assert main(["data", "convert", "cityscapes", str(tmp_path / "cs"), "--workers", "0"]) == 0
    out = cv2.imread(str(gt / "aachen_000000_000019_gtFine_labelTrainIds.png"), -1)
    np.testing.assert_array_equal(out, [[0, 1, 13, 255], [18, 11, 255, 10]])
    assert main(["data", "convert", "viper", str(tmp_path / "nothing")]) == 2
