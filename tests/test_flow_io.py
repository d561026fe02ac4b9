"""Flow files: KITTI 16-bit PNG, Middlebury .flo (against OpenCV) and .npy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vidda.flow.io import FlowFileError, read_flow, write_flow


def random_flow(h: int = 23, w: int = 31, scale: float = 40.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    flow = (rng.standard_normal((h, w, 2)) * scale).astype(np.float32)
    valid = rng.random((h, w)) > 0.2
    return flow, valid


def test_kitti_png_layout_is_the_published_encoding(tmp_path: Path):
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 1] = (1.5, -2.25)
    valid = np.ones((2, 3), bool)
    valid[1, 2] = False
    write_flow(tmp_path / "f.png", flow, valid)
    raw = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)  # B, G, R
    assert raw.dtype == np.uint16 and raw.shape == (2, 3, 3)
    assert raw[0, 1, 2] == 32768 + 96  # R = u·64 + 2^15
    assert raw[0, 1, 1] == 32768 - 144  # G = v·64 + 2^15
    assert raw[0, 1, 0] == 1 and raw[1, 2, 0] == 0  # B = valid flag


def test_kitti_png_round_trip_within_precision(tmp_path: Path):
    flow, valid = random_flow()
    write_flow(tmp_path / "f.png", flow, valid)
    back, back_valid = read_flow(tmp_path / "f.png")
    assert back.dtype == np.float32 and back.shape == flow.shape
    np.testing.assert_array_equal(back_valid, valid)
    assert np.abs(back[valid] - flow[valid]).max() <= 1 / 128 + 1e-6  # rounded to 1/64 px
    assert (back[~valid] == 0).all()


def test_real_kitti_sample_is_read_as_invalid_not_zero(tmp_path: Path):
    # A KITTI-style sparse file whose valid flag is 0 everywhere must not come back as valid.
    raw = np.full((4, 5, 3), 40000, np.uint16)
    raw[..., 0] = 0
    raw[1, 1, 0] = 1
    cv2.imwrite(str(tmp_path / "s.png"), raw)
    flow, valid = read_flow(tmp_path / "s.png")
    assert valid.sum() == 1 and valid[1, 1]
    np.testing.assert_allclose(flow[1, 1], [(40000 - 32768) / 64] * 2)
    assert (flow[~valid] == 0).all()


def test_flo_agrees_with_opencv(tmp_path: Path):
    flow, _ = random_flow(seed=1)
    write_flow(tmp_path / "ours.flo", flow)
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(tmp_path / "ours.flo")), flow)
    assert cv2.writeOpticalFlow(str(tmp_path / "cv.flo"), flow)
    back, valid = read_flow(tmp_path / "cv.flo")
    np.testing.assert_array_equal(back, flow)
    assert valid.all()


def test_flo_and_npy_keep_invalid_pixels(tmp_path: Path):
    flow, valid = random_flow(seed=2)
    for name in ("f.flo", "f.npy"):
        write_flow(tmp_path / name, flow, valid)
        back, back_valid = read_flow(tmp_path / name)
        np.testing.assert_array_equal(back_valid, valid)
        np.testing.assert_array_equal(back[valid], flow[valid])
    # Non-finite input is invalid even when no mask is given.
    flow[0, 0, 0] = np.nan
    write_flow(tmp_path / "n.npy", flow)
    assert not read_flow(tmp_path / "n.npy")[1][0, 0]


@pytest.mark.parametrize("suffix", [".png", ".flo", ".npy"])
def test_truncated_files_raise_naming_the_file(tmp_path: Path, suffix: str):
    flow, valid = random_flow()
    good = tmp_path / f"good{suffix}"
    write_flow(good, flow, valid)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(FlowFileError, match=str(bad)):
        read_flow(bad)


def test_bad_inputs(tmp_path: Path):
    with pytest.raises(FlowFileError, match="unknown flow format '.jpg'"):
        read_flow(tmp_path / "x.jpg")
    with pytest.raises(FlowFileError, match="not found"):
        read_flow(tmp_path / "missing.png")
    cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FlowFileError, match="16-bit with 3 channels"):
        read_flow(tmp_path / "eight.png")
    (tmp_path / "magic.flo").write_bytes(b"\x00" * 40)
    with pytest.raises(FlowFileError, match="magic"):
        read_flow(tmp_path / "magic.flo")
    with pytest.raises(FlowFileError, match=r"\[4, 4, 3\]"):
        write_flow(tmp_path / "w.png", np.zeros((4, 4, 3)))
    with pytest.raises(FlowFileError, match="valid mask shape"):
        write_flow(tmp_path / "w.png", np.zeros((4, 4, 2)), np.ones((3, 4), bool))
    with pytest.raises(FlowFileError, match="±512"):
        write_flow(tmp_path / "w.png", np.full((2, 2, 2), 600.0))
    assert not (tmp_path / "w.png").exists()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
