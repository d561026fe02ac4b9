"""Tests of the procedural synthetic video generator (vidda.data.datasets.synthetic)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidda.classes import CLASSES, NUM_CLASSES
from vidda.data.datasets.synthetic import (
    DOMAINS,
    SynthConfig,
    clip_seed,
    generate,
    render_clip,
)
from vidda.flow.io import read_flow

SMALL = SynthConfig(height=64, width=128, clips={"train": 4, "val": 2}, frames_per_clip=5)
TINY = SynthConfig(height=32, width=64, clips={"train": 2, "val": 1}, frames_per_clip=3)
GROUND = {CLASSES.index(n) for n in ("road", "sidewalk", "terrain")}
SKY = CLASSES.index("sky")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "small", seed=3, cfg=SMALL)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _samples(root: Path, domain: str, split: str) -> list[str]:
    text = (root / domain / f"{split}.txt").read_text()
    assert text.endswith("\n")
    return text.splitlines()


def _paths(root: Path, domain: str, split: str, clip: str, frame: int) -> dict[str, Path]:
    base = root / domain / split
    stem = f"{clip}_{frame:06d}"
    return {
        "image": base / "images" / clip / f"{stem}.png",
        "label": base / "labels" / clip / f"{stem}_labelTrainIds.png",
        "flow": base / "flow" / clip / f"{stem}.png",
    }


def _read_label(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _static_flow(
    depth: np.ndarray, cam_now: np.ndarray, cam_prev: np.ndarray, intr: tuple[float, float, float]
) -> np.ndarray:
    """Closed-form backward flow [H, W, 2] of a static world seen by a translating pinhole.

    ``depth`` [H, W] is the z-depth of each pixel's hit point at ``cam_now``.
    """
    f, cx, cy = intr
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    s = np.where(np.isfinite(depth), depth, 1.0).astype(np.float64)  # sky: any value, unused
    rel = np.stack([s * (u - cx) / f, s * (cy - v) / f, s], axis=-1) + (cam_now - cam_prev)
    u_prev = cx + f * rel[..., 0] / rel[..., 2]
    v_prev = cy - f * rel[..., 1] / rel[..., 2]
    return np.stack([u_prev - u, v_prev - v], axis=-1)


# --------------------------------------------------------------------------- layout & determinism


def test_layout(small: Path) -> None:
    meta = json.loads((small / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["config"] == SMALL.to_dict()
    assert not (small / ".incomplete").exists()
    for domain in DOMAINS:
        for split, n_clips in SMALL.clips.items():
            samples = _samples(small, domain, split)
            assert len(samples) == n_clips * (SMALL.frames_per_clip - SMALL.first_sample_frame)
            assert meta["counts"][domain][split]["samples"] == len(samples)
            for entry in samples:
                clip, stem = entry.split("/")
                assert stem.startswith(clip + "_") and len(stem.split("_")[1]) == 6
                t = int(stem.split("_")[1])
                assert t >= SMALL.first_sample_frame
                for frame in (t - 2, t - 1, t):
                    for kind, path in _paths(small, domain, split, clip, frame).items():
                        assert path.is_file() or (kind == "flow" and frame == 0), path
            clips = sorted(d.name for d in (small / domain / split / "images").iterdir())
            assert clips == [f"c{i:04d}" for i in range(n_clips)]
            for clip in clips:
                for frame in range(SMALL.frames_per_clip):
                    paths = _paths(small, domain, split, clip, frame)
                    assert paths["image"].is_file() and paths["label"].is_file()
                    assert paths["flow"].is_file() == (frame > 0)  # none for a first frame
                    label = _read_label(paths["label"])
                    assert label.dtype == np.uint8 and label.shape == (64, 128)
                    assert set(np.unique(label)) <= set(range(NUM_CLASSES))
                image = cv2.imread(str(_paths(small, domain, split, clip, 1)["image"]), -1)
                assert image.dtype == np.uint8 and image.shape == (64, 128, 3)
                flow = cv2.imread(str(_paths(small, domain, split, clip, 1)["flow"]), -1)
                assert flow.dtype == np.uint16 and flow.shape == (64, 128, 3)
            n_files = sum(1 for p in (small / domain / split).rglob("*") if p.is_file())
            assert n_files == n_clips * (3 * SMALL.frames_per_clip - 1)  # nothing stray


def test_determinism(tmp_path: Path) -> None:
    a = _hashes(generate(tmp_path / "a", seed=11, cfg=TINY))
    b = _hashes(generate(tmp_path / "b", seed=11, cfg=TINY))
    c = _hashes(generate(tmp_path / "c", seed=12, cfg=TINY))
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if "/images/" in k]
    assert all(a[k] != c[k] for k in images)
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["seed"] == 11


def test_generate_skips_rejects_and_recovers(tmp_path: Path) -> None:
    out = generate(tmp_path / "d", seed=5, cfg=TINY)
    meta = out / "meta.json"
    stamp = meta.stat().st_mtime_ns
    probe = _paths(out, "source", "train", "c0000", 1)["image"]
    probe_stamp = probe.stat().st_mtime_ns
    generate(out, seed=5, cfg=TINY)  # same seed and config: nothing to do
    assert meta.stat().st_mtime_ns == stamp and probe.stat().st_mtime_ns == probe_stamp
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(out, seed=6, cfg=TINY)
    # an interrupted run (no meta.json yet) is redone from scratch
    before = _hashes(out)
    meta.unlink()
    (out / ".incomplete").write_text("")
    probe.unlink()
    generate(out, seed=5, cfg=TINY)
    assert _hashes(out) == before
    generate(out, seed=6, cfg=TINY, overwrite=True)
    assert json.loads(meta.read_text())["seed"] == 6
    # folders of unknown origin are not deleted without overwrite=True
    (tmp_path / "e" / "source").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(tmp_path / "e", seed=5, cfg=TINY)


REQUIRED = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "traffic sign", "person",
            "car")  # fmt: skip


@pytest.mark.parametrize("domain", DOMAINS)
def test_required_classes_present(small: Path, domain: str) -> None:
    meta = json.loads((small / "meta.json").read_text())
    recorded = np.asarray(meta["counts"][domain]["train"]["class_pixels"])
    seen = np.zeros(NUM_CLASSES, dtype=np.int64)
    for path in (small / domain / "train" / "labels").rglob("*.png"):
        seen += np.bincount(_read_label(path).ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    np.testing.assert_array_equal(seen, recorded)
    missing = [name for name in REQUIRED if seen[CLASSES.index(name)] == 0]
    assert not missing


# --------------------------------------------------------------------------- flow


def _warp_nearest(prev_label: np.ndarray, flow: np.ndarray, valid: np.ndarray):
    """Sample ``prev_label`` at round(p + flow(p)) for valid p; returns (warped, usable mask)."""
    h, w = prev_label.shape
    v, u = np.mgrid[0:h, 0:w]
    qu = np.floor(u + flow[..., 0] + 0.5).astype(int)
    qv = np.floor(v + flow[..., 1] + 0.5).astype(int)
    usable = valid & (qu >= 0) & (qu < w) & (qv >= 0) & (qv < h)
    warped = np.full((h, w), 255, dtype=np.uint8)
    warped[usable] = prev_label[qv[usable], qu[usable]]
    return warped, usable


def test_flow_warps_labels_from_disk(small: Path) -> None:
    agree = total = 0
    valid_fracs, mags = [], []
    any_invalid = False
    for domain in DOMAINS:
        for split in SMALL.clips:
            for entry in _samples(small, domain, split):
                clip, stem = entry.split("/")
                t = int(stem.split("_")[1])
                now = _paths(small, domain, split, clip, t)
                flow, valid = read_flow(now["flow"])
                label = _read_label(now["label"])
                prev = _read_label(_paths(small, domain, split, clip, t - 1)["label"])
                warped, usable = _warp_nearest(prev, flow, valid)
                assert usable.sum() == valid.sum()  # valid flow never points outside the image
                agree += int((warped[usable] == label[usable]).sum())
                total += int(usable.sum())
                valid_fracs.append(valid.mean())
                mags.append(np.linalg.norm(flow[valid], axis=1).mean())
                any_invalid |= bool((~valid).any())
    assert agree / total >= 0.97, agree / total
    assert np.mean(valid_fracs) >= 0.8, np.mean(valid_fracs)
    assert np.mean(mags) > 0.5, np.mean(mags)
    assert any_invalid


def test_ground_flow_matches_closed_form() -> None:
    cfg = SynthConfig(height=64, width=128, clips={"train": 1}, frames_per_clip=3)
    frames = render_clip(clip_seed(0, "source", "train", 0), "source", cfg)
    f, cx, cy = frames[0].intrinsics
    h, w = cfg.height, cfg.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    for prev, now in zip(frames[:-1], frames[1:], strict=True):
        ground = np.isin(now.label, list(GROUND))
        assert ground.mean() > 0.2
        cam, cam0 = now.cam_pos, prev.cam_pos
        depth = cam[1] * f / (v - cy)  # the ray through (u, v) meets y = 0 at this z-depth
        np.testing.assert_allclose(now.depth[ground], depth[ground], rtol=1e-5)
        x = cam[0] + depth * (u - cx) / f
        z = cam[2] + depth
        u_prev = cx + f * (x - cam0[0]) / (z - cam0[2])
        v_prev = cy + f * cam0[1] / (z - cam0[2])
        expect = np.stack([u_prev - u, v_prev - v], axis=-1)
        np.testing.assert_allclose(now.flow[ground], expect[ground], atol=2e-3)
        assert now.flow_valid[ground].mean() > 0.9
        assert (np.abs(now.flow[ground]) > 0.05).any()


def test_static_world_flow_and_moving_objects() -> None:
    base = dict(height=64, width=128, clips={"train": 1}, frames_per_clip=4)
    seed = clip_seed(1, "source", "train", 0)
    still = render_clip(seed, "source", SynthConfig(**base, dynamic=False))
    for prev, now in zip(still[:-1], still[1:], strict=True):
        assert not now.moving.any()
        solid = now.label != SKY
        expect = _static_flow(now.depth, now.cam_pos, prev.cam_pos, now.intrinsics)
        np.testing.assert_allclose(now.flow[solid], expect[solid], atol=1e-2)
        assert np.all(now.flow[~solid] == 0)

    moved = mismatched = 0
    for s in range(3):
        frames = render_clip(clip_seed(1, "source", "train", s), "source", SynthConfig(**base))
        for prev, now in zip(frames[:-1], frames[1:], strict=True):
            expect = _static_flow(now.depth, now.cam_pos, prev.cam_pos, now.intrinsics)
            err = np.linalg.norm(now.flow - expect, axis=-1)
            static = (now.label != SKY) & ~now.moving
            assert err[static].max() < 1e-2
            moved += int(now.moving.sum())
            mismatched += int((err[now.moving] > 0.1).sum())
    assert moved > 0 and mismatched > 0.5 * moved


# --------------------------------------------------------------------------- domains


def _image_stats(root: Path, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean [3] and a normalised 3 x 16-bin colour histogram of the train images."""
    images = [
        cv2.imread(str(p))[:, :, ::-1] for p in (root / domain / "train" / "images").rglob("*.png")
    ]
    pixels = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64)
    hist = np.stack([np.histogram(pixels[:, c], bins=16, range=(0, 256))[0] for c in range(3)])
    return pixels.mean(axis=0), hist / hist.sum(axis=1, keepdims=True)


def test_domains_differ_in_colour_not_in_content(small: Path) -> None:
    mean_s, hist_s = _image_stats(small, "source")
    mean_t, hist_t = _image_stats(small, "target")
    assert np.abs(mean_s - mean_t).max() > 25, (mean_s, mean_t)
    assert 0.5 * np.abs(hist_s - hist_t).sum(axis=1).mean() > 0.3  # total variation distance

    meta = json.loads((small / "meta.json").read_text())["counts"]
    freq = {d: np.asarray(meta[d]["train"]["class_pixels"], dtype=np.float64) for d in DOMAINS}
    freq = {d: c / c.sum() for d, c in freq.items()}
    for name in ("road", "building", "sky", "car"):
        k = CLASSES.index(name)
        assert abs(freq["source"][k] - freq["target"][k]) < 0.1, name
    # ... while the scenes themselves are different
    first = ("train", "c0000", 0)
    labels = [_read_label(_paths(small, d, *first)["label"]) for d in DOMAINS]
    assert not np.array_equal(*labels)


def test_shift_zero_and_same_scene_seed() -> None:
    cfg0 = SynthConfig(height=48, width=96, clips={"train": 1}, frames_per_clip=3, shift=0.0)
    cfg1 = SynthConfig(height=48, width=96, clips={"train": 1}, frames_per_clip=3, shift=1.0)
    src = render_clip(42, "source", cfg1)
    tgt0 = render_clip(42, "target", cfg0)
    tgt1 = render_clip(42, "target", cfg1)
    for a, b, c in zip(src, tgt0, tgt1, strict=True):
        assert np.array_equal(a.image, b.image)
        assert not np.array_equal(a.image, c.image)
        assert np.array_equal(a.label, c.label)
        if a.flow is not None:
            assert np.array_equal(a.flow, c.flow) and np.array_equal(a.flow_valid, c.flow_valid)
    # generate() gives the two domains different scenes from the same distribution
    assert clip_seed(0, "source", "train", 0) != clip_seed(0, "target", "train", 0)
    assert clip_seed(0, "source", "train", 0) != clip_seed(0, "source", "val", 0)


# --------------------------------------------------------------------------- bad input


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'night'"):
        render_clip(0, "night", TINY)
    with pytest.raises(ValueError, match="height.*0"):
        SynthConfig(height=0)
    with pytest.raises(ValueError, match="width.*-5"):
        SynthConfig(width=-5)
    with pytest.raises(ValueError, match="frames_per_clip"):
        SynthConfig(frames_per_clip=0)
    with pytest.raises(ValueError, match="first_sample_frame"):
        SynthConfig(frames_per_clip=2, first_sample_frame=2)
    with pytest.raises(ValueError, match="shift"):
        SynthConfig(shift=-1.0)
    with pytest.raises(ValueError, match="'bad/split'"):
        SynthConfig(clips={"bad/split": 1})
    with pytest.raises(ValueError, match="-1"):
        generate(tmp_path / "never", seed=-1, cfg=TINY)
    assert not (tmp_path / "never").exists()
