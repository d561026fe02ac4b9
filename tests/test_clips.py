"""Clip datasets on miniature trees in each dataset's exact on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datatrees import bddvid, cityscapes_seq, frame_value, synthia_seq, viper_seq, write_label

from vidda.config.schema import DatasetConfig
from vidda.data.build import build_dataset
from vidda.data.layout import DatasetError, shift_frame
from vidda.flow.io import write_flow


def frames_of(sample: dict) -> list[int]:
    """The mean value of each returned frame (frames encode their number, see datatrees)."""
    return [int(round(float(f[1:, 1:].float().mean()))) for f in sample["frames"]]


def test_shift_frame_follows_the_last_number_and_its_padding():
    assert shift_frame("aachen/aachen_000000_000019", -1) == "aachen/aachen_000000_000018"
    assert (
        shift_frame("frankfurt/frankfurt_000000_000294", -2) == "frankfurt/frankfurt_000000_000292"
    )
    assert shift_frame("001/001_00010", -2) == "001/001_00008"
    assert shift_frame("000123", -1) == "000122"
    assert shift_frame("000123.png", -1) == "000122"  # DA-VSN style entries: offset still applied
    assert shift_frame("53f06672-e942bc38_307", -4) == "53f06672-e942bc38_303"
    with pytest.raises(DatasetError, match="offset -2"):
        shift_frame("000001", -2)
    with pytest.raises(DatasetError, match="frame number"):
        shift_frame("aachen/aachen_x", -1)


def test_cityscapes_seq_clip_has_the_right_frames_label_and_flows(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    ds = build_dataset(DatasetConfig(type="cityscapes-seq", root=str(root)), train=False)
    assert [e.name for e in ds.entries] == [
        "aachen/aachen_000000_000019",
        "bochum/bochum_000000_000313",
    ]
    entry = ds.entries[1]  # labelled frame 313, not 000019
    assert [p.name for p in entry.frames] == [
        f"bochum_000000_{f:06d}_leftImg8bit.png" for f in (311, 312, 313)
    ]
    assert entry.flows[0] is None and entry.flows[2].name == "bochum_000000_000313_leftImg8bit.png"
    sample = ds[1]
    assert frames_of(sample) == [frame_value(f) for f in (311, 312, 313)]
    assert tuple(sample["frames"][0, :, 0, 0].tolist()) == (10, 20, 30)  # R,G,B order kept
    assert sample["flow_valid"].flatten(1).any(1).tolist() == [False, True, True]
    assert torch.allclose(sample["flows"][2, 0], torch.full((24, 40), 313 / 8))
    assert torch.allclose(sample["flows"][1, 0], torch.full((24, 40), 312 / 8))
    assert sample["label"].dtype == torch.uint8 and set(sample["label"].unique().tolist()) == {
        0,
        13,
    }
    val = build_dataset(
        DatasetConfig(type="cityscapes-seq", root=str(root), split="val", flow_offsets=[0]),
        train=False,
    )
    assert frames_of(val[0]) == [frame_value(f) for f in (292, 293, 294)]
    assert val[0]["flow_valid"].flatten(1).any(1).tolist() == [False, False, True]


def test_viper_and_synthia_and_published_flow_roots(tmp_path: Path):
    root = viper_seq(tmp_path / "viper")
    ds = build_dataset(DatasetConfig(type="viper-seq", root=str(root)), train=False)
    assert len(ds) == 2  # split file without a final newline
    assert abs(frames_of(ds[1])[0] - frame_value(18)) <= 2  # JPEG
    # The published archives keep one folder per offset ("imtk" for t-1, "im" for t).
    cfg = DatasetConfig(
        type="viper-seq",
        root=str(root),
        flow_roots=[None, "flow/backward_k1/train", str(root / "flow/backward_k1/train")],
    )
    has_flow = build_dataset(cfg, train=False)[0]["flow_valid"].flatten(1).any(1)
    assert has_flow.tolist() == [False, True, True]

    sroot = synthia_seq(tmp_path / "synthia")
    sds = build_dataset(DatasetConfig(type="synthia-seq", root=str(sroot)), train=False)
    assert [e.name for e in sds.entries] == ["000002", "000003", "000004", "000005"]
    assert frames_of(sds[0]) == [frame_value(f) for f in (0, 1, 2)]


def test_bddvid_maps_its_frame_step_onto_canonical_offsets(tmp_path: Path):
    root = bddvid(tmp_path / "bdd")
    ds = build_dataset(DatasetConfig(type="bddvid", root=str(root)), train=False)
    assert [p.name for p in ds.entries[0].frames] == [
        "53f06672-e942bc38_303.jpg",
        "53f06672-e942bc38_305.jpg",
        "53f06672-e942bc38_307.jpg",
    ]
    sample = ds[0]
    assert all(
        abs(a - frame_value(f)) <= 2
        for a, f in zip(frames_of(sample), (303, 305, 307), strict=True)
    )
    assert set(sample["label"].unique().tolist()) == {0, 18, 255}
    val = build_dataset(DatasetConfig(type="bddvid", root=str(root), split="val_orig_10k"), False)
    assert val.entries[0].name == "c33ec7c6-ab13ff1b_307"
    with pytest.raises(DatasetError, match=r"offset -3 \(= -6 video frames.*-4\.\.4"):
        build_dataset(DatasetConfig(type="bddvid", root=str(root), offsets=[-3, 0]), False)


# --------------------------------------------------------------------------- bad input


def cs_cfg(root: Path, **kw) -> DatasetConfig:
    return DatasetConfig(type="cityscapes-seq", root=str(root), **kw)


def test_missing_frame_and_flow_are_reported_by_path_and_count(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    frame = root / "leftImg8bit_sequence/train/aachen/aachen_000000_000017_leftImg8bit.png"
    flow = root / "flow/backward_k1/train/bochum/bochum_000000_000312_leftImg8bit.png"
    frame.unlink()
    flow.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(cs_cfg(root), train=True)
    msg = str(err.value)
    assert "2 of 2 entries are incomplete" in msg
    assert f"1 missing frame files ({frame})" in msg and f"1 missing flow files ({flow})" in msg
    ds = build_dataset(cs_cfg(root, on_missing="drop", flow_offsets=[0]), train=True)
    assert [e.name for e in ds.entries] == ["bochum/bochum_000000_000313"]


def test_truncated_png_and_bad_label_values_and_flow_size(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    ds = build_dataset(cs_cfg(root), train=False)
    image = ds.entries[0].frames[2]
    image.write_bytes(image.read_bytes()[:60])
    with pytest.raises(DatasetError, match=f"cannot decode image {image}"):
        ds[0]
    label = write_label(ds.entries[1].label, (0, 19, 40))
    assert label.max() == 40
    with pytest.raises(DatasetError, match=r"values \[19, 40\] outside"):
        ds[1]
    root2 = cityscapes_seq(tmp_path / "cs2")
    ds2 = build_dataset(cs_cfg(root2), train=False)
    write_flow(ds2.entries[0].flows[2], np.zeros((10, 12, 2), np.float32))
    with pytest.raises(DatasetError, match=r"flow .* is 12x10 but the frames are 40x24"):
        ds2[0]


def test_empty_split_file_unknown_type_and_bad_offsets(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    (root / "splits/train.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match="holds no entries"):
        build_dataset(cs_cfg(root), train=False)
    with pytest.raises(DatasetError, match="unknown dataset type 'kitti'"):
        build_dataset(DatasetConfig(type="kitti", root=str(root)), train=False)
    with pytest.raises(DatasetError, match="root folder not found"):
        build_dataset(cs_cfg(tmp_path / "nowhere"), train=False)
    with pytest.raises(DatasetError, match=r"offset -20 .*-19\.\.10"):
        build_dataset(cs_cfg(root, offsets=[-20, 0]), train=False)
    with pytest.raises(DatasetError, match="flow_roots has 2 entries"):
        build_dataset(cs_cfg(root, flow_roots=["a", "b"]), train=False)
    sroot = synthia_seq(tmp_path / "synthia", frames=range(1, 4))  # frame 000001 has no t-2
    (sroot / "GT/LABELS/Stereo_Left/Omni_F/000001_labelTrainIds_updated.png").write_bytes(
        (sroot / "GT/LABELS/Stereo_Left/Omni_F/000002_labelTrainIds_updated.png").read_bytes()
    )
    with pytest.raises(DatasetError, match="'000001' has no frame at offset -2"):
        build_dataset(DatasetConfig(type="synthia-seq", root=str(sroot)), train=False)
