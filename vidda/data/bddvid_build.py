"""Build BDDVid from BDD10k and the BDD100K videos (``vidda data build-bddvid``).

BDDVid pairs each BDD10k still (with its semantic mask) with frames of the BDD100K video it was
taken from. Everything is driven by the split files (``<videoid>_307`` per line): for every
entry the video is found by id among the user's videos (folders searched recursively, in any
layout, and/or the downloaded ``bdd100k_videos_*.zip`` parts, from which only the needed members
are extracted), decoded sequentially with OpenCV, and frames 303–311 (0-based decoded indices) are
written upright at 1280×720. Output (``<out>`` = the BDDVid root the loader reads)::

    <out>/<split>/images/<id>_{303..311}.jpg        video frames
    <out>/<split>/labels/<id>_307.png               BDD10k mask (link or copy)
    <out>/<split>_orig_10k/images/<id>_307.jpg      the BDD10k still (link or copy)
    <out>/<split>_orig_10k/images/<id>_{303..306,308..311}.jpg   links to the video frames
    <out>/<split>_orig_10k/labels/<id>_307.png      BDD10k mask (link or copy)
    <out>/splits/valid_imgs_<split>.txt             copies of the split files
    <out>/build_report.json                         what was done, skipped, failed, rotated

Fixes of the original scripts' defects: orientation comes from the video's rotation tag
(``CAP_PROP_ORIENTATION_META``) with OpenCV's auto-rotation switched off and the rotation applied
here, so the result does not depend on the OpenCV version; every frame must then be exactly the
expected size; decoded frame 307 is compared with the BDD10k still and with its 180° rotation, and
a video whose 180° rotation matches better is turned by 180° (reported as ``rotated_180``).
Frame 307 is linked once; the ``*_orig_10k/labels`` folders are created; ids are resolved by
searching all given videos, and missing ones are reported.

Decisions:
* JPEG quality 95 (OpenCV's default, as in the original scripts), written explicitly.
* Symlinks to BDD10k files are absolute; symlinks inside ``<out>`` (the ``*_orig_10k`` video
  frames) are relative, so the output folder can be moved as a whole.
* Masks and stills are looked up in BDD10k ``train`` first, then ``val`` (the original says every
  BDDVid image comes from BDD10k train); where each was found is counted in the report.
* Every file is written atomically (temporary name + rename). A rerun skips outputs that exist
  (``overwrite=False``): an entry is decoded again only when one of its video frames is missing,
  and only missing frames are written. An existing link is kept even if ``link_mode`` changed.
* Per-video problems (unreadable video, fewer frames than needed, wrong frame size, missing
  still or mask) fail that entry and are reported; they do not stop the build. Bad arguments and
  bad input folders raise ``BDDVidBuildError`` before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vidda.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_FRAMES = tuple(range(303, 312))
KEY_FRAME = 307
FRAME_SIZE = (720, 1280)  # H, W of a BDDVid frame
JPEG_QUALITY = 95
LINK_MODES = ("symlink", "hardlink", "copy")
VIDEO_SUFFIXES = (".mov", ".mp4", ".avi")
REPORT_NAME = "build_report.json"
CHECK_SIZE = (64, 36)  # W, H of the greyscale thumbnails compared in the orientation check
AMBIGUOUS_MARGIN = 0.1  # |d_upright - d_180| below this fraction of the larger → "ambiguous"
BDD10K_SPLITS = ("train", "val")  # search order for stills and masks
_SPLIT_LINE = re.compile(r"^(?P<id>[0-9A-Za-z][0-9A-Za-z-]*)_(?P<frame>\d+)$")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHOWN = 5  # ids shown in messages about many missing items


class BDDVidBuildError(UserError, ValueError):
    """Bad input to the BDDVid builder; the message names the file or value and what is expected."""


class VideoError(Exception):
    """One video cannot be used (unreadable, too short, wrong size); fails only that entry."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class VideoSource:
    """A video file, or a member of a zip archive (``member`` set) extracted when needed."""

    path: Path
    member: str | None = None

    def describe(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class Bdd10k:
    """A BDD10k download: stills ``images/10k/<s>/<id>.jpg``, masks ``labels/sem_seg/masks/<s>``."""

    root: Path
    stills: Mapping[str, frozenset[str]]  # BDD10k split → file names present
    masks: Mapping[str, frozenset[str]]

    def still(self, video_id: str) -> tuple[Path, str] | None:
        """The still of ``video_id`` and the BDD10k split it was found in (train first)."""
        return self._find(self.stills, self.root / "images" / "10k", f"{video_id}.jpg")

    def mask(self, video_id: str) -> tuple[Path, str] | None:
        """The semantic mask of ``video_id`` and the BDD10k split it was found in (train first)."""
        folder = self.root / "labels" / "sem_seg" / "masks"
        return self._find(self.masks, folder, f"{video_id}.png")

    @staticmethod
    def _find(
        names: Mapping[str, frozenset[str]], folder: Path, name: str
    ) -> tuple[Path, str] | None:
        for split in BDD10K_SPLITS:
            if name in names.get(split, ()):
                return folder / split / name, split
        return None


def open_bdd10k(root: str | os.PathLike) -> Bdd10k:
    """Check a BDD10k folder and list its stills and masks.

    ``root`` is the ``bdd100k`` folder of the unzipped downloads (holding ``images/10k`` and
    ``labels/sem_seg/masks``) or the folder containing it.

    Raises:
        BDDVidBuildError: the folder is missing or lacks the expected sub-folders.
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        raise BDDVidBuildError(f"BDD10k folder not found: {root}")
    if not (root / "images" / "10k").is_dir() and (root / "bdd100k" / "images" / "10k").is_dir():
        root = root / "bdd100k"
    stills = _list_names(root / "images" / "10k", ".jpg")
    masks = _list_names(root / "labels" / "sem_seg" / "masks", ".png")
    lacking = []
    if not stills:
        lacking.append("images/10k/{train,val}/<id>.jpg")
    if not masks:
        lacking.append("labels/sem_seg/masks/{train,val}/<id>.png")
    if lacking:
        raise BDDVidBuildError(
            f"{root} is not a BDD10k folder: expected {' and '.join(lacking)} under it "
            "(the unzipped BDD100K '10K images' and 'semantic segmentation labels' downloads)"
        )
    return Bdd10k(root=root, stills=stills, masks=masks)


def _list_names(folder: Path, suffix: str) -> dict[str, frozenset[str]]:
    """Per BDD10k split sub-folder of ``folder`` that exists: the names ending in ``suffix``."""
    found = {}
    for split in BDD10K_SPLITS:
        sub = folder / split
        if sub.is_dir():
            with os.scandir(sub) as entries:
                found[split] = frozenset(e.name for e in entries if e.name.endswith(suffix))
    return found


def read_split_file(path: str | os.PathLike, key_frame: int = KEY_FRAME) -> list[str]:
    """Video ids of a BDDVid split file, in file order (lines ``<videoid>_<key_frame:03d>``).

    Blank lines and surrounding whitespace are ignored; a missing final newline is fine.

    Raises:
        BDDVidBuildError: missing or empty file, a malformed line, another frame number than
            ``key_frame``, or an id listed twice (each names the file and line number).
    """
    path = Path(path)
    if not path.is_file():
        raise BDDVidBuildError(f"split file not found: {path}")
    expected = f"{key_frame:03d}"
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _SPLIT_LINE.match(line)
        if match is None or match["frame"] != expected:
            raise BDDVidBuildError(
                f"{path}:{number}: malformed split line {line!r}; expected "
                f"'<videoid>_{expected}' (e.g. '53f06672-e942bc38_{expected}')"
            )
        video_id = match["id"]
        if video_id in first_line:
            raise BDDVidBuildError(
                f"{path}:{number}: {line!r} is listed twice (also on line {first_line[video_id]})"
            )
        first_line[video_id] = number
        ids.append(video_id)
    if not ids:
        raise BDDVidBuildError(
            f"split file {path} holds no entries; expected '<videoid>_307' lines"
        )
    return ids


def index_videos(
    paths: Iterable[str | os.PathLike],
) -> tuple[dict[str, VideoSource], dict[str, list[str]]]:
    """Find every video by id (file stem) under ``paths``, once.

    Each path is a folder (searched recursively for ``*.mov``/``*.mp4``/``*.avi`` files and
    ``*.zip`` archives), a video file or a zip archive (its video members are indexed by base
    name; nothing is extracted here). Loose files take precedence over zip members; otherwise the
    first one found wins (paths in the given order, folders in sorted order).

    Returns:
        ``{id: source}`` and ``{id: [every place it was found]}`` for ids found more than once.

    Raises:
        BDDVidBuildError: a path does not exist or is neither a folder, a video nor a zip file.
    """
    files: list[Path] = []
    archives: list[Path] = []
    for path in _check_video_paths(paths):
        if path.is_dir():
            for found in _walk_sorted(path):
                suffix = found.suffix.lower()
                if suffix in VIDEO_SUFFIXES:
                    files.append(found)
                elif suffix == ".zip":
                    archives.append(found)
        elif path.suffix.lower() == ".zip":
            archives.append(path)
        else:
            files.append(path)
    sources: dict[str, list[VideoSource]] = {}
    for file in files:
        sources.setdefault(file.stem, []).append(VideoSource(file))
    for archive in archives:
        for member in _zip_videos(archive):
            stem = Path(member).stem
            sources.setdefault(stem, []).append(VideoSource(archive, member))
    index = {vid: found[0] for vid, found in sources.items()}
    duplicates = {vid: [s.describe() for s in f] for vid, f in sources.items() if len(f) > 1}
    return index, duplicates


def _check_video_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    checked = []
    for raw in paths:
        path = Path(os.path.abspath(Path(raw).expanduser()))
        if not path.exists():
            raise BDDVidBuildError(f"video folder not found: {path}")
        if path.is_file() and path.suffix.lower() not in (*VIDEO_SUFFIXES, ".zip"):
            raise BDDVidBuildError(
                f"{path}: expected a folder of BDD100K videos, a video file "
                f"({', '.join(VIDEO_SUFFIXES)}) or a zip of videos"
            )
        checked.append(path)
    if not checked:
        raise BDDVidBuildError("no video folder given; expected the unzipped BDD100K video parts")
    return checked


def _walk_sorted(folder: Path) -> Iterator[Path]:
    for current, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            yield Path(current) / name


def _zip_videos(archive: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise BDDVidBuildError(f"{archive}: cannot read zip archive ({err})") from err
    return [n for n in names if not n.endswith("/") and Path(n).suffix.lower() in VIDEO_SUFFIXES]


# --------------------------------------------------------------------------- frames


def rotate_clockwise(frame: np.ndarray, degrees: int) -> np.ndarray:
    """``frame`` [H, W, ...] turned clockwise by a multiple of 90° (negative: anticlockwise).

    This is how a video's rotation tag (OpenCV ``CAP_PROP_ORIENTATION_META``: the clockwise turn
    a player applies to the decoded picture) is honoured.

    Raises:
        ValueError: ``degrees`` is not a multiple of 90.
    """
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    turns = (degrees // 90) % 4
    codes = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return frame if turns == 0 else cv2.rotate(frame, codes[turns])


def orientation_diffs(frame: np.ndarray, still: np.ndarray) -> tuple[float, float]:
    """Mean absolute grey-level difference (0–255) of ``frame`` and of ``frame`` turned 180° to
    ``still``, on small greyscale thumbnails (so compression and slight misalignment matter little).
    """
    a = _thumbnail(frame)
    b = _thumbnail(still)
    return float(np.abs(a - b).mean()), float(np.abs(a[::-1, ::-1] - b).mean())


def _thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, CHECK_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class DecodedVideo:
    """Upright frames by decoded index, and how the rotation tag was handled."""

    frames: dict[int, np.ndarray]
    tag: int  # clockwise degrees from the video's rotation metadata
    rotated_by: str  # "vidda" (applied here) or "opencv" (backend would not switch auto off)


def read_frames(
    path: str | os.PathLike,
    frames: Sequence[int],
    *,
    frame_size: tuple[int, int] = FRAME_SIZE,
    name: str | None = None,
) -> DecodedVideo:
    """Decode ``path`` sequentially from frame 0 and return ``frames`` upright.

    OpenCV's automatic rotation is switched off and the rotation tag applied here; each returned
    frame is checked to be ``frame_size`` (H, W).

    Raises:
        VideoError: the video cannot be opened, has fewer frames than needed, has a rotation tag
            that is not a multiple of 90°, or its upright frames have another size.
    """
    name = name or str(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{name}: OpenCV cannot open this video")
        tag, opencv_rotates = _orientation_settings(capture, name)
        raw = _grab_frames(capture, frames, name)
    finally:
        capture.release()
    turn = 0 if opencv_rotates else tag
    upright = {n: rotate_clockwise(img, turn) for n, img in raw.items()}
    for n, img in upright.items():
        if img.shape[:2] != tuple(frame_size):
            h, w = img.shape[:2]
            raise VideoError(
                f"{name}: frame {n} is {h}x{w} (HxW) after applying its rotation tag ({tag}°); "
                f"expected {frame_size[0]}x{frame_size[1]}"
            )
    return DecodedVideo(upright, tag, "opencv" if opencv_rotates else "vidda")


def _orientation_settings(capture: cv2.VideoCapture, name: str) -> tuple[int, bool]:
    """The rotation tag (clockwise degrees, 0–270) and whether OpenCV still applies it itself."""
    meta = getattr(cv2, "CAP_PROP_ORIENTATION_META", None)
    auto = getattr(cv2, "CAP_PROP_ORIENTATION_AUTO", None)
    value = capture.get(meta) if meta is not None else 0.0
    tag = round(value)
    if tag % 90:
        raise VideoError(f"{name}: unsupported rotation tag {value}; expected a multiple of 90°")
    opencv_rotates = False
    if auto is not None:
        capture.set(auto, 0)
        opencv_rotates = capture.get(auto) != 0
    return tag % 360, opencv_rotates


def _grab_frames(
    capture: cv2.VideoCapture, frames: Sequence[int], name: str
) -> dict[int, np.ndarray]:
    wanted = set(frames)
    first, last = min(wanted), max(wanted)
    got: dict[int, np.ndarray] = {}
    index = 0
    while index <= last:
        if index < first:
            ok = capture.grab()
        else:
            ok, image = capture.read()
            if ok and index in wanted:
                got[index] = image
        if not ok:
            break
        index += 1
    if len(got) < len(wanted):
        raise VideoError(
            f"{name}: only {index} frames could be decoded; frames {first}..{last} are needed"
        )
    return got


# --------------------------------------------------------------------------- one entry


@dataclass(frozen=True)
class BuildSettings:
    """Everything a worker needs besides its task (picklable)."""

    out_root: Path
    frames: tuple[int, ...] = DEFAULT_FRAMES
    key_frame: int = KEY_FRAME
    frame_size: tuple[int, int] = FRAME_SIZE
    link_mode: str = "symlink"
    overwrite: bool = False

    def frame_path(self, split: str, video_id: str, n: int) -> Path:
        return self.out_root / split / "images" / f"{video_id}_{n:03d}.jpg"

    def label_path(self, split: str, video_id: str) -> Path:
        return self.out_root / split / "labels" / f"{video_id}_{self.key_frame:03d}.png"

    def orig_image_path(self, split: str, video_id: str, n: int) -> Path:
        return self.frame_path(f"{split}_orig_10k", video_id, n)

    def orig_label_path(self, split: str, video_id: str) -> Path:
        return self.label_path(f"{split}_orig_10k", video_id)

    def missing_frames(self, split: str, video_id: str) -> list[int]:
        """Frames to (re)write: all when overwriting, else those not on disk."""
        return [
            n
            for n in self.frames
            if self.overwrite or not self.frame_path(split, video_id, n).is_file()
        ]

    @property
    def tmp_dir(self) -> Path:
        return self.out_root / ".tmp_videos"


@dataclass(frozen=True)
class EntryTask:
    """One split entry: where its video, BDD10k still and mask are (None: not found)."""

    split: str
    video_id: str
    source: VideoSource | None
    still: Path | None
    mask: Path | None

    @property
    def key(self) -> str:
        return f"{self.split}/{self.video_id}"


@dataclass
class EntryResult:
    """What happened to one entry; ``status`` is done, skipped, failed or missing_video."""

    key: str
    video_id: str
    status: str
    reasons: list[str] = field(default_factory=list)
    orientation: dict | None = None


def build_entry(task: EntryTask, settings: BuildSettings) -> EntryResult:
    """Write (or complete) one entry's frames, labels and ``*_orig_10k`` files."""
    todo = settings.missing_frames(task.split, task.video_id)
    written: set[int] = set()
    orientation = None
    if todo:
        if task.source is None:
            return EntryResult(task.key, task.video_id, "missing_video", ["video not found"])
        try:
            frames, orientation = _decode_upright(task, settings)
        except (VideoError, cv2.error, OSError, zipfile.BadZipFile) as err:
            return EntryResult(task.key, task.video_id, "failed", [str(err)])
        for n in todo:
            _write_jpeg(settings.frame_path(task.split, task.video_id, n), frames[n])
            written.add(n)
    linked = _place_links(task, settings, rewritten=written)
    reasons = []
    if task.mask is None:
        reasons.append("no BDD10k mask in labels/sem_seg/masks/{train,val}")
    if task.still is None:
        reasons.append("no BDD10k still in images/10k/{train,val}")
    status = "failed" if reasons else "done" if written or linked else "skipped"
    return EntryResult(task.key, task.video_id, status, reasons, orientation)


def _decode_upright(task: EntryTask, settings: BuildSettings) -> tuple[dict[int, np.ndarray], dict]:
    """Decoded frames, upright and turned 180° where the still says so, plus the check's record."""
    assert task.source is not None
    with _local_video(task.source, settings.tmp_dir, task.key) as path:
        decoded = read_frames(
            path, settings.frames, frame_size=settings.frame_size, name=task.source.describe()
        )
    record: dict = {"tag": decoded.tag, "rotated_by": decoded.rotated_by, "verified": False}
    if task.still is None:
        return decoded.frames, record
    still = cv2.imread(str(task.still), cv2.IMREAD_COLOR)
    if still is None:
        raise VideoError(f"{task.still}: cannot read the BDD10k still")
    upright, turned = orientation_diffs(decoded.frames[settings.key_frame], still)
    flip = turned < upright
    record.update(
        verified=True,
        diff_upright=round(upright, 2),
        diff_180=round(turned, 2),
        rotated_180=flip,
        ambiguous=abs(upright - turned) < AMBIGUOUS_MARGIN * max(upright, turned),
    )
    frames = decoded.frames
    if flip:
        frames = {n: rotate_clockwise(img, 180) for n, img in frames.items()}
    return frames, record


@contextlib.contextmanager
def _local_video(source: VideoSource, tmp_dir: Path, key: str) -> Iterator[Path]:
    """The video as a file: itself, or its zip member extracted for as long as it is needed."""
    if source.member is None:
        yield source.path
        return
    tmp_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(source.member).suffix
    local = tmp_dir / f"{key.replace('/', '__')}-{os.getpid()}{suffix}"
    try:
        with (
            zipfile.ZipFile(source.path) as zf,
            zf.open(source.member) as src,
            open(local, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
        yield local
    finally:
        local.unlink(missing_ok=True)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _place_links(task: EntryTask, settings: BuildSettings, rewritten: set[int]) -> int:
    """Labels, the still and the ``*_orig_10k`` frame links of one entry; returns how many made.

    Hardlinks and copies of ``rewritten`` frames are made again (they would be stale); symlinks
    to them are still right.
    """
    split, vid, mode, again = task.split, task.video_id, settings.link_mode, settings.overwrite
    stale = rewritten if mode != "symlink" else set()
    made = 0
    if task.mask is not None:
        made += _place(settings.label_path(split, vid), task.mask, mode, again)
        made += _place(settings.orig_label_path(split, vid), task.mask, mode, again)
    if task.still is not None:
        still_dst = settings.orig_image_path(split, vid, settings.key_frame)
        made += _place(still_dst, task.still, mode, again)
    for n in settings.frames:
        src = settings.frame_path(split, vid, n)
        if n == settings.key_frame or not src.is_file():
            continue
        made += _place(settings.orig_image_path(split, vid, n), src, mode, again or n in stale)
    return made


def _place(dst: Path, src: Path, mode: str, refresh: bool) -> bool:
    """Make ``dst`` a symlink/hardlink/copy of ``src`` atomically, unless it exists already.

    Symlinks into ``dst``'s own tree (the builder's output) are relative, others absolute.
    """
    if not refresh and dst.exists():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dst)
    if os.path.lexists(tmp):
        tmp.unlink()
    if mode == "symlink":
        internal = _inside_output(src, dst)
        os.symlink(os.path.relpath(src, dst.parent) if internal else src, tmp)
    elif mode == "hardlink":
        os.link(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def _inside_output(src: Path, dst: Path) -> bool:
    """Whether ``src`` is another file of the output tree that holds ``dst`` (its grandparent)."""
    out_root = dst.parent.parent.parent
    return out_root in src.parents


# --------------------------------------------------------------------------- report


@dataclass
class BuildReport:
    """Outcome of a build. Entries are ``"<split>/<video id>"``; id lists hold video ids.

    Attributes:
        done: entries with something written in this run.
        skipped: entries that were complete already.
        failed: entry → reason (undecodable or short video, wrong frame size, missing still/mask).
        rotated_180: ids whose frames were turned 180° to match the BDD10k still.
        missing_videos: ids with no video among the given videos (and frames still to write).
        missing_labels / missing_stills: ids with no BDD10k mask / still.
        bdd10k_found_in: ``{"labels"|"stills": {"train": n, "val": m}}``.
        from_bdd10k_val: ids whose mask or still was found only in BDD10k ``val``.
        orientation: entry → rotation tag and still comparison (carried over for skipped entries
            from an earlier report in the same folder).
        orientation_unverified: entries decoded without a still to check against.
        orientation_ambiguous: entries whose upright and 180° scores were close (check by eye).
        duplicate_videos: id → every place a needed video was found (the first one was used).
    """

    out_root: str
    settings: dict
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rotated_180: list[str] = field(default_factory=list)
    missing_videos: list[str] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)
    missing_stills: list[str] = field(default_factory=list)
    bdd10k_found_in: dict[str, dict[str, int]] = field(default_factory=dict)
    from_bdd10k_val: list[str] = field(default_factory=list)
    orientation: dict[str, dict] = field(default_factory=dict)
    orientation_unverified: list[str] = field(default_factory=list)
    orientation_ambiguous: list[str] = field(default_factory=list)
    duplicate_videos: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every entry is complete (nothing failed or missing)."""
        return not self.failed and not self.missing_videos

    def to_dict(self) -> dict:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        tmp = _tmp_path(path)
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def summary(self) -> str:
        """A few lines for the terminal."""
        total = len(self.done) + len(self.skipped) + len(self.failed) + len(self.missing_videos)
        lines = [
            f"BDDVid in {self.out_root}: {total} entries, {len(self.done)} built, "
            f"{len(self.skipped)} already complete, {len(self.failed)} failed, "
            f"{len(self.missing_videos)} without video, {len(self.rotated_180)} turned 180°"
        ]
        if self.missing_videos:
            lines.append(f"videos not found: {_first_few(self.missing_videos)}")
        for key, reason in list(self.failed.items())[:_SHOWN]:
            lines.append(f"failed {key}: {reason}")
        if len(self.failed) > _SHOWN:
            lines.append(f"… {len(self.failed) - _SHOWN} more failures")
        lines.append(f"details: {Path(self.out_root) / REPORT_NAME}")
        return "\n".join(lines)


def _first_few(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return f"{len(items)} ({shown}{', …' if len(items) > _SHOWN else ''})"


# --------------------------------------------------------------------------- build


def build_bddvid(
    out_root: str | os.PathLike,
    *,
    bdd10k_root: str | os.PathLike,
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    split_files: Mapping[str, str | os.PathLike],
    frames: Iterable[int] = DEFAULT_FRAMES,
    key_frame: int = KEY_FRAME,
    link_mode: str = "symlink",
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    frame_size: tuple[int, int] = FRAME_SIZE,
) -> BuildReport:
    """Build (or complete) BDDVid in ``out_root``; see the module docstring for the layout.

    Args:
        out_root: the BDDVid root to write (created if needed).
        bdd10k_root: the unzipped BDD10k download (``images/10k``, ``labels/sem_seg/masks``).
        videos: folders (searched recursively), video files or zip parts holding the
            BDD100K videos ``<id>.mov``/``.mp4``.
        split_files: split name → file of ``<videoid>_307`` lines, e.g.
            ``{"train": .../valid_imgs_train.txt, "val": .../valid_imgs_val.txt}``.
        frames: decoded frame indices (0-based) to extract; must include ``key_frame``.
        key_frame: the labelled frame, matched against the BDD10k still.
        link_mode: how labels, stills and ``*_orig_10k`` frames are made: "symlink",
            "hardlink" (same file system as BDD10k) or "copy".
        workers: processes decoding videos in parallel; 0 decodes in this process.
        overwrite: rewrite outputs that exist; otherwise only missing ones are made.
        progress: show a progress bar.
        frame_size: (H, W) every upright frame must have (BDD100K: 720×1280).

    Returns:
        The report, also written to ``<out_root>/build_report.json``.

    Raises:
        BDDVidBuildError: bad arguments, BDD10k folder, video paths or split files.
    """
    frames_t = _check_frames(frames, key_frame)
    _check_choice(link_mode, workers, frame_size)
    bdd = open_bdd10k(bdd10k_root)
    splits = {name: read_split_file(path, key_frame) for name, path in _checked_splits(split_files)}
    video_paths = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    index, duplicates = index_videos(video_paths)
    out = Path(os.path.abspath(Path(out_root).expanduser()))
    settings = BuildSettings(out, frames_t, key_frame, tuple(frame_size), link_mode, overwrite)
    tasks = [_task(split, vid, index, bdd) for split, ids in splits.items() for vid in ids]
    _check_sources(tasks, index, settings, video_paths)
    out.mkdir(parents=True, exist_ok=True)
    _check_hardlink(link_mode, bdd.root, out)
    results = _run(tasks, settings, workers, progress)
    _copy_split_files(split_files, out)
    report = _report(tasks, results, settings, bdd, duplicates)
    report.write_json(out / REPORT_NAME)
    _remove_empty(settings.tmp_dir)
    _log_report(report)
    return report


def _check_frames(frames: Iterable[int], key_frame: int) -> tuple[int, ...]:
    try:
        result = tuple(sorted({int(n) for n in frames}))
    except (TypeError, ValueError) as err:
        raise BDDVidBuildError(f"frames must be integers, got {frames!r}") from err
    if not result or result[0] < 0:
        raise BDDVidBuildError(f"frames must be non-negative frame indices, got {list(result)}")
    if key_frame not in result:
        raise BDDVidBuildError(f"key frame {key_frame} is not among the frames {list(result)}")
    return result


def _check_choice(link_mode: str, workers: int, frame_size: Sequence[int]) -> None:
    if link_mode not in LINK_MODES:
        raise BDDVidBuildError(f"link mode {link_mode!r}: expected one of {', '.join(LINK_MODES)}")
    if workers < 0:
        raise BDDVidBuildError(f"workers must be >= 0, got {workers}")
    if len(frame_size) != 2 or min(frame_size) <= 0:
        raise BDDVidBuildError(f"frame size must be (H, W) > 0, got {tuple(frame_size)}")


def _checked_splits(split_files: Mapping[str, str | os.PathLike]) -> list[tuple[str, Path]]:
    if not split_files:
        raise BDDVidBuildError("no split files given; expected e.g. train= and val= split files")
    checked = []
    for name, path in split_files.items():
        if not _SPLIT_NAME.match(name) or name == "splits" or name.endswith("_orig_10k"):
            raise BDDVidBuildError(
                f"split name {name!r}: expected a plain folder name such as 'train' or 'val'"
            )
        checked.append((name, Path(path)))
    return checked


def _task(split: str, video_id: str, index: Mapping[str, VideoSource], bdd: Bdd10k) -> EntryTask:
    still = bdd.still(video_id)
    mask = bdd.mask(video_id)
    return EntryTask(
        split=split,
        video_id=video_id,
        source=index.get(video_id),
        still=still[0] if still else None,
        mask=mask[0] if mask else None,
    )


def _check_sources(
    tasks: Sequence[EntryTask],
    index: Mapping[str, VideoSource],
    settings: BuildSettings,
    video_paths: Sequence[str | os.PathLike],
) -> None:
    """Raise when no video at all was found although some entry still needs decoding."""
    if index:
        return
    if any(settings.missing_frames(t.split, t.video_id) for t in tasks):
        places = ", ".join(str(p) for p in video_paths)
        raise BDDVidBuildError(
            f"no videos ({', '.join(VIDEO_SUFFIXES)} files or zips of them) found under {places}; "
            "expected the BDD100K video parts, unzipped or as downloaded"
        )


def _check_hardlink(link_mode: str, bdd_root: Path, out: Path) -> None:
    if link_mode == "hardlink" and os.stat(bdd_root).st_dev != os.stat(out).st_dev:
        raise BDDVidBuildError(
            f"link mode 'hardlink' needs {out} on the same file system as {bdd_root}; "
            "use 'symlink' or 'copy'"
        )


def _run(
    tasks: Sequence[EntryTask], settings: BuildSettings, workers: int, progress: bool
) -> list[EntryResult]:
    results = []
    bar = tqdm(total=len(tasks), desc="BDDVid", unit="video", disable=not progress)
    with logging_redirect_tqdm(), bar:
        for result in _results(tasks, settings, workers):
            results.append(result)
            _log_entry(result)
            bar.update()
    return results


def _results(
    tasks: Sequence[EntryTask], settings: BuildSettings, workers: int
) -> Iterator[EntryResult]:
    if workers == 0:
        for task in tasks:
            yield build_entry(task, settings)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(build_entry, task, settings) for task in tasks]
        for future in as_completed(futures):
            yield future.result()


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes


def _log_entry(result: EntryResult) -> None:
    if result.status == "failed":
        log.warning("%s failed: %s", result.key, "; ".join(result.reasons))
    record = result.orientation or {}
    if record.get("rotated_180"):
        log.warning(
            "%s: decoded frame matches the BDD10k still better turned 180° (%.1f vs %.1f); "
            "all its frames were turned 180°",
            result.key,
            record["diff_180"],
            record["diff_upright"],
        )
    elif record.get("ambiguous"):
        log.warning("%s: orientation check is ambiguous (%s); check by eye", result.key, record)


def _copy_split_files(split_files: Mapping[str, str | os.PathLike], out: Path) -> None:
    folder = out / "splits"
    folder.mkdir(exist_ok=True)
    for name, path in split_files.items():
        dst = folder / f"valid_imgs_{name}.txt"
        if dst.exists() and os.path.samefile(path, dst):
            continue
        tmp = _tmp_path(dst)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dst)


def _report(
    tasks: Sequence[EntryTask],
    results: Sequence[EntryResult],
    settings: BuildSettings,
    bdd: Bdd10k,
    duplicates: Mapping[str, list[str]],
) -> BuildReport:
    report = BuildReport(
        out_root=str(settings.out_root),
        settings={
            "bdd10k_root": str(bdd.root),
            "frames": list(settings.frames),
            "key_frame": settings.key_frame,
            "frame_size": list(settings.frame_size),
            "link_mode": settings.link_mode,
            "jpeg_quality": JPEG_QUALITY,
            "opencv": cv2.__version__,
        },
    )
    earlier = _earlier_orientation(settings.out_root / REPORT_NAME)
    for result in sorted(results, key=lambda r: r.key):
        _add_result(report, result, earlier)
    ids = sorted({t.video_id for t in tasks})
    report.missing_labels = [v for v in ids if bdd.mask(v) is None]
    report.missing_stills = [v for v in ids if bdd.still(v) is None]
    report.bdd10k_found_in = {
        "labels": _count_sources(bdd.mask(v) for v in ids),
        "stills": _count_sources(bdd.still(v) for v in ids),
    }
    report.from_bdd10k_val = [
        v for v in ids if "val" in {s[1] for s in (bdd.mask(v), bdd.still(v)) if s}
    ]
    report.rotated_180 = sorted(
        {k.split("/", 1)[1] for k, r in report.orientation.items() if r.get("rotated_180")}
    )
    report.missing_videos = sorted(set(report.missing_videos))
    report.duplicate_videos = {v: duplicates[v] for v in ids if v in duplicates}
    return report


def _add_result(report: BuildReport, result: EntryResult, earlier: Mapping[str, dict]) -> None:
    if result.status == "missing_video":
        report.missing_videos.append(result.video_id)
        return
    {"done": report.done, "skipped": report.skipped}.get(result.status, []).append(result.key)
    if result.status == "failed":
        report.failed[result.key] = "; ".join(result.reasons)
    record = result.orientation or earlier.get(result.key)
    if record is None:
        return
    report.orientation[result.key] = record
    if not record.get("verified"):
        report.orientation_unverified.append(result.key)
    elif record.get("ambiguous"):
        report.orientation_ambiguous.append(result.key)


def _earlier_orientation(path: Path) -> dict[str, dict]:
    """Orientation records of an earlier build in the same folder (empty when unreadable)."""
    try:
        data = json.loads(path.read_text())
        records = data["orientation"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return records if isinstance(records, dict) else {}


def _count_sources(found: Iterable[tuple[Path, str] | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in found:
        if item is not None:
            counts[item[1]] = counts.get(item[1], 0) + 1
    return counts


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or not empty (another build still running)
        folder.rmdir()


def _log_report(report: BuildReport) -> None:
    log.info("%s", report.summary())
    if report.missing_videos:
        log.warning("videos not found: %s", _first_few(report.missing_videos))
    if report.duplicate_videos:
        log.warning(
            "%d videos found more than once; the first of each was used (see %s)",
            len(report.duplicate_videos),
            REPORT_NAME,
        )
