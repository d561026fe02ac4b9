"""Flow estimation against analytic flows, and the resumable multiprocess flow writer.

Frames are built from a multi-scale smooth noise texture: ``frame_prev`` is the texture and
``frame_t`` samples it at p + f(p) (cv2.warpAffine with WARP_INVERSE_MAP), so f is, exactly,
the backward flow t → t−k that the estimators must return.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidda.errors import UserError
from vidda.flow.compute import FlowJob, compute_flows, kitti_png_size
from vidda.flow.estimate import (
    DISEstimator,
    RAFTEstimator,
    build_estimator,
    estimator_from_spec,
    forward_backward_valid,
)
from vidda.flow.io import read_flow, write_flow

H, W = 128, 160
MARGIN = 16  # pixels near the border are excluded from accuracy checks


def texture(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """uint8 [h, w, 3] RGB: gaussian-blurred noise at three scales, so every pyramid level has
    structure."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float32)
    for sigma in (1.5, 4.0, 10.0):
        noise = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), sigma)
        acc += (noise - noise.mean()) / noise.std()
    acc = (acc - acc.min()) / (acc.max() - acc.min()) * 255.0
    return np.rint(acc).astype(np.uint8)


def warp_affine(prev: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """frame_t(p) = prev(matrix @ [x, y, 1]): the backward flow is matrix @ [x, y, 1] − p."""
    h, w = prev.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(
        prev, matrix.astype(np.float32), (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT
    )


def affine_flow(matrix: np.ndarray, h: int = H, w: int = W) -> np.ndarray:
    """Analytic backward flow float32 [h, w, 2] of :func:`warp_affine` with ``matrix``."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    return (pts @ np.asarray(matrix, np.float64).T - pts[..., :2]).astype(np.float32)


def translation(u: float, v: float) -> np.ndarray:
    return np.array([[1.0, 0.0, u], [0.0, 1.0, v]])


def zoom(scale: float, h: int = H, w: int = W) -> np.ndarray:
    """frame_t is frame_prev magnified by ``scale`` about the image centre."""
    a, cx, cy = 1.0 / scale, (w - 1) / 2, (h - 1) / 2
    return np.array([[a, 0.0, cx * (1 - a)], [0.0, a, cy * (1 - a)]])


def interior_epe(flow: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Endpoint errors [H − 2·MARGIN, W − 2·MARGIN] away from the borders."""
    err = np.linalg.norm(flow - truth, axis=2)
    return err[MARGIN:-MARGIN, MARGIN:-MARGIN]


# --- DIS against analytic flows ------------------------------------------------------------


@pytest.mark.parametrize("preset", ["medium", "fast", "ultrafast"])
@pytest.mark.parametrize("uv", [(3.0, -2.0), (2.3, -1.6), (-0.4, 0.7)])
def test_dis_recovers_translation_in_backward_direction(preset: str, uv: tuple[float, float]):
    prev = texture()
    frame_t = warp_affine(prev, translation(*uv))
    flow, valid = DISEstimator(preset)(frame_t, prev)
    assert flow.dtype == np.float32 and flow.shape == (H, W, 2)
    assert valid.dtype == bool and valid.all()
    truth = affine_flow(translation(*uv))
    assert np.median(interior_epe(flow, truth)) < 0.25
    # Direction: the median vector is +f (backward), not −f (what swapped arguments give).
    median = np.median(flow[MARGIN:-MARGIN, MARGIN:-MARGIN].reshape(-1, 2), axis=0)
    assert np.linalg.norm(median - uv) < 0.25 < np.linalg.norm(median + np.asarray(uv))


@pytest.mark.parametrize(("preset", "max_median_epe"), [("medium", 0.15), ("ultrafast", 0.45)])
def test_dis_recovers_zoom_flow_field(preset: str, max_median_epe: float):
    prev = texture(seed=1)
    matrix = zoom(1.05)
    flow, _ = DISEstimator(preset)(warp_affine(prev, matrix), prev)
    truth = affine_flow(matrix)
    assert np.abs(truth).max() > 3.5  # the field really varies: up to ~4.8 px at the corners
    epe = interior_epe(flow, truth)
    assert np.median(epe) < max_median_epe
    assert np.percentile(epe, 90) < 2 * max_median_epe + 0.2


def test_dis_is_deterministic():
    prev = texture(seed=2)
    frame_t = warp_affine(prev, zoom(1.03))
    a, _ = DISEstimator()(frame_t, prev)
    b, _ = DISEstimator()(frame_t, prev)
    np.testing.assert_array_equal(a, b)


def test_dis_survives_pickling_after_use():
    import pickle

    prev = texture(seed=3)
    frame_t = warp_affine(prev, translation(1.0, 1.0))
    estimator = DISEstimator("fast")
    first, _ = estimator(frame_t, prev)
    clone = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(clone(frame_t, prev)[0], first)


def test_fb_check_marks_out_of_frame_strip_invalid():
    u = 12.0  # frame_t(x) = prev(x + 12): the last 12 columns of frame_t are not in frame_prev
    prev = texture(seed=4)
    frame_t = warp_affine(prev, translation(u, 0.0))
    flow, valid = DISEstimator(fb_check=False)(frame_t, prev)
    assert valid.all()  # without the check only non-finite vectors are invalid
    checked_flow, checked = DISEstimator(fb_check=True)(frame_t, prev)
    np.testing.assert_array_equal(checked_flow, flow)  # the check only changes the mask
    rows = slice(MARGIN, -MARGIN)
    outside = checked[rows, W - int(u) + 2 :]
    inside = checked[rows, MARGIN : W - int(u) - MARGIN]
    assert outside.mean() < 0.05
    assert inside.mean() > 0.95


def test_forward_backward_valid_flags_inconsistent_vectors():
    backward = np.full((8, 10, 2), (1.0, 0.0), np.float32)
    forward = np.full((8, 10, 2), (-1.0, 0.0), np.float32)
    forward[:, 5] = (3.0, 0.0)  # pixels landing in column 5 do not come back
    ok = forward_backward_valid(backward, forward, threshold=0.5, relative=0.0)
    assert not ok[:, 4].any()  # 4 + 1 = 5: inconsistent
    assert not ok[:, 9].any()  # 9 + 1 = 10: outside the frame
    assert ok[:, [0, 1, 2, 3, 5, 6, 7, 8]].all()


def test_dis_rejects_bad_inputs():
    frame = texture(32, 48)
    with pytest.raises(ValueError, match="differ in size"):
        DISEstimator()(frame, frame[:16])
    with pytest.raises(ValueError, match="uint8"):
        DISEstimator()(frame.astype(np.float32), frame)
    with pytest.raises(UserError, match="preset"):
        DISEstimator("slow")


# --- builders -------------------------------------------------------------------------------


def test_build_estimator_and_specs():
    assert isinstance(build_estimator(), DISEstimator)
    est = estimator_from_spec({"method": "dis", "preset": "fast", "fb_check": True})
    assert isinstance(est, DISEstimator) and est.preset == "fast" and est.fb_check
    assert estimator_from_spec(est) is est
    with pytest.raises(UserError, match="unknown flow method 'flownet'"):
        build_estimator("flownet")
    with pytest.raises(UserError, match="prest"):
        estimator_from_spec({"method": "dis", "prest": "fast"})
    with pytest.raises(UserError, match="weights_path"):
        build_estimator("raft")


# --- compute_flows --------------------------------------------------------------------------


def write_sequence(folder: Path, n: int = 4, h: int = 64, w: int = 96) -> list[Path]:
    """n frames of a texture panning right by ~1.5 px a frame and zooming slightly; RGB PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    base = texture(h, w, seed=5)
    paths = []
    for i in range(n):
        matrix = translation(-1.5 * i, 0.4 * i)
        matrix[:, :2] /= 1.0 + 0.01 * i
        path = folder / f"frame_{i:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(warp_affine(base, matrix), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def make_jobs(frames: list[Path], out_dir: Path) -> list[FlowJob]:
    return [
        FlowJob(frame=frames[i], prev=frames[i - 1], out=out_dir / f"flow_{i:03d}.png")
        for i in range(1, len(frames))
    ]


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_compute_writes_kitti_pngs_matching_the_estimator(tmp_path: Path):
    jobs = make_jobs(write_sequence(tmp_path / "frames"), tmp_path / "flows")
    report = compute_flows(jobs, "dis", workers=0, progress=False)
    assert (report.computed, report.skipped, report.rewritten) == (3, 0, 0)
    assert report.seconds > 0 and report.pairs_per_s > 0
    estimator = DISEstimator()
    for job in jobs:
        expected, _ = estimator(read_rgb(job.frame), read_rgb(job.prev))
        flow, valid = read_flow(job.out)
        assert valid.all()
        assert np.abs(flow - expected).max() <= 1 / 64
    assert not list((tmp_path / "flows").glob(".*"))  # no temporary files left behind


def test_compute_resumes_and_rewrites_damaged_outputs(tmp_path: Path):
    jobs = make_jobs(write_sequence(tmp_path / "frames", n=6), tmp_path / "flows")
    first = compute_flows(jobs, workers=0, progress=False)
    assert (first.computed, first.skipped, first.rewritten) == (5, 0, 0)
    original = [job.out.read_bytes() for job in jobs]
    mtimes = [job.out.stat().st_mtime_ns for job in jobs]

    again = compute_flows(jobs, workers=0, progress=False)
    assert (again.computed, again.skipped, again.rewritten) == (0, 5, 0)
    assert [job.out.stat().st_mtime_ns for job in jobs] == mtimes

    jobs[0].out.write_bytes(original[0][: len(original[0]) // 2])  # a killed non-atomic copy
    flipped = bytearray(original[1])
    flipped[len(flipped) // 2] ^= 0x10  # one bit flipped inside the compressed data
    jobs[1].out.write_bytes(bytes(flipped))
    write_flow(jobs[2].out, np.zeros((10, 12, 2), np.float32))  # stale file of another size
    cv2.imwrite(str(jobs[3].out), np.zeros((64, 96, 3), np.uint8))  # right size, not a flow
    fixed = compute_flows(jobs, workers=0, progress=False)
    assert (fixed.computed, fixed.skipped, fixed.rewritten) == (0, 1, 4)
    assert sorted(fixed.rewritten_paths) == [job.out for job in jobs[:4]]
    assert [job.out.read_bytes() for job in jobs] == original

    jobs[4].out.unlink()
    resumed = compute_flows(jobs, workers=0, progress=False)
    assert (resumed.computed, resumed.skipped, resumed.rewritten) == (1, 4, 0)

    forced = compute_flows(jobs, workers=0, progress=False, overwrite=True)
    assert (forced.computed, forced.skipped, forced.rewritten) == (5, 0, 0)
    assert [job.out.read_bytes() for job in jobs] == original


def test_kitti_png_check_is_cheap_but_catches_damage(tmp_path: Path):
    path = tmp_path / "f.png"
    write_flow(path, np.full((20, 30, 2), 1.25, np.float32))
    assert kitti_png_size(path) == (20, 30)
    data = path.read_bytes()
    for damaged in (data[:-1], data[:40], data + b"junk", data[:50] + b"x" + data[51:]):
        path.write_bytes(damaged)
        assert kitti_png_size(path) is None
    assert kitti_png_size(tmp_path / "absent.png") is None


def test_compute_with_worker_processes_is_byte_identical(tmp_path: Path):
    frames = write_sequence(tmp_path / "frames")
    serial = make_jobs(frames, tmp_path / "serial")
    parallel = make_jobs(frames, tmp_path / "parallel")
    compute_flows(serial, "dis", workers=0, progress=False)
    report = compute_flows(parallel, {"method": "dis"}, workers=2, progress=False)
    assert report.computed == 3
    for a, b in zip(serial, parallel, strict=True):
        assert a.out.read_bytes() == b.out.read_bytes()


def test_compute_reports_missing_frames_before_writing_anything(tmp_path: Path):
    frames = write_sequence(tmp_path / "frames")
    gone = [tmp_path / "frames" / "lost_a.png", tmp_path / "frames" / "lost_b.png"]
    jobs = make_jobs(frames, tmp_path / "flows")
    jobs += [FlowJob(frame=gone[0], prev=frames[0], out=tmp_path / "flows" / "x.png")]
    jobs += [FlowJob(frame=frames[1], prev=gone[1], out=tmp_path / "flows" / "y.png")]
    with pytest.raises(UserError, match="2 input frame") as info:
        compute_flows(jobs, workers=0, progress=False)
    assert str(gone[0]) in str(info.value) and str(gone[1]) in str(info.value)
    assert not (tmp_path / "flows").exists()


def test_compute_rejects_frames_of_different_sizes(tmp_path: Path):
    big = write_sequence(tmp_path / "big", n=1, h=64, w=96)[0]
    small = write_sequence(tmp_path / "small", n=1, h=64, w=80)[0]
    job = FlowJob(frame=big, prev=small, out=tmp_path / "flows" / "f.png")
    with pytest.raises(UserError, match="differ in size") as info:
        compute_flows([job], workers=0, progress=False)
    assert str(big) in str(info.value) and str(small) in str(info.value)
    assert not job.out.exists()


def test_compute_rejects_bad_output_paths(tmp_path: Path):
    frames = write_sequence(tmp_path / "frames", n=2)
    with pytest.raises(UserError, match="suffix"):
        compute_flows([FlowJob(frames[1], frames[0], tmp_path / "f.jpg")], progress=False)
    same = FlowJob(frames[1], frames[0], tmp_path / "f.png")
    with pytest.raises(UserError, match="several jobs"):
        compute_flows([same, same], progress=False)


# --- RAFT (torchvision is an optional extra; not installed here) ----------------------------


def test_raft_without_torchvision_says_how_to_install(tmp_path: Path, monkeypatch):
    weights = tmp_path / "raft.pth"
    weights.write_bytes(b"not read before torchvision is found")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(UserError, match=r"pip install 'vidda\[raft\]'"):
        RAFTEstimator(weights)
    frames = write_sequence(tmp_path / "frames", n=2)
    job = FlowJob(frames[1], frames[0], tmp_path / "flows" / "f.png")
    with pytest.raises(UserError, match=r"vidda\[raft\]"):
        compute_flows([job], {"method": "raft", "weights_path": str(weights)}, progress=False)
    assert not job.out.exists()


def test_raft_names_a_missing_weights_file(tmp_path: Path):
    missing = tmp_path / "nowhere" / "raft_large.pth"
    with pytest.raises(UserError, match="raft_large.pth"):
        RAFTEstimator(missing)


def fake_torchvision(monkeypatch) -> None:
    """A stand-in ``torchvision.models.optical_flow`` whose 'RAFT' returns (image1_R, image2_R)
    as its flow, so the test can see the normalisation, argument order, padding and crop."""
    import torch

    class FakeRaft(torch.nn.Module):
        def __init__(self, param: str) -> None:
            super().__init__()
            self.register_parameter(param, torch.nn.Parameter(torch.zeros(1)))

        def forward(self, image1, image2, num_flow_updates: int = 12):
            assert image1.shape[-2] % 8 == 0 and image1.shape[-1] % 8 == 0
            assert image1.shape == image2.shape and num_flow_updates == 3
            return [torch.zeros_like(image1[:, :2]), torch.cat([image1[:, :1], image2[:, :1]], 1)]

    module = types.ModuleType("torchvision.models.optical_flow")
    module.raft_large = lambda weights=None, progress=False: FakeRaft("large_only")
    module.raft_small = lambda weights=None, progress=False: FakeRaft("small_only")
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", types.ModuleType("torchvision.models"))
    monkeypatch.setitem(sys.modules, "torchvision.models.optical_flow", module)


def test_raft_plumbing_with_a_stand_in_network(tmp_path: Path, monkeypatch):
    # Not a test of RAFT itself (torchvision is absent): of loading, padding, cropping, order.
    import torch

    fake_torchvision(monkeypatch)
    weights = tmp_path / "raft_small.pth"
    torch.save({"state_dict": {"module.small_only": torch.zeros(1)}}, weights)
    frame_t, prev = texture(37, 50, seed=6), texture(37, 50, seed=7)  # not multiples of 8
    flow, valid = RAFTEstimator(weights, iters=3)(frame_t, prev)
    assert flow.shape == (37, 50, 2) and flow.dtype == np.float32 and valid.all()
    np.testing.assert_allclose(flow[..., 0], frame_t[..., 0] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(flow[..., 1], prev[..., 0] / 127.5 - 1, atol=1e-6)
    with pytest.raises(UserError, match="not a torchvision RAFT state dict"):
        RAFTEstimator(weights, iters=3, variant="large")(frame_t, prev)
