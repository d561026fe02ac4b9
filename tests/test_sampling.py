"""Rare-class sampling, the resumable training stream and its loader."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datatrees import cityscapes_seq, viper_seq

from vidda.config.schema import DatasetConfig, RCSConfig
from vidda.data.build import build_dataset
from vidda.data.clips import ClipEntry
from vidda.data.dataset import ClipDataset
from vidda.data.layout import DatasetError
from vidda.data.sampling import RareClassSampler, StreamSampler, TrainStream, train_loader
from vidda.data.transforms import ClipTransform


def fake_dataset(root: Path, names: list[str]) -> ClipDataset:
    layout = build_dataset(
        DatasetConfig(type="viper-seq", root=str(viper_seq(root))), train=False
    ).layout
    entries = [ClipEntry(n, (), root / f"{n}_labelTrainIds.png", ()) for n in names]
    return ClipDataset(layout, entries, [0], ClipTransform())


def write_stats(root: Path, rows: list[dict]) -> Path:
    path = root / "sample_class_stats.json"
    path.write_text(json.dumps(rows))
    return path


def test_rcs_class_frequencies_follow_the_softmax(tmp_path: Path):
    ds = fake_dataset(tmp_path / "v", ["a", "b", "c", "d"])
    write_stats(ds.layout.root, [
        {"file": "x/a_labelTrainIds.png", "0": 5000, "13": 4000},
        {"file": "x/b_labelTrainIds.png", "0": 4000, "2": 100},
        {"file": "x/c_labelTrainIds.png", "13": 3500, "2": 3500},  # only 3500 > min 3000
        {"file": "x/d_labelTrainIds.png", "13": 100, "2": 100},   # no class above min_pixels
        {"file": "x/zzz_labelTrainIds.png", "0": 10**9},          # not in the split: ignored
    ])  # fmt: skip
    rcs = RareClassSampler(ds, RCSConfig(enabled=True, class_temp=0.5))
    # Totals 0: 9000, 13: 7600, 2: 3700 of 20300 → f = .443, .374, .182; softmax((1 - f)/0.5)
    # ∝ e^1.113, e^1.251, e^1.635 = 3.044, 3.495, 5.130 → p = .261, .300, .440 (by hand).
    rng = np.random.default_rng(0)
    draws = [rcs.sample(rng) for _ in range(6000)]
    classes = np.array([c for c, _ in draws])
    for c, p in ((0, 0.261), (13, 0.300), (2, 0.440)):
        assert (classes == c).mean() == pytest.approx(p, abs=0.025)
    # Files are drawn among those with more than min_pixels of the class.
    assert {i for c, i in draws if c == 0} == {0, 1}
    assert {i for c, i in draws if c == 13} == {0, 2}
    assert {i for c, i in draws if c == 2} == {2}


def test_rcs_errors_name_the_file(tmp_path: Path):
    ds = fake_dataset(tmp_path / "v", ["a"])
    with pytest.raises(DatasetError, match="sample_class_stats.json.*vidda data convert"):
        RareClassSampler(ds, RCSConfig(enabled=True))
    write_stats(ds.layout.root, [{"file": "other_labelTrainIds.png", "0": 5000}])
    with pytest.raises(DatasetError, match="none of its 1 files"):
        RareClassSampler(ds, RCSConfig(enabled=True))
    (ds.layout.root / "sample_class_stats.json").write_text('{"not": "a list"}')
    with pytest.raises(DatasetError, match="expected a JSON list"):
        RareClassSampler(ds, RCSConfig(enabled=True))


def test_rcs_recrops_until_the_class_is_in_view(tmp_path: Path):
    root = viper_seq(tmp_path / "v")  # labels: thirds of classes 0, 13, 2 across 40 columns
    cfg = DatasetConfig(type="viper-seq", root=str(root), crop_size=[8, 8], flow_offsets=[])
    ds = build_dataset(cfg, train=True)
    write_stats(root, [{"file": f"{e.name}_labelTrainIds.png", "13": 320} for e in ds.entries])
    rcs = RareClassSampler(ds, RCSConfig(enabled=True, min_pixels=10, min_crop_ratio=2.0))
    stream = TrainStream(ds, seed=3, rcs=rcs)
    with_13 = [bool((stream[k]["source"]["label"] == 13).sum() > 20) for k in range(40)]
    assert all(with_13)  # an 8-px crop of a 40-px frame shows class 13 only about half the time


def test_stream_is_deterministic_per_sample_number(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    cfg = DatasetConfig(type="cityscapes-seq", root=str(root), crop_size=[16, 16], flip=True)
    src = build_dataset(cfg, train=True)
    stream = TrainStream(src, src, seed=1)
    a, b = stream[5], stream[5]
    for key in ("frames", "flows", "label"):
        assert torch.equal(a["source"][key], b["source"][key])
        assert torch.equal(a["target"][key], b["target"][key])
    others = [stream[k]["source"]["frames"] for k in range(6, 16)]
    assert any(not torch.equal(a["source"]["frames"], o) for o in others)


def test_sampler_resumes_where_it_stopped_and_splits_ranks():
    full = list(itertools.islice(StreamSampler(batch_size=2), 10))
    assert full == list(range(10))
    assert list(StreamSampler(2, start_step=3, stop_step=5)) == full[6:10]
    r0 = list(StreamSampler(2, 0, 2, rank=0, world_size=2))
    r1 = list(StreamSampler(2, 0, 2, rank=1, world_size=2))
    assert r0 == [0, 1, 4, 5] and r1 == [2, 3, 6, 7]
    assert len(StreamSampler(2, 1, 4)) == 6


def test_loader_batches_do_not_depend_on_worker_count(tmp_path: Path):
    root = cityscapes_seq(tmp_path / "cs")
    cfg = DatasetConfig(type="cityscapes-seq", root=str(root), crop_size=[16, 16], flip=True)
    stream = TrainStream(build_dataset(cfg, train=True), seed=0)
    serial = list(train_loader(stream, 2, num_workers=0, stop_step=3))
    parallel = list(train_loader(stream, 2, num_workers=2, stop_step=3))
    assert len(serial) == len(parallel) == 3
    for x, y in zip(serial, parallel, strict=True):
        assert x["source"]["frames"].shape == (2, 3, 3, 16, 16)
        assert torch.equal(x["source"]["frames"], y["source"]["frames"])
        assert torch.equal(x["source"]["flows"], y["source"]["flows"])


def test_rcs_candidates_hold_more_than_min_pixels(tmp_path: Path):
    ds = fake_dataset(tmp_path / "v", ["a", "b", "c"])
    write_stats(ds.layout.root, [
        {"file": "x/a_labelTrainIds.png", "0": 5000, "5": 3000},  # exactly min_pixels: not enough
        {"file": "x/b_labelTrainIds.png", "0": 5000, "5": 3001},
        {"file": "x/c_labelTrainIds.png", "0": 2999, "5": 3001},
    ])  # fmt: skip
    rcs = RareClassSampler(ds, RCSConfig(enabled=True, min_pixels=3000))
    assert rcs.candidates[5].tolist() == [1, 2] and rcs.candidates[0].tolist() == [0, 1]


def test_streams_of_neighbouring_seeds_draw_differently(tmp_path: Path):
    """Sample k of seed s is drawn from default_rng([s, k]): run s+1 does not replay run s
    shifted by one sample (as a seed s + k would)."""
    root = cityscapes_seq(tmp_path / "cs")
    cfg = DatasetConfig(type="cityscapes-seq", root=str(root), crop_size=[16, 16], flip=True)
    ds = build_dataset(cfg, train=True)
    a, b = TrainStream(ds, seed=0), TrainStream(ds, seed=1)
    same = [torch.equal(a[k + 1]["source"]["frames"], b[k]["source"]["frames"]) for k in range(6)]
    assert not all(same)
    assert torch.equal(a[3]["source"]["frames"], TrainStream(ds, seed=0)[3]["source"]["frames"])
