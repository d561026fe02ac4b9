"""BDDVid builder: frames from videos (rotation tags, upside-down videos), layout, links, resume.

Every input is made here: a fake BDD10k tree and small videos written with OpenCV (mp4v in
.mov/.mp4, MJPG in .avi, one inside a zip part). Each upright frame shows its own index as 9 binary
cells, so a test can tell that ``<id>_305.jpg`` really is decoded frame 305. Rotation tags are
real container metadata: the display matrix of the QuickTime/MP4 track header (``tkhd``) is
rewritten after writing, which is what OpenCV reads as ``CAP_PROP_ORIENTATION_META``.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidda.data import bddvid_build
from vidda.data.bddvid_build import (
    BDDVidBuildError,
    VideoError,
    build_bddvid,
    index_videos,
    orientation_diffs,
    read_frames,
    read_split_file,
    rotate_clockwise,
)
from vidda.errors import UserError

SIZE = (72, 128)  # H, W of the test videos' upright frames (BDD: 720, 1280)
FRAMES = range(303, 312)
N_FRAMES = 316
BITS = 9
CELL = 8
BITS_Y = (32, 48)
BITS_X0 = 24

A, B, C, D, E, F, G = (f"{c * 8}-0000000{i}" for i, c in enumerate("abcdefg", start=1))
TRAIN = [A, B, C, D, E]
VAL = [F, G]


# --------------------------------------------------------------------------- fixtures


def make_frame(n: int) -> np.ndarray:
    """An upright BGR test frame showing ``n`` as bits; clearly different when turned 180°."""
    h, w = SIZE
    ramp = np.linspace(30, 140, w, dtype=np.float32)
    img = np.repeat(np.repeat(ramp[None, :, None], h, axis=0), 3, axis=2).astype(np.uint8)
    img[:16, :16] = (255, 255, 255)  # bright block top-left
    img[-16:, :24] = (0, 0, 200)  # red block bottom-left
    y0, y1 = BITS_Y
    img[y0:y1, BITS_X0 : BITS_X0 + BITS * CELL] = 0
    for bit in range(BITS):
        if n >> bit & 1:
            x = BITS_X0 + bit * CELL
            img[y0:y1, x : x + CELL] = 255
    return img


def frame_index(img: np.ndarray) -> int:
    """The number shown by ``make_frame`` (after lossy coding)."""
    y0, y1 = BITS_Y
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    value = 0
    for bit in range(BITS):
        x = BITS_X0 + bit * CELL
        if grey[y0 + 3 : y1 - 3, x + 2 : x + CELL - 2].mean() > 128:
            value |= 1 << bit
    return value


def set_rotation_tag(path: Path, degrees: int) -> None:
    """Rewrite the track header's display matrix so players turn the picture clockwise."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, f"{path}: no tkhd box"
    version = data[at + 4]
    # after "tkhd": version/flags 4; times, track id, reserved, duration (v0: 20, v1: 32 bytes);
    # reserved 8, layer 2, alternate group 2, volume 2, reserved 2; then the 3x3 matrix
    matrix_at = at + 4 + 4 + (32 if version == 1 else 20) + 16
    cos, sin = round(np.cos(np.radians(degrees))), round(np.sin(np.radians(degrees)))
    matrix = [cos << 16, sin << 16, 0, -sin << 16, cos << 16, 0, 0, 0, 1 << 30]
    data[matrix_at : matrix_at + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def write_video(
    path: Path, n_frames: int = N_FRAMES, tag: int = 0, upside_down: bool = False
) -> Path:
    """A video whose displayed frame n is ``make_frame(n)`` (turned 180° if ``upside_down``).

    The picture is stored turned against ``tag`` (e.g. portrait for ±90°, as BDD100K), so only
    a decoder honouring the tag sees it upright.
    """
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    coded_hw = SIZE if tag % 180 == 0 else SIZE[::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, coded_hw[::-1])
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for n in range(n_frames):
        shown = rotate_clockwise(make_frame(n), 180) if upside_down else make_frame(n)
        writer.write(rotate_clockwise(shown, -tag))
    writer.release()
    if tag:
        set_rotation_tag(path, tag)
    return path


@dataclass
class World:
    bdd10k: Path
    videos: Path
    zips: Path
    splits: dict[str, Path]

    def build(self, out: Path, **kwargs) -> bddvid_build.BuildReport:
        kwargs = {"progress": False, "frame_size": SIZE, **kwargs}
        return build_bddvid(
            out,
            bdd10k_root=self.bdd10k,
            videos=[self.videos, self.zips],
            split_files=self.splits,
            **kwargs,
        )


def write_bdd10k(root: Path) -> None:
    """Stills (= upright frame 307) and masks; F only in BDD10k val, G nowhere."""
    rng = np.random.default_rng(0)
    for vid in [A, B, C, D, E, F]:
        split = "val" if vid == F else "train"
        still = root / "images" / "10k" / split / f"{vid}.jpg"
        mask = root / "labels" / "sem_seg" / "masks" / split / f"{vid}.png"
        still.parent.mkdir(parents=True, exist_ok=True)
        mask.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(still), make_frame(307))
        cv2.imwrite(str(mask), rng.integers(0, 19, SIZE, dtype=np.uint8))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("inputs")
    write_bdd10k(root / "bdd100k")
    videos = root / "videos"
    write_video(videos / "train" / "00" / "nested" / f"{A}.mov", tag=90)
    write_video(videos / "train" / "01" / f"{B}.mp4", tag=270)
    write_video(videos / "train" / "02" / f"{C}.mov", tag=90, upside_down=True)
    write_video(videos / "train" / "02" / f"{D}.mov", n_frames=300)
    write_video(videos / "val" / f"{G}.avi")
    (videos / "notes.txt").write_text("not a video")
    zips = root / "zips"
    zips.mkdir()
    f_video = write_video(root / "scratch" / f"{F}.mov")
    with zipfile.ZipFile(zips / "bdd100k_videos_val_00.zip", "w") as zf:
        zf.writestr("bdd100k/videos/val/", "")
        zf.write(f_video, f"bdd100k/videos/val/{F}.mov")
    f_video.unlink()
    splits = {"train": root / "train.txt", "val": root / "val.txt"}
    splits["train"].write_text("".join(f"{v}_307\n" for v in TRAIN))
    splits["val"].write_text(f"\n{F}_307\n  {G}_307  ")  # blank line, spaces, no final newline
    return World(root, videos, zips, splits)


def files_under(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() or p.is_symlink()  # broken links count too
    }


def expected_files(complete: dict[str, list[str]], frames_only: dict[str, list[str]]) -> set[str]:
    names = {"build_report.json", "splits/valid_imgs_train.txt", "splits/valid_imgs_val.txt"}
    for split, ids in complete.items():
        for vid in ids:
            names |= {f"{split}/labels/{vid}_307.png", f"{split}_orig_10k/labels/{vid}_307.png"}
            names.add(f"{split}_orig_10k/images/{vid}_307.jpg")
    for split in {*complete, *frames_only}:
        for vid in complete.get(split, []) + frames_only.get(split, []):
            for n in FRAMES:
                names.add(f"{split}/images/{vid}_{n}.jpg")
                if n != 307:
                    names.add(f"{split}_orig_10k/images/{vid}_{n}.jpg")
    return names


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("degrees", [0, 90, 180, 270, -90, 450])
def test_rotate_clockwise_matches_numpy(degrees: int):
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    expected = np.rot90(img, k=-(degrees // 90) % 4, axes=(0, 1))  # np.rot90 turns anticlockwise
    np.testing.assert_array_equal(rotate_clockwise(img, degrees), expected)


def test_rotate_clockwise_rejects_odd_angles():
    with pytest.raises(ValueError, match="multiple of 90"):
        rotate_clockwise(np.zeros((2, 3), np.uint8), 45)


def test_orientation_diffs_prefer_the_right_way_up():
    frame = make_frame(307)
    upright, turned = orientation_diffs(frame, frame)
    assert upright == 0.0 and turned > 20
    upright, turned = orientation_diffs(rotate_clockwise(frame, 180), frame)
    assert turned == 0.0 and upright > 20


def test_test_frames_survive_video_coding(world: World):
    decoded = read_frames(world.videos / "val" / f"{G}.avi", FRAMES, frame_size=SIZE)
    assert {n: frame_index(img) for n, img in decoded.frames.items()} == {n: n for n in FRAMES}


@pytest.mark.parametrize(("vid", "tag"), [(A, 90), (B, 270), (G, 0)])
def test_read_frames_honours_rotation_tag(world: World, vid: str, tag: int):
    path = index_videos([world.videos])[0][vid].path
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_ORIENTATION_META) == tag  # the fixture's tag is really read
    capture.release()
    decoded = read_frames(path, FRAMES, frame_size=SIZE)
    assert decoded.tag == tag and decoded.rotated_by == "vidda"
    for n, img in decoded.frames.items():
        assert img.shape == (*SIZE, 3)
        assert frame_index(img) == n


def test_read_frames_agrees_with_opencv_auto_rotation(world: World):
    path = index_videos([world.videos])[0][A].path
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    for _ in range(303):
        capture.grab()
    ok, auto = capture.read()
    capture.release()
    if not ok or auto.shape[:2] != SIZE:
        pytest.skip("this OpenCV build does not apply rotation tags automatically")
    ours = read_frames(path, FRAMES, frame_size=SIZE).frames[303]
    np.testing.assert_array_equal(ours, auto)


def test_read_frames_errors_name_the_video(world: World, tmp_path: Path):
    short = world.videos / "train" / "02" / f"{D}.mov"
    with pytest.raises(VideoError, match=rf"{D}\.mov: only 300 frames.*303\.\.311"):
        read_frames(short, FRAMES, frame_size=SIZE)
    tagged = world.videos / "train" / "01" / f"{B}.mp4"
    with pytest.raises(VideoError, match=rf"{B}\.mp4: frame 303 is 72x128.*expected 720x1280"):
        read_frames(tagged, FRAMES)
    bogus = tmp_path / "x.mov"
    bogus.write_bytes(b"not a video")
    with pytest.raises(VideoError, match="cannot open"):
        read_frames(bogus, FRAMES)


def test_index_videos_finds_files_and_zip_members(world: World):
    index, duplicates = index_videos([world.videos, world.zips])
    assert set(index) == {A, B, C, D, F, G}
    assert index[F].member == f"bdd100k/videos/val/{F}.mov" and index[A].member is None
    assert duplicates == {}
    index, duplicates = index_videos([world.videos, world.videos / "train" / "01" / f"{B}.mp4"])
    assert list(duplicates) == [B]


# --------------------------------------------------------------------------- build


def test_build_layout_content_and_report(world: World, tmp_path: Path):
    out = tmp_path / "bddvid"
    report = world.build(out)

    assert sorted(report.done) == [f"train/{A}", f"train/{B}", f"train/{C}", f"val/{F}"]
    assert sorted(report.failed) == [f"train/{D}", f"val/{G}"]
    assert "only 300 frames" in report.failed[f"train/{D}"]
    assert "mask" in report.failed[f"val/{G}"] and "still" in report.failed[f"val/{G}"]
    assert report.missing_videos == [E] and not report.ok
    assert report.rotated_180 == [C]
    assert report.missing_labels == [G] and report.missing_stills == [G]
    assert report.from_bdd10k_val == [F]
    assert report.bdd10k_found_in == {
        "labels": {"train": 5, "val": 1},
        "stills": {"train": 5, "val": 1},
    }
    assert report.orientation_unverified == [f"val/{G}"]
    assert report.orientation[f"train/{B}"]["tag"] == 270
    assert json.loads((out / "build_report.json").read_text()) == report.to_dict()
    assert f"videos not found: 1 ({E})" in report.summary()

    complete = {"train": [A, B, C], "val": [F]}
    assert files_under(out) == expected_files(complete, {"val": [G]})

    for split, ids in {"train": [A, B, C], "val": [F, G]}.items():
        for vid in ids:
            for n in FRAMES:
                img = cv2.imread(str(out / split / "images" / f"{vid}_{n}.jpg"))
                assert img.shape == (*SIZE, 3)
                assert frame_index(img) == n, (vid, n)
                link = out / f"{split}_orig_10k" / "images" / f"{vid}_{n}.jpg"
                if n != 307:  # relative link to the video frame
                    assert link.is_symlink() and not os.readlink(link).startswith("/")
                    assert link.resolve() == (out / split / "images" / f"{vid}_{n}.jpg").resolve()

    bdd = world.bdd10k / "bdd100k"
    still = out / "train_orig_10k" / "images" / f"{A}_307.jpg"
    assert os.readlink(still) == str(bdd / "images" / "10k" / "train" / f"{A}.jpg")
    for folder in ("val", "val_orig_10k"):
        label = out / folder / "labels" / f"{F}_307.png"
        assert os.readlink(label) == str(bdd / "labels" / "sem_seg" / "masks" / "val" / f"{F}.png")
    assert (out / "splits" / "valid_imgs_val.txt").read_bytes() == world.splits["val"].read_bytes()


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_hardlink_and_copy_modes(world: World, tmp_path: Path, mode: str):
    out = tmp_path / "bddvid"
    world.build(out, link_mode=mode)
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    mask = world.bdd10k / "bdd100k" / "labels" / "sem_seg" / "masks" / "train" / f"{A}.png"
    label = out / "train_orig_10k" / "labels" / f"{A}_307.png"
    assert label.read_bytes() == mask.read_bytes()
    frame = out / "train" / "images" / f"{A}_305.jpg"
    orig = out / "train_orig_10k" / "images" / f"{A}_305.jpg"
    assert orig.read_bytes() == frame.read_bytes()
    assert os.path.samefile(label, mask) == (mode == "hardlink")
    assert os.path.samefile(orig, frame) == (mode == "hardlink")
    frame.unlink()  # a rebuilt frame gets a fresh hardlink/copy in train_orig_10k
    world.build(out, link_mode=mode)
    assert os.path.samefile(orig, frame) == (mode == "hardlink")


def test_rerun_skips_and_rebuilds_only_what_is_missing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "bddvid"
    world.build(out)
    stamps = {p: p.lstat().st_mtime_ns for p in out.rglob("*.jpg")}
    decoded: list[str] = []
    real_read_frames = bddvid_build.read_frames

    def counting_read_frames(path, *args, **kwargs):
        decoded.append(Path(path).stem)
        return real_read_frames(path, *args, **kwargs)

    monkeypatch.setattr(bddvid_build, "read_frames", counting_read_frames)

    report = world.build(out)
    assert decoded == [D]  # only the short video is tried again
    assert sorted(report.skipped) == [f"train/{A}", f"train/{B}", f"train/{C}", f"val/{F}"]
    assert report.done == [] and report.rotated_180 == [C]  # carried over from the first report
    assert {p: p.lstat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps

    decoded.clear()
    (out / "train" / "images" / f"{A}_305.jpg").unlink()
    (out / "train_orig_10k" / "labels" / f"{B}_307.png").unlink()
    report = world.build(out)
    assert sorted(decoded) == [A, D]
    assert sorted(report.done) == [f"train/{A}", f"train/{B}"]
    assert frame_index(cv2.imread(str(out / "train" / "images" / f"{A}_305.jpg"))) == 305
    assert (out / "train_orig_10k" / "labels" / f"{B}_307.png").exists()
    changed = {p for p, t in stamps.items() if p.lstat().st_mtime_ns != t}
    assert changed == {out / "train" / "images" / f"{A}_305.jpg"}

    decoded.clear()
    report = world.build(out, overwrite=True)
    assert len(decoded) == 6 and len(report.done) == 4


def test_workers_give_the_same_result(world: World, tmp_path: Path):
    serial = world.build(tmp_path / "serial")
    parallel = world.build(tmp_path / "parallel", workers=2)
    assert files_under(tmp_path / "serial") == files_under(tmp_path / "parallel")
    for name in ("done", "failed", "rotated_180", "missing_videos", "orientation"):
        assert getattr(serial, name) == getattr(parallel, name), name
    assert not (tmp_path / "parallel" / ".tmp_videos").exists()


def test_split_files_in_the_output_folder_are_reused(world: World, tmp_path: Path):
    out = tmp_path / "bddvid"
    (out / "splits").mkdir(parents=True)
    split = out / "splits" / "valid_imgs_val.txt"
    split.write_text(f"{F}_307\n")
    report = build_bddvid(
        out,
        bdd10k_root=world.bdd10k,  # the folder holding bdd100k/ is accepted too
        videos=world.zips,
        split_files={"val": split},
        progress=False,
        frame_size=SIZE,
    )
    assert report.done == [f"val/{F}"] and report.ok
    assert split.read_text() == f"{F}_307\n"


# --------------------------------------------------------------------------- bad input


def test_read_split_file_errors(tmp_path: Path):
    path = tmp_path / "split.txt"
    path.write_text(f"{A}_307\n\n{B}_307\r\n")
    assert read_split_file(path) == [A, B]
    for text, pattern in [
        ("", "holds no entries"),
        (" \n\n", "holds no entries"),
        (f"{A}_307\n{B}.jpg\n", r"split\.txt:2: malformed split line"),
        (f"{A}_307\n\n{B}_308\n", r"split\.txt:3: .*expected '<videoid>_307'"),
        (f"{A}_307\n{A}_307\n", r"split\.txt:2: .*listed twice \(also on line 1\)"),
    ]:
        path.write_text(text)
        with pytest.raises(BDDVidBuildError, match=pattern):
            read_split_file(path)
    with pytest.raises(BDDVidBuildError, match="split file not found"):
        read_split_file(tmp_path / "nope.txt")


def test_bad_inputs_are_user_errors(world: World, tmp_path: Path):
    out = tmp_path / "out"
    good = {
        "bdd10k_root": world.bdd10k,
        "videos": world.videos,
        "split_files": world.splits,
        "progress": False,
        "frame_size": SIZE,
    }
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        ({"bdd10k_root": tmp_path / "nope"}, "BDD10k folder not found"),
        ({"bdd10k_root": empty_dir}, r"not a BDD10k folder: expected images/10k/\{train,val\}"),
        ({"videos": tmp_path / "no_videos"}, "video folder not found"),
        ({"videos": empty_dir}, "no videos"),
        ({"videos": []}, "no video folder given"),
        ({"videos": world.splits["train"]}, "expected a folder of BDD100K videos"),
        ({"split_files": {}}, "no split files"),
        ({"split_files": {"train/x": world.splits["train"]}}, "split name"),
        ({"split_files": {"train": tmp_path / "nope.txt"}}, "split file not found"),
        ({"link_mode": "move"}, "link mode 'move'"),
        ({"frames": range(303, 307)}, "key frame 307 is not among"),
        ({"workers": -1}, "workers"),
    ]
    for change, pattern in cases:
        with pytest.raises(BDDVidBuildError, match=pattern) as info:
            build_bddvid(out, **{**good, **change})
        assert isinstance(info.value, UserError)
    assert not out.exists()  # nothing written before the inputs are checked


def test_wrong_frame_size_fails_each_video_with_its_name(world: World, tmp_path: Path):
    split = tmp_path / "one.txt"
    split.write_text(f"{A}_307\n")
    report = build_bddvid(
        tmp_path / "out",
        bdd10k_root=world.bdd10k,
        videos=world.videos,
        split_files={"train": split},
        progress=False,
    )
    assert list(report.failed) == [f"train/{A}"]
    assert f"{A}.mov: frame 303 is 72x128" in report.failed[f"train/{A}"]
    assert "expected 720x1280" in report.failed[f"train/{A}"]
