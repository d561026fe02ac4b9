"""``type: video``: the user's own unlabelled footage as clips (``data.<key>.videos``).

Each entry of ``videos`` is a video file, a folder of frames or a quoted glob (as ``vidda infer``
reads them, :func:`vidda.infer.sources.open_source`). A clip's key frame k and its frames at
``k + o · frame_step`` for the canonical offsets o are cut from one video; key frames lie
``clip_stride`` video frames apart, the first one as early as the clip (and the flows it reads)
allows. The last ``ceil(holdout · n)`` frames of each video are held out: ``split: val`` is the
clips whose key frame lies there, ``split: train`` those before, ``split: all`` every clip.

Frames are decoded into a content-addressed cache (:mod:`vidda.data.video_cache`) and the
backward flows of the frames at ``flow_offsets`` are computed there with
:func:`vidda.flow.compute.compute_flows`; a second build, of any split, decodes and computes
nothing that is already cached.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidda.config.schema import DatasetConfig
from vidda.data.clips import ClipEntry
from vidda.data.dataset import ClipDataset
from vidda.data.layout import DatasetError, SequenceLayout
from vidda.data.transforms import ClipTransform
from vidda.data.video_cache import (
    VideoMeta,
    decode_to_cache,
    flow_folder,
    frame_file,
    read_meta,
    source_digest,
    write_meta,
)
from vidda.errors import UserError
from vidda.flow.compute import ComputeReport, FlowJob, compute_flows
from vidda.flow.estimate import estimator_from_spec
from vidda.infer.sources import FrameSource, ImageSequence, InputError, open_source

__all__ = ["SPLITS", "ClipGrid", "VideoClipDataset", "VideoInfo", "video_dataset"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "all")


@dataclass(frozen=True)
class ClipGrid:
    """Where the clips of one video lie, in video frames.

    step: video frames per canonical offset. stride: video frames between consecutive key
    frames. reads: the canonical offsets whose frames a clip reads: its offsets and, for each
    flow offset o, o − 1 (the frame its flow points into).
    """

    step: int
    stride: int
    reads: tuple[int, ...]

    @property
    def first_key(self) -> int:
        """The earliest key frame: the one whose earliest read frame is frame 0."""
        return -min(min(self.reads), 0) * self.step

    @property
    def span(self) -> int:
        """Video frames one clip covers, first read frame to last."""
        return (max(self.reads) - min(self.reads)) * self.step + 1

    def keys(self, n_frames: int) -> range:
        """Key frames of a video of ``n_frames`` frames (empty when it is shorter than a span)."""
        end = n_frames - max(max(self.reads), 0) * self.step
        return range(self.first_key, max(end, self.first_key), self.stride)

    def wanted(self, index: int) -> bool:
        """Whether frame ``index`` belongs to a clip of a long enough video (no end bound)."""
        for o in self.reads:
            k = index - o * self.step
            if k >= self.first_key and (k - self.first_key) % self.stride == 0:
                return True
        return False

    def frames(self, keys: Sequence[int]) -> set[int]:
        """Every frame the clips with these key frames read."""
        return {k + o * self.step for k in keys for o in self.reads}


@dataclass(frozen=True)
class VideoInfo:
    """One entry of ``videos``, as decoded.

    source: the path (or glob) given. name: unique readable name, the first part of its clip
    names. fps: frames per second, None for frame folders and globs. n_frames: frames decoded.
    frame_step: video frames per canonical offset. size: (W, H) pixels. holdout_frames: frame
    indices of the held-out stretch (empty without holdout). folder: its cache folder.
    """

    source: str
    name: str
    fps: float | None
    n_frames: int
    frame_step: int
    size: tuple[int, int]
    holdout_frames: range
    folder: Path
    digest: str


class VideoClipDataset(ClipDataset):
    """A ``ClipDataset`` of cached video frames, with the videos it was cut from (``videos``)."""

    def __init__(
        self,
        layout: SequenceLayout,
        entries: list[ClipEntry],
        offsets: list[int],
        transform: ClipTransform,
        videos: list[VideoInfo],
    ) -> None:
        super().__init__(layout, entries, offsets, transform)
        self.videos = videos

    def frame_path(self, video_index: int, frame_index: int) -> Path:
        """The cached PNG (uint8 RGB) of frame ``frame_index`` (0-based) of video ``video_index``.

        Only frames some clip of some split reads are cached. Raises DatasetError otherwise.
        """
        video = self.videos[video_index]
        path = frame_file(video.folder, frame_index)
        if not 0 <= frame_index < video.n_frames or not path.is_file():
            raise DatasetError(
                f"frame {frame_index} of {video.source} ({video.n_frames} frames) is not cached "
                f"in {video.folder}: only the frames of its clips are"
            )
        return path


def video_dataset(
    cfg: DatasetConfig,
    transform: ClipTransform,
    key: str,
    cache_dir: Path | None,
    progress: bool,
) -> VideoClipDataset:
    """Decode and cache ``cfg.videos``, compute their flows, and index the clips of ``cfg.split``.

    Args:
        cfg: the dataset section (``type: video``).
        transform: the clip pipeline (built by ``vidda.data.build.build_dataset``).
        key: the config section's name in error messages (``data.target``).
        cache_dir: the cache folder when ``cfg.cache_dir`` is "" (the trainer's run folder's).
        progress: show decoding and flow bars.

    Raises:
        DatasetError: a bad setting (naming ``<key>.<field>``) or a video that cannot be used
            (naming ``<key>.videos[i]`` and the file), all before anything trains.
    """
    _check_settings(cfg, key)
    root = _cache_root(cfg, key, cache_dir)
    spec = dict(cfg.flow_estimator)
    reads = tuple(sorted({*cfg.offsets, *(o - 1 for o in cfg.flow_offsets)}))
    names = unique_names([_stem(v) for v in cfg.videos])
    videos: list[VideoInfo] = []
    entries: list[ClipEntry] = []
    jobs: list[FlowJob] = []
    sources = [_open(cfg, spec_path, key, i) for i, spec_path in enumerate(cfg.videos)]
    for i, (spec_path, (source, step)) in enumerate(zip(cfg.videos, sources, strict=True)):
        where = f"{key}.videos[{i}]"
        grid = ClipGrid(step, cfg.clip_stride or step, reads)
        try:
            video = _cache_video(cfg, spec_path, source, grid, names[i], root, key, where, progress)
        except InputError as err:
            raise DatasetError(f"{where}: {err}") from err
        keys = _split_keys(cfg, video, grid, key, where)
        flows = flow_folder(video.folder, spec, video.frame_step)
        for k in keys:
            entry, entry_jobs = _entry(video, grid, k, cfg.offsets, cfg.flow_offsets, flows)
            entries.append(entry)
            jobs += entry_jobs
        videos.append(video)
    if not entries:
        raise DatasetError(f"{key}: no clips in split {cfg.split!r}")
    report = _flows(jobs, spec, key, progress)
    log.info(
        "%s: %d clips from %d videos; flows: %s", key, len(entries), len(videos), report.summary()
    )
    layout = SequenceLayout(
        dataset="video",
        root=root,
        split=cfg.split,
        image_dir=root,
        image_suffix=".png",
        label_dir=root,
        label_suffix=".png",
        flow_suffix=".png",
        split_file=None,
        frame_step=videos[0].frame_step,
    )
    return VideoClipDataset(layout, entries, list(cfg.offsets), transform, videos)


# --------------------------------------------------------------------------- settings


def _check_settings(cfg: DatasetConfig, key: str) -> None:
    if not cfg.videos:
        raise DatasetError(
            f"{key}.videos: no videos given; set {key}.videos to a list of video "
            "files, frame folders or quoted globs"
        )
    if cfg.split not in SPLITS:
        raise DatasetError(
            f"{key}.split: {cfg.split!r} is not a split of a video dataset; "
            f"expected one of {', '.join(SPLITS)}"
        )
    if not 0.0 <= cfg.holdout < 1.0:
        raise DatasetError(f"{key}.holdout must be in [0, 1), got {cfg.holdout}")
    if cfg.split == "val" and cfg.holdout == 0.0:
        raise DatasetError(
            f"{key}.split is val but {key}.holdout is 0, so no frame is held out; "
            f"set {key}.holdout (e.g. 0.2) or use split all"
        )
    if cfg.flow_root or cfg.flow_roots:
        raise DatasetError(
            f"{key}.flow_root/flow_roots: flows are computed and cached for video "
            f"datasets; remove them (set {key}.flow_offsets to choose frames)"
        )
    if 0 not in cfg.offsets:
        raise DatasetError(f"{key}.offsets {list(cfg.offsets)} must include 0 (the key frame)")
    unknown = [o for o in cfg.flow_offsets if o not in cfg.offsets]
    if unknown:
        raise DatasetError(f"{key}.flow_offsets {unknown} are not in offsets {list(cfg.offsets)}")
    for name in ("frame_step", "clip_stride"):
        if getattr(cfg, name) < 0:
            raise DatasetError(f"{key}.{name} must be >= 0 (0 = derived), got {getattr(cfg, name)}")
    if cfg.frame_rate <= 0:
        raise DatasetError(f"{key}.frame_rate must be > 0, got {cfg.frame_rate}")
    try:
        estimator_from_spec(dict(cfg.flow_estimator))
    except UserError as err:
        raise DatasetError(f"{key}.flow_estimator: {err}") from err


def _cache_root(cfg: DatasetConfig, key: str, cache_dir: Path | None) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if cache_dir is not None and str(cache_dir):
        return Path(cache_dir)
    raise DatasetError(
        f"{key}.cache_dir: no folder for the decoded frames and flows of the "
        f"video dataset; set {key}.cache_dir"
    )


def _stem(spec: str) -> str:
    """A readable name for a video, folder or glob (the folder above a glob's first wildcard)."""
    path = Path(spec).expanduser()
    if any(c in spec for c in "*?["):
        parts = []
        for part in path.parts:
            if any(c in part for c in "*?["):
                break
            parts.append(part)
        name = Path(*parts).name if parts else ""
        return name or "frames"
    return path.name if path.is_dir() else path.stem or path.name


def unique_names(stems: list[str]) -> list[str]:
    """``stems`` made unique: a repeat gets ``-2``, ``-3``, ... (never another entry's stem)."""
    originals = set(stems)
    used: set[str] = set()
    out: list[str] = []
    for stem in stems:
        name, j = stem, 2
        while name in used or (name != stem and name in originals):
            name, j = f"{stem}-{j}", j + 1
        used.add(name)
        out.append(name)
    return out


def _frame_step(cfg: DatasetConfig, source: FrameSource, key: str) -> int:
    if cfg.frame_step:
        return cfg.frame_step
    if isinstance(source, ImageSequence):
        return 1  # frames have no rate
    if source.fps is None:
        raise InputError(
            f"{source.path} reports no frame rate (0 or unknown), so the frame step "
            f"cannot be derived from {key}.frame_rate; set {key}.frame_step"
        )
    return max(1, round(source.fps / cfg.frame_rate))


# --------------------------------------------------------------------------- decoding


def _open(cfg: DatasetConfig, spec: str, key: str, i: int) -> tuple[FrameSource, int]:
    """Video ``i``'s frame source and frame step; every video is opened before any decodes."""
    try:
        source = open_source(os.path.expanduser(spec))  # a string: a glob stays a glob
        return source, _frame_step(cfg, source, key)
    except InputError as err:
        raise DatasetError(f"{key}.videos[{i}]: {err}") from err


def _cache_video(
    cfg: DatasetConfig,
    spec: str,
    source: FrameSource,
    grid: ClipGrid,
    name: str,
    root: Path,
    key: str,
    where: str,
    progress: bool,
) -> VideoInfo:
    """Digest and (unless it is cached) decode one video; what it holds."""
    step = grid.step
    digest = source_digest(source)
    folder = root / digest
    meta = read_meta(folder)
    if (
        meta is not None
        and meta.digest == digest
        and all(frame_file(folder, i).is_file() for i in grid.frames(grid.keys(meta.n_frames)))
    ):
        log.debug("%s: %s reused from %s", where, spec, folder)
    else:
        result = decode_to_cache(source, folder, grid.wanted, f"decode {name}", progress)
        # frames written for key frames past the end (the count is known only now)
        needed = grid.frames(grid.keys(result.n_frames))
        for index in result.written:
            if index not in needed:
                frame_file(folder, index).unlink(missing_ok=True)
        fps = None if isinstance(source, ImageSequence) else source.fps
        meta = VideoMeta(str(source.path), digest, fps, result.n_frames, result.size)
        write_meta(folder, meta)
    if meta.n_frames < grid.span:
        raise InputError(
            f"{spec} has {meta.n_frames} frames but one clip needs {grid.span} (offsets "
            f"{list(cfg.offsets)} with flow_offsets {list(cfg.flow_offsets)} at frame step "
            f"{step}); use a longer video or change {key}.offsets, {key}.flow_offsets, "
            f"{key}.frame_step or {key}.frame_rate"
        )
    n_hold = _holdout_count(cfg.holdout, meta.n_frames)
    video = VideoInfo(
        source=spec,
        name=name,
        fps=meta.fps,
        n_frames=meta.n_frames,
        frame_step=step,
        size=meta.size,
        holdout_frames=range(meta.n_frames - n_hold, meta.n_frames),
        folder=folder,
        digest=digest,
    )
    return video


def _holdout_count(holdout: float, n_frames: int) -> int:
    # rounded first so that 0.1 · 30 (= 3.0000000000000004) holds out 3 frames, not 4
    return math.ceil(round(holdout * n_frames, 9))


def _split_keys(
    cfg: DatasetConfig, video: VideoInfo, grid: ClipGrid, key: str, where: str
) -> list[int]:
    keys = list(grid.keys(video.n_frames))
    start = video.holdout_frames.start
    if cfg.split == "all":
        return keys
    chosen = [k for k in keys if (k >= start) == (cfg.split == "val")]
    if not chosen and cfg.holdout > 0:
        stretch = (
            f"the held-out last {len(video.holdout_frames)} frames ({start}-{video.n_frames - 1})"
        )
        lies = f"lies in {stretch}" if cfg.split == "val" else f"lies before {stretch}"
        raise DatasetError(
            f"{where}: no key frame of {video.source} {lies} (key frames {grid.first_key}, "
            f"{grid.first_key + grid.stride}, ... at clip stride {grid.stride}); change "
            f"{key}.holdout or {key}.clip_stride"
        )
    return chosen


# --------------------------------------------------------------------------- clips and flows


def _entry(
    video: VideoInfo,
    grid: ClipGrid,
    k: int,
    offsets: Sequence[int],
    flow_offsets: Sequence[int],
    flows: Path,
) -> tuple[ClipEntry, list[FlowJob]]:
    frames = tuple(frame_file(video.folder, k + o * grid.step) for o in offsets)
    flow_paths: list[Path | None] = []
    jobs: list[FlowJob] = []
    for o, frame in zip(offsets, frames, strict=True):
        if o not in flow_offsets:
            flow_paths.append(None)
            continue
        index = k + o * grid.step
        out = flows / f"{index:06d}.png"
        flow_paths.append(out)
        jobs.append(FlowJob(frame=frame, prev=frame_file(video.folder, index - grid.step), out=out))
    name = f"{video.name}/{video.name}_{k:06d}"
    return ClipEntry(name, frames, None, tuple(flow_paths)), jobs


def _flows(jobs: list[FlowJob], spec: dict[str, Any], key: str, progress: bool) -> ComputeReport:
    unique = list({j.out: j for j in jobs}.values())  # clips share frames and so flows
    try:
        return compute_flows(unique, spec, workers=0, progress=progress)
    except DatasetError:
        raise
    except UserError as err:
        raise DatasetError(f"{key}: computing flows: {err}") from err
