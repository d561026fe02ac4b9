"""``type: video``: the user's footage as clips, with exact frame indices, splits, flows, a cache.

Every test frame carries its own index (8 black/white blocks, one bit each, which survive lossy
codecs), so the frames a clip holds are checked against the video frames they must be, not
against anything the code under test computed.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidda.config.schema import DatasetConfig
from vidda.data import video_cache
from vidda.data.build import build_dataset
from vidda.data.datasets import video as video_mod
from vidda.data.layout import DatasetError
from vidda.data.sampling import TrainStream, train_loader
from vidda.errors import UserError
from vidda.infer.sources import VideoFile, open_source

W, H = 64, 48
KEY = "data.target"


# --------------------------------------------------------------------------- helpers


def index_frame(i: int) -> np.ndarray:
    """uint8 [H, W, 3] RGB: bit b of ``i`` is block b (2 rows × 4 columns) white."""
    frame = np.zeros((H, W, 3), np.uint8)
    for b in range(8):
        if i >> b & 1:
            r, c = divmod(b, 4)
            frame[r * 24 : (r + 1) * 24, c * 16 : (c + 1) * 16] = 255
    return frame


def read_index(rgb: np.ndarray) -> int:
    """The index ``index_frame`` wrote, from the centres of its blocks (any codec noise)."""
    value = 0
    for b in range(8):
        r, c = divmod(b, 4)
        if rgb[r * 24 + 6 : r * 24 + 18, c * 16 + 4 : c * 16 + 12].mean() > 127:
            value |= 1 << b
    return value


def write_video(path: Path, n: int, codec: str = "mp4v", fps: float = 30, first: int = 0) -> Path:
    """A video whose frame i carries the index ``first + i``; skips if the codec is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (W, H))
    if not writer.isOpened():
        pytest.skip(f"OpenCV cannot write {codec} {path.suffix} here")
    for i in range(n):
        writer.write(index_frame(first + i)[..., ::-1].copy())
    writer.release()
    return path


def write_folder(folder: Path, frames: list[np.ndarray], names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names, strict=True):
        assert cv2.imwrite(str(folder / name), frame[..., ::-1].copy())
    return folder


def config(videos: list[Path | str], cache: Path, **kw) -> DatasetConfig:
    return DatasetConfig(type="video", videos=[str(v) for v in videos], cache_dir=str(cache), **kw)


def build(cfg: DatasetConfig, train: bool = False):
    return build_dataset(cfg, train=train, with_labels=False, key=KEY)


def clip_indices(ds) -> list[list[int]]:
    """The index written into each frame of each clip, read from the samples."""
    out = []
    for i in range(len(ds)):
        frames = ds[i]["frames"].permute(0, 2, 3, 1).numpy()
        out.append([read_index(f) for f in frames])
    return out


def key_of(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def stamp(path: Path) -> tuple[int, int]:
    """Inode and mtime: an atomic rewrite (a new file renamed over the old) changes both."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


@pytest.fixture
def counters(monkeypatch):
    """Counts video decoding passes and collects the ComputeReport of every flow run."""
    seen = {"decodes": 0, "reports": []}
    iterate, compute = VideoFile.__iter__, video_mod.compute_flows

    def counting_iter(self):
        seen["decodes"] += 1
        yield from iterate(self)

    def recording_compute(*args, **kwargs):
        report = compute(*args, **kwargs)
        seen["reports"].append(report)
        return report

    monkeypatch.setattr(VideoFile, "__iter__", counting_iter)
    monkeypatch.setattr(video_mod, "compute_flows", recording_compute)
    return seen


# --------------------------------------------------------------------------- frame indices


@pytest.mark.parametrize("codec,ext", [("mp4v", ".mp4"), ("MJPG", ".avi")])
@pytest.mark.parametrize(
    "frame_step,clip_stride,fps,frame_rate,step",
    # frame_step 0: round(fps / frame_rate); 30 / 17 = 1.76 rounds to 2
    [(1, 0, 30, 17, 1), (3, 2, 30, 17, 3), (0, 0, 30, 10, 3), (0, 5, 17, 17, 1), (0, 0, 30, 17, 2)],
)
def test_clip_frames_are_the_exact_video_frames(
    tmp_path, codec, ext, frame_step, clip_stride, fps, frame_rate, step
):
    n = 25
    video = write_video(tmp_path / f"drive{ext}", n, codec, fps)
    cfg = config([video], tmp_path / "cache", frame_step=frame_step, clip_stride=clip_stride,
                 frame_rate=frame_rate, split="all")  # fmt: skip
    ds = build(cfg)
    stride = clip_stride or step
    keys = list(range(2 * step, n, stride))  # offsets [-2, -1, 0]: the first key reads frame 0
    assert [e.name for e in ds.entries] == [f"drive/drive_{k:06d}" for k in keys]
    assert clip_indices(ds) == [[k - 2 * step, k - step, k] for k in keys]
    assert ds.layout.frame_step == step and ds.layout.dataset == "video"
    assert (ds.layout.split, ds.layout.root) == ("all", tmp_path / "cache")
    info = ds.videos[0]
    assert (info.n_frames, info.frame_step, info.size, info.fps) == (n, step, (W, H), fps)
    assert all(e.label is None for e in ds.entries)
    assert ds.load(0).label is None


def test_only_the_frames_of_clips_are_cached(tmp_path):
    # decoding writes frames before the count is known; key 24 would read 21, which is removed
    video = write_video(tmp_path / "v.mp4", 23)
    ds = build(config([video], tmp_path / "cache", frame_step=3, clip_stride=6, split="all"))
    keys = (6, 12, 18)
    wanted = {k + o * 3 for k in keys for o in (-2, -1, 0)}
    cached = {int(p.stem) for p in (ds.videos[0].folder / "frames").glob("*.png")}
    assert cached == wanted
    for i in sorted(wanted):
        assert read_index(cv2.imread(str(ds.frame_path(0, i)))[..., ::-1]) == i
    with pytest.raises(DatasetError, match="not cached"):
        ds.frame_path(0, 1)


def test_flow_at_the_earliest_offset_reads_one_step_further_back(tmp_path):
    video = write_video(tmp_path / "v.mp4", 12)
    cfg = config([video], tmp_path / "cache", offsets=[-1, 0], flow_offsets=[-1, 0],
                 frame_step=2, clip_stride=3, split="all")  # fmt: skip
    ds = build(cfg)
    keys = [4, 7, 10]  # offset -1's flow points into frame k - 4
    assert clip_indices(ds) == [[k - 2, k] for k in keys]
    cached = {int(p.stem) for p in (ds.videos[0].folder / "frames").glob("*.png")}
    assert cached == {k - d for k in keys for d in (4, 2, 0)}
    assert all(ds[i]["flow_valid"].all(dim=(1, 2)).tolist() == [True, True] for i in range(3))


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize("n,holdout,held", [(30, 0.25, 8), (25, 0.28, 7)])  # 0.28 · 25 = 7
def test_holdout_splits_are_disjoint_and_cover_all(tmp_path, n, holdout, held):
    video = write_video(tmp_path / "v.mp4", n)
    cache = tmp_path / "cache"
    keys = {}
    for split in ("train", "val", "all"):
        ds = build(config([video], cache, frame_step=1, clip_stride=1, holdout=holdout,
                          split=split))  # fmt: skip
        keys[split] = [idx[-1] for idx in clip_indices(ds)]
        assert keys[split] == [key_of(e.name) for e in ds.entries]
    start = n - held
    assert ds.videos[0].holdout_frames == range(start, n)
    assert keys["val"] and all(k >= start for k in keys["val"])
    assert keys["train"] and all(k < start for k in keys["train"])
    assert sorted(keys["train"] + keys["val"]) == keys["all"] == list(range(2, n))


# --------------------------------------------------------------------------- frame folders


def test_frame_folder_and_glob_sort_naturally(tmp_path):
    n = 12
    names = [f"f{i}.png" for i in range(n)]  # plain sorting would put f10 before f2
    order = np.random.default_rng(0).permutation(n)  # written out of order
    folder = write_folder(tmp_path / "seq", [index_frame(i) for i in order],
                          [names[i] for i in order])  # fmt: skip
    for spec in (folder, f"{folder}/f*.png"):
        ds = build(config([spec], tmp_path / "cache", split="all"))
        assert clip_indices(ds) == [[k - 2, k - 1, k] for k in range(2, n)]
        assert ds.videos[0].fps is None and ds.videos[0].frame_step == 1
        assert ds.entries[0].name == "seq/seq_000002"


def test_videos_sharing_a_stem_get_unique_names(tmp_path):
    a = write_video(tmp_path / "a" / "clip.mp4", 10)
    b = write_video(tmp_path / "b" / "clip.mp4", 10, first=50)
    ds = build(config([a, b], tmp_path / "cache", frame_step=1, clip_stride=4, split="all"))
    assert [e.name for e in ds.entries] == [
        "clip/clip_000002", "clip/clip_000006", "clip-2/clip-2_000002", "clip-2/clip-2_000006",
    ]  # fmt: skip
    assert [v.name for v in ds.videos] == ["clip", "clip-2"]
    assert read_index(cv2.imread(str(ds.frame_path(1, 6)))[..., ::-1]) == 56


def test_videos_with_different_rates_get_their_own_step(tmp_path):
    fast = write_video(tmp_path / "fast.mp4", 12, fps=34)  # 34 / 17: step 2
    slow = write_video(tmp_path / "slow.avi", 12, "MJPG", fps=17, first=100)  # step 1
    ds = build(config([fast, slow], tmp_path / "cache", clip_stride=4, split="all"))
    assert [v.frame_step for v in ds.videos] == [2, 1] and ds.layout.frame_step == 2
    assert clip_indices(ds) == [[k - 4, k - 2, k] for k in (4, 8)] + [
        [100 + k - 2, 100 + k - 1, 100 + k] for k in (2, 6, 10)
    ]


# --------------------------------------------------------------------------- flows


def test_flows_follow_the_backward_convention(tmp_path):
    shift, step, n = 2, 2, 7  # the content moves `shift` px right per video frame
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), (0, 0), 2)
    frames = [np.roll(base, shift * i, axis=1) for i in range(n)]
    folder = write_folder(tmp_path / "pan", frames, [f"{i:03d}.png" for i in range(n)])
    ds = build(config([folder], tmp_path / "cache", frame_step=step, split="all"))
    # frame m(x) = base(x - shift·m), so pixel x of frame m is at x - shift·step in m - step
    expected_u = -shift * step
    for i in range(len(ds)):
        sample = ds[i]
        flows, valid = sample["flows"].numpy(), sample["flow_valid"].numpy()
        assert not flows[0].any() and not valid[0].any()  # offset -2 is not in flow_offsets
        for t in (1, 2):
            u, v = flows[t, 0, 12:-12, 16:-12], flows[t, 1, 12:-12, 16:-12]
            assert valid[t, 12:-12, 16:-12].mean() > 0.95
            assert abs(np.median(u) - expected_u) < 0.25 and abs(np.median(v)) < 0.25
            assert np.mean(np.abs(u - expected_u) < 1.0) > 0.9


# --------------------------------------------------------------------------- the cache


def test_second_build_reuses_frames_and_flows(tmp_path, counters):
    video = write_video(tmp_path / "v.mp4", 30)
    cache = tmp_path / "cache"
    train = config([video], cache, frame_step=1, holdout=0.25, split="train")
    val = config([video], cache, frame_step=1, holdout=0.25, split="val")
    ds = build(train)
    assert counters["decodes"] == 1 and counters["reports"][-1].computed > 0
    build(val)  # its frames were decoded with train's: all splits share the cache
    assert counters["decodes"] == 1 and counters["reports"][-1].computed > 0
    folder = ds.videos[0].folder
    files = sorted(folder.rglob("*.png"))
    stamps = [stamp(p) for p in files]
    for cfg in (train, val):
        again = build(cfg)
        report = counters["reports"][-1]
        assert (report.computed, report.rewritten) == (0, 0) and report.skipped > 0
    assert counters["decodes"] == 1
    assert sorted(folder.rglob("*.png")) == files
    assert [stamp(p) for p in files] == stamps
    assert clip_indices(again) == clip_indices(build(val))


def test_changed_video_gets_a_new_folder(tmp_path, counters, capsys):
    video = write_video(tmp_path / "v.mp4", 12)
    cfg = config([video], tmp_path / "cache", frame_step=1, split="all")
    old = build_dataset(cfg, train=False, key=KEY, progress=True)
    assert "decode v" in capsys.readouterr().err
    write_video(video, 12, first=100)  # same path, different content
    new = build(cfg)
    assert counters["decodes"] == 2
    assert new.videos[0].folder != old.videos[0].folder
    assert old.videos[0].folder.is_dir()
    assert clip_indices(new) == [[100 + k - 2, 100 + k - 1, 100 + k] for k in range(2, 12)]


def test_killed_decode_resumes(tmp_path, counters):
    video = write_video(tmp_path / "v.mp4", 12)
    cfg = config([video], tmp_path / "cache", frame_step=1, split="all")
    ds = build(cfg)
    folder = ds.videos[0].folder
    (folder / "meta.json").unlink()  # as if killed after the frames, before the meta
    video_cache.frame_file(folder, 5).unlink()
    kept = {p: stamp(p) for p in (folder / "frames").glob("*.png")}
    assert clip_indices(build(cfg)) == clip_indices(ds)
    assert {p: stamp(p) for p in kept} == kept  # whole frames are not written again
    assert counters["decodes"] == 2 and video_cache.read_meta(folder).n_frames == 12


# --------------------------------------------------------------------------- bad input


def patched_avi(tmp_path: Path, rate: int) -> Path:
    """An MJPG AVI whose headers announce ``rate`` frames per second."""
    path = write_video(tmp_path / "norate.avi", 12, "MJPG", 10)
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 8 : avih + 12] = struct.pack("<I", 0)  # dwMicroSecPerFrame
    data[strh + 28 : strh + 36] = struct.pack("<II", 1, rate)  # dwScale, dwRate
    path.write_bytes(bytes(data))
    return path


def assert_user_error(cfg: DatasetConfig, *parts: str) -> str:
    with pytest.raises(DatasetError) as info:
        build(cfg)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_bad_videos_are_one_line_errors_naming_the_file(tmp_path, counters):
    cache = tmp_path / "cache"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    assert_user_error(config([text], cache), f"{KEY}.videos[0]", str(text))
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    writer.release()
    assert_user_error(config([empty], cache), f"{KEY}.videos[0]", str(empty))
    short = write_video(tmp_path / "short.mp4", 4)
    message = assert_user_error(config([short], cache, frame_step=3), f"{KEY}.videos[0]",
                                str(short), "4 frames", "needs 7", f"{KEY}.frame_step")  # fmt: skip
    assert f"{KEY}.offsets" in message
    cfg = config([write_video(tmp_path / "seven.mp4", 7)], cache, frame_step=3, flow_offsets=[-2])
    assert_user_error(cfg, "7 frames", "needs 10", f"{KEY}.flow_offsets")
    missing = tmp_path / "nowhere.mp4"
    good = write_video(tmp_path / "good.mp4", 12)
    decodes = counters["decodes"]
    assert_user_error(config([good, missing], cache), f"{KEY}.videos[1]", str(missing))
    assert counters["decodes"] == decodes  # every video is opened before any is decoded


def test_mixed_frame_sizes_name_the_odd_file(tmp_path):
    frames = [index_frame(i) for i in range(8)]
    frames[5] = cv2.resize(frames[5], (32, 24))
    folder = write_folder(tmp_path / "seq", frames, [f"{i}.png" for i in range(8)])
    assert_user_error(config([folder], tmp_path / "cache"), f"{KEY}.videos[0]",
                      str(folder / "5.png"), "32x24")  # fmt: skip


def test_unknown_frame_rate_needs_frame_step(tmp_path):
    # FFmpeg reads a rate of 0 as 25 fps, so the header announces an absurd one (1e6 fps),
    # which VideoFile reports as unknown like 0
    video = patched_avi(tmp_path, 1_000_000)
    assert VideoFile(video).fps is None
    assert_user_error(config([video], tmp_path / "cache"), str(video), f"set {KEY}.frame_step")
    ds = build(config([video], tmp_path / "cache", frame_step=2, split="all"))
    assert clip_indices(ds)[0] == [0, 2, 4] and ds.videos[0].fps is None


def test_zero_frame_rate_needs_frame_step(tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mp4", 12)
    capture = cv2.VideoCapture

    class ZeroRate:  # a delegate: subclasses of cv2.VideoCapture can crash at collection
        def __init__(self, *args) -> None:
            self._cap = capture(*args)

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_FPS else self._cap.get(prop)

        def __getattr__(self, name: str):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", ZeroRate)
    assert_user_error(config([video], tmp_path / "cache"), str(video), f"set {KEY}.frame_step")


def test_bad_settings_name_their_key(tmp_path):
    video = write_video(tmp_path / "v.mp4", 25)
    cache = tmp_path / "cache"
    assert_user_error(config([], cache), f"set {KEY}.videos")
    assert_user_error(config([video], cache, split="test"), f"{KEY}.split", "train, val, all")
    assert_user_error(config([video], ""), f"set {KEY}.cache_dir")
    assert_user_error(config([video], cache, flow_root="flows"), "computed and cached")
    assert_user_error(config([video], cache, split="val"), f"{KEY}.holdout")
    # 1 held-out frame (24); key frames 2, 5, ..., 23 at stride 3: none in the stretch
    assert_user_error(config([video], cache, frame_step=1, clip_stride=3, holdout=0.04,
                             split="val"), f"{KEY}.videos[0]", str(video))  # fmt: skip
    assert_user_error(config([video], cache, flow_estimator={"method": "nope"}),
                      f"{KEY}.flow_estimator")  # fmt: skip


# --------------------------------------------------------------------------- the pipeline


def test_train_transform_dataloader_and_pickling(tmp_path):
    video = write_video(tmp_path / "v.mp4", 20)
    cfg = config([video], tmp_path / "cache", frame_step=1, crop_size=[32, 40], flip=True)
    ds = build(cfg, train=True)
    sample = ds.get(0, np.random.default_rng(0))
    assert sample["frames"].shape == (3, 3, 32, 40) and sample["flows"].shape == (3, 2, 32, 40)
    clone = pickle.loads(pickle.dumps(ds))
    again = clone.get(3, np.random.default_rng(5))["frames"]
    assert torch.equal(again, ds.get(3, np.random.default_rng(5))["frames"])
    assert clone.videos == ds.videos
    # the trainer's stream (every draw from its own rng) in a worker process
    loader = train_loader(TrainStream(ds, ds, seed=3), batch_size=2, num_workers=1, stop_step=1)
    (batch,) = list(loader)
    assert batch["target"]["frames"].shape == (2, 3, 3, 32, 40)
    # the evaluator's way: the test transform, whole frames, in order
    test = build(config([video], tmp_path / "cache", frame_step=1), train=False)
    loader = torch.utils.data.DataLoader(test, batch_size=4, num_workers=1)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 3, 3, H, W)
    assert list(batch["name"]) == [f"v/v_{k:06d}" for k in range(2, 6)]
    frames = batch["frames"].permute(0, 1, 3, 4, 2).numpy()
    assert [[read_index(f) for f in clip] for clip in frames] == [
        [k - 2, k - 1, k] for k in range(2, 6)
    ]


def test_digest_covers_frame_names_and_bytes(tmp_path):
    frames = [index_frame(i) for i in range(3)]
    a = video_cache.source_digest(
        open_source(write_folder(tmp_path / "a", frames, ["0.png", "1.png", "2.png"]))
    )
    b = video_cache.source_digest(
        open_source(write_folder(tmp_path / "b", frames, ["x0.png", "x1.png", "x2.png"]))
    )
    c = video_cache.source_digest(
        open_source(write_folder(tmp_path / "c", frames, ["0.png", "1.png", "2.png"]))
    )
    assert a == c != b  # the folder's own name does not count, its files' names do
