"""Procedural synthetic driving videos with a controllable domain shift.

Every clip is a random street (road, sidewalks, buildings, trees, poles with signs and lights,
parked and moving cars, walking people) ray-cast from a forward-moving camera. Labels are exact (one
ray per pixel centre) and so is the backward optical flow: each pixel's surface point is moved back
by its object's motion and projected into the previous frame; it is valid when that point lies
inside the previous frame and no box hides it there.

The "source" and "target" domains draw their scenes from the same distribution (but different scene
seeds) and differ only in appearance; ``SynthConfig.shift`` sets how much (0: none).

On-disk layout written by :func:`generate`::

    OUT/{source,target}/{split}/images/CLIP/CLIP_FFFFFF.png
    OUT/{source,target}/{split}/labels/CLIP/CLIP_FFFFFF_labelTrainIds.png
    OUT/{source,target}/{split}/flow/CLIP/CLIP_FFFFFF.png   (frame F -> F-1; none for F = 0)
    OUT/{source,target}/{split}.txt                          (``CLIP/CLIP_FFFFFF`` per sample frame)
    OUT/meta.json                                            (written last)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vidda.classes import NUM_CLASSES
from vidda.data.datasets._synth_scene import backward_flow, build_scene, cast_grid
from vidda.data.datasets._synth_style import DOMAINS, Shader, style_for
from vidda.errors import UserError
from vidda.flow.io import KITTI_MAX, write_flow


class SynthError(UserError, ValueError):
    """A synthetic-benchmark request that cannot be honoured; the message names the value."""


class SynthExistsError(UserError, FileExistsError):
    """The output folder holds other data; ``overwrite=True`` (``--overwrite``) replaces it."""

__all__ = [
    "DOMAINS",
    "VERSION",
    "Frame",
    "SynthConfig",
    "clip_name",
    "clip_seed",
    "frame_name",
    "generate",
    "render_clip",
]

VERSION = 2
"""Bumped whenever the generator's output for a given seed and config changes."""

# fixed encoder settings keep the bytes reproducible; fast zlib level, "sub" row filter if available
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
_SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_MIN_SIZE = 8
_MAX_SHIFT = 2.0
_INCOMPLETE = ".incomplete"


@dataclass
class SynthConfig:
    """What :func:`generate` renders; every field is recorded in ``meta.json``."""

    height: int = 128
    width: int = 256
    clips: dict[str, int] = field(default_factory=lambda: {"train": 16, "val": 6})
    """Number of clips per split."""
    frames_per_clip: int = 8
    first_sample_frame: int = 2
    """Frames with index >= this are listed in the split file (so t-1, t-2 exist for 2)."""
    shift: float = 1.0
    """Domain-shift strength: 0 = target looks like source, 1 = the full default shift."""
    dynamic: bool = True
    """False keeps every object still (the camera still moves); for tests and ablations."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field and value."""
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or value < _MIN_SIZE:
                raise SynthError(
                    f"SynthConfig.{name} must be an integer >= {_MIN_SIZE}, got {value!r}"
                )
        if not _is_int(self.frames_per_clip) or self.frames_per_clip < 1:
            raise SynthError(
                "SynthConfig.frames_per_clip must be a positive integer, "
                f"got {self.frames_per_clip!r}"
            )
        if not _is_int(self.first_sample_frame) or not (
            0 <= self.first_sample_frame < self.frames_per_clip
        ):
            raise SynthError(
                f"SynthConfig.first_sample_frame must be an integer in [0, frames_per_clip - 1 = "
                f"{self.frames_per_clip - 1}], got {self.first_sample_frame!r}"
            )
        if not isinstance(self.clips, dict) or not self.clips:
            raise SynthError(
                f"SynthConfig.clips must be a non-empty dict split -> count, got {self.clips!r}"
            )
        for split, n in self.clips.items():
            if not isinstance(split, str) or not _SPLIT_RE.match(split):
                raise SynthError(
                    f"SynthConfig.clips: split name {split!r} must match {_SPLIT_RE.pattern}"
                )
            if not _is_int(n) or n < 0:
                raise SynthError(f"SynthConfig.clips[{split!r}] must be an integer >= 0, got {n!r}")
        if (
            isinstance(self.shift, bool)
            or not isinstance(self.shift, (int, float))
            or not 0.0 <= self.shift <= _MAX_SHIFT
        ):
            raise SynthError(
                f"SynthConfig.shift must be a number in [0, {_MAX_SHIFT}], got {self.shift!r}"
            )
        if not isinstance(self.dynamic, bool):
            raise SynthError(f"SynthConfig.dynamic must be a bool, got {self.dynamic!r}")

    def to_dict(self) -> dict:
        """JSON-ready copy of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SynthConfig:
        """Inverse of :meth:`to_dict` (e.g. for ``json.load(meta.json)["config"]``)."""
        return cls(**data)


@dataclass
class Frame:
    """One rendered frame.

    Camera model: pixel (u = column, v = row) looks along world direction
    ``((u - cx) / f, (cy - v) / f, 1)`` from ``cam_pos`` (world: x right, y up, z forward, ground at
    y = 0); the camera only translates. ``depth`` is the z-depth along that ray.
    """

    index: int
    image: np.ndarray  # uint8 [H, W, 3] R,G,B
    label: np.ndarray  # uint8 [H, W] trainIds
    flow: np.ndarray | None  # float32 [H, W, 2] backward flow to frame index-1; None for frame 0
    flow_valid: np.ndarray | None  # bool [H, W]; None for frame 0
    depth: np.ndarray  # float32 [H, W] z-depth in metres, inf for sky
    moving: np.ndarray  # bool [H, W] pixels on independently moving objects
    cam_pos: np.ndarray  # float64 [3] camera centre in world metres
    intrinsics: tuple[float, float, float]  # (f, cx, cy) in pixels


def _is_int(value: object) -> bool:
    """An int (numpy ints too) that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_domain(domain: str) -> None:
    """Raise ``ValueError`` naming ``domain`` unless it is "source" or "target"."""
    if domain not in DOMAINS:
        raise SynthError(f"unknown domain {domain!r}; expected one of {list(DOMAINS)}")


def _check_seed(seed: int) -> None:
    """Raise ``ValueError`` naming ``seed`` unless it is a non-negative integer."""
    if not _is_int(seed) or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")


def clip_name(index: int) -> str:
    """Directory / file-name stem of clip ``index`` within a split, e.g. ``c0003``."""
    return f"c{index:04d}"


def frame_name(clip: str, frame: int) -> str:
    """File-name stem of a frame, e.g. ``c0003_000005``."""
    return f"{clip}_{frame:06d}"


def clip_seed(seed: int, domain: str, split: str, clip: int) -> int:
    """The scene seed :func:`generate` renders for one clip.

    Seeds for different (domain, split, clip) are independent draws, so both domains sample the
    same scene distribution without sharing scenes.
    """
    _check_seed(seed)
    _check_domain(domain)
    key = (DOMAINS.index(domain), zlib.crc32(split.encode()), int(clip))
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def render_clip(seed: int, domain: str, cfg: SynthConfig | None = None) -> list[Frame]:
    """Render one clip of ``cfg.frames_per_clip`` frames.

    Args:
        seed: scene seed; the same seed gives the same scene (geometry, motion, labels, flow) in
            both domains, only the appearance depends on ``domain``.
        domain: "source" or "target".
    """
    cfg = SynthConfig() if cfg is None else cfg
    cfg.validate()
    _check_seed(seed)
    _check_domain(domain)
    h, w = cfg.height, cfg.width
    scene = build_scene(
        np.random.default_rng([seed, 0]), h, w, cfg.frames_per_clip, dynamic=cfg.dynamic
    )
    shader = Shader(scene, style_for(domain, cfg.shift), h, w)
    cam = scene.camera
    frames: list[Frame] = []
    prev = None
    for t in range(cfg.frames_per_clip):
        hits = cast_grid(scene, t, h, w)
        flow = valid = None
        if prev is not None:
            flow64, valid = backward_flow(scene, hits, prev, t)
            flow = flow64.astype(np.float32)
        noise_rng = np.random.default_rng([seed, 1, DOMAINS.index(domain), t])
        frames.append(
            Frame(
                index=t,
                image=shader(hits, t, noise_rng),
                label=hits.label,
                flow=flow,
                flow_valid=valid,
                depth=hits.depth.astype(np.float32),
                moving=hits.moving,
                cam_pos=cam.pos(t),
                intrinsics=(cam.f, cam.cx, cam.cy),
            )
        )
        prev = hits
    return frames


# --------------------------------------------------------------------------- writing


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write uint8 [H, W] or B,G,R [H, W, 3] with the fixed encoder settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array, PNG_PARAMS):
        raise OSError(f"{path}: OpenCV could not write the PNG")


def _write_clip(split_dir: Path, clip: str, frames: list[Frame]) -> np.ndarray:
    """Write a clip's images, labels and flows; returns its per-class pixel counts [19]."""
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for fr in frames:
        stem = frame_name(clip, fr.index)
        _write_png(split_dir / "images" / clip / f"{stem}.png", fr.image[:, :, ::-1])
        _write_png(split_dir / "labels" / clip / f"{stem}_labelTrainIds.png", fr.label)
        if fr.flow is not None:
            # vectors the KITTI format cannot hold (possible only at huge sizes) become invalid
            valid = fr.flow_valid & (np.abs(fr.flow) <= KITTI_MAX).all(axis=2)
            write_flow(split_dir / "flow" / clip / f"{stem}.png", fr.flow, valid)
        counts += np.bincount(fr.label.ravel(), minlength=256)[:NUM_CLASSES]
    return counts


def _render_and_write(args: tuple[int, str, str, int, SynthConfig, str]) -> np.ndarray:
    """One job of :func:`generate`: (seed, domain, split, clip index, cfg, out) -> counts [19]."""
    seed, domain, split, index, cfg, out = args
    frames = render_clip(clip_seed(seed, domain, split, index), domain, cfg)
    return _write_clip(Path(out) / domain / split, clip_name(index), frames)


def _split_lines(cfg: SynthConfig, n_clips: int) -> list[str]:
    """``CLIP/CLIP_FFFFFF`` for every sample frame of a split with ``n_clips`` clips."""
    lines = []
    for i in range(n_clips):
        clip = clip_name(i)
        for t in range(cfg.first_sample_frame, cfg.frames_per_clip):
            lines.append(f"{clip}/{frame_name(clip, t)}")
    return lines


def _meta_matches(meta_path: Path, seed: int, cfg: SynthConfig) -> bool:
    """Whether ``meta_path`` records this seed, config and generator version."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("version") == VERSION
        and meta.get("seed") == seed
        and meta.get("config") == json.loads(json.dumps(cfg.to_dict()))
    )


def _prepare(out: Path, seed: int, cfg: SynthConfig, overwrite: bool) -> bool:
    """Decide whether to (re)generate into ``out``; clear our own old outputs if so."""
    meta_path = out / "meta.json"
    ours = [out / d for d in DOMAINS]
    if not overwrite:
        if meta_path.exists():
            if _meta_matches(meta_path, seed, cfg):
                return False
            raise SynthExistsError(
                f"{out} already holds a synthetic dataset with a different seed, config or "
                "generator version; pass overwrite=True (`--overwrite` on the command line) "
                "to replace it"
            )
        if any(p.exists() for p in ours) and not (out / _INCOMPLETE).exists():
            raise SynthExistsError(
                f"{out} has {DOMAINS} folders but no meta.json of this generator; pass "
                f"overwrite=True to replace them"
            )
    out.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    (out / _INCOMPLETE).write_text("generation in progress or interrupted\n")
    for p in ours:
        if p.exists():
            shutil.rmtree(p)
    return True


def generate(
    out_dir: str | os.PathLike,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Render both domains and every split of ``cfg`` into ``out_dir`` (layout: module docstring).

    Returns immediately when ``out_dir/meta.json`` already records the same seed, config and
    generator version. ``meta.json`` is written last, so an interrupted run never looks complete
    (the next call redoes it). Output bytes do not depend on ``workers``: with ``workers > 1``
    clips are rendered in that many "spawn" processes (so a calling script needs the usual
    ``if __name__ == "__main__":`` guard).

    Raises:
        FileExistsError: ``out_dir`` holds a different dataset and ``overwrite`` is False.
    """
    cfg = SynthConfig() if cfg is None else cfg
    cfg.validate()
    _check_seed(seed)
    if not _is_int(workers) or workers < 1:
        raise SynthError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out_dir)
    if not _prepare(out, seed, cfg, overwrite):
        return out

    jobs = [
        (seed, domain, split, i, cfg, str(out))
        for domain in DOMAINS
        for split, n in cfg.clips.items()
        for i in range(n)
    ]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(_render_and_write, jobs))
    else:
        results = [_render_and_write(job) for job in jobs]

    counts: dict[str, dict[str, dict]] = {d: {} for d in DOMAINS}
    pixels = {(d, s): np.zeros(NUM_CLASSES, dtype=np.int64) for d in DOMAINS for s in cfg.clips}
    for job, res in zip(jobs, results, strict=True):
        pixels[(job[1], job[2])] += res
    for domain in DOMAINS:
        for split, n in cfg.clips.items():
            lines = _split_lines(cfg, n)
            (out / domain / split).mkdir(parents=True, exist_ok=True)
            (out / domain / f"{split}.txt").write_text("".join(f"{ln}\n" for ln in lines))
            counts[domain][split] = {
                "clips": n,
                "frames": n * cfg.frames_per_clip,
                "samples": len(lines),
                "class_pixels": pixels[(domain, split)].tolist(),
            }
    meta = {"seed": seed, "version": VERSION, "config": cfg.to_dict(), "counts": counts}
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "meta.json")
    (out / _INCOMPLETE).unlink(missing_ok=True)
    return out
