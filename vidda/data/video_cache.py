"""The frame cache of ``type: video`` datasets: content-addressed, written atomically, resumable.

One folder per video, named by a digest of its bytes (a frame folder or glob: its files' names
and bytes, in order), so a changed video gets a new folder and an unchanged one is found again
wherever it lies::

    <cache>/<digest>/meta.json               source, digest, fps, frame count, size (W, H)
    <cache>/<digest>/frames/000123.png       frame 123 (0-based, in decoding order), RGB PNG
    <cache>/<digest>/flow/<spec>_k<step>/    backward flows (see ``flow_folder``)

Frames are decoded once, sequentially (seeking is inexact for some codecs), and only the frames
the caller asks for are written, each as a temporary file renamed into place: a killed run leaves
whole files only, and ``meta.json`` is written last, after a complete decode.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vidda.infer.sources import FrameSource, ImageSequence, InputError

__all__ = [
    "DecodeResult",
    "VideoMeta",
    "decode_to_cache",
    "flow_folder",
    "frame_file",
    "read_meta",
    "source_digest",
    "spec_digest",
    "write_meta",
]

DIGEST_CHARS = 20  # hex digits of SHA-256 kept in folder names (80 bits)
CHUNK = 1 << 20  # bytes read at a time while hashing
PNG_LEVEL = 1  # zlib level of cached frames: lossless either way, 1 is the fastest


@dataclass(frozen=True)
class VideoMeta:
    """What a complete decode of one video found; stored as ``meta.json`` in its folder.

    size is (W, H) in pixels; fps is None for frame folders and globs (they have no rate).
    """

    source: str
    digest: str
    fps: float | None
    n_frames: int
    size: tuple[int, int]


@dataclass(frozen=True)
class DecodeResult:
    """One decoding pass: the frame count and size found, and the indices written this pass."""

    n_frames: int
    size: tuple[int, int]  # (W, H)
    written: list[int]


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def source_digest(source: FrameSource) -> str:
    """Hex digest of a source's content: a video's bytes, or a sequence's file names and bytes.

    Raises:
        InputError: a file cannot be read.
    """
    h = hashlib.sha256()
    try:
        if isinstance(source, ImageSequence):
            h.update(b"frames\0")
            for f in source.files:
                h.update(f"{f.name}\0{f.stat().st_size}\0".encode())  # unambiguous boundaries
                _hash_file(h, f)
        else:
            h.update(b"video\0")
            _hash_file(h, source.path)
    except OSError as err:
        raise InputError(f"cannot read {err.filename}: {err.strerror}") from err
    return h.hexdigest()[:DIGEST_CHARS]


def spec_digest(spec: Mapping[str, Any]) -> str:
    """Short digest of an estimator spec's canonical JSON (sorted keys, method defaulted)."""
    canonical = {"method": "dis", **spec}
    canonical["method"] = str(canonical["method"]).lower()
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def frame_file(folder: Path, index: int) -> Path:
    """The cached PNG of frame ``index`` (0-based) of the video cached in ``folder``."""
    return folder / "frames" / f"{index:06d}.png"


def flow_folder(folder: Path, spec: Mapping[str, Any], step: int) -> Path:
    """Where the backward flows of ``folder``'s frames, ``step`` frames back, by ``spec`` lie.

    The flow of frame n is ``<flow folder>/<n:06d>.png`` (KITTI 16-bit PNG).
    """
    return folder / "flow" / f"{spec_digest(spec)}_k{step}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write a uint8 [H, W, 3] R,G,B frame as a lossless PNG, atomically."""
    ok, buf = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise OSError(f"cannot encode frame {path} as PNG")
    write_atomic(path, buf.tobytes())


def read_meta(folder: Path) -> VideoMeta | None:
    """The folder's ``meta.json``, or None when it is missing or unreadable (decode again)."""
    try:
        raw = json.loads((folder / "meta.json").read_text())
        return VideoMeta(
            source=str(raw["source"]),
            digest=str(raw["digest"]),
            fps=None if raw["fps"] is None else float(raw["fps"]),
            n_frames=int(raw["n_frames"]),
            size=(int(raw["size"][0]), int(raw["size"][1])),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def write_meta(folder: Path, meta: VideoMeta) -> None:
    """Record ``meta`` as ``<folder>/meta.json`` (atomically)."""
    raw = {
        "source": meta.source,
        "digest": meta.digest,
        "fps": meta.fps,
        "n_frames": meta.n_frames,
        "size": list(meta.size),
    }
    write_atomic(folder / "meta.json", (json.dumps(raw, indent=1) + "\n").encode())


def decode_to_cache(
    source: FrameSource,
    folder: Path,
    wanted: Callable[[int], bool],
    desc: str,
    progress: bool = False,
) -> DecodeResult:
    """Decode ``source`` once, in order, writing each frame ``wanted(index)`` accepts.

    Frames already cached are not written again. Every frame is decoded (a video has to be;
    a frame folder is, so that a frame of another size is an error wherever it lies).

    Raises:
        InputError: the source cannot be decoded, decodes to no frame or mixes frame sizes.
    """
    written: list[int] = []
    size: tuple[int, int] | None = None
    count = 0
    total = len(source) or None
    for frame in tqdm(source, total=total, desc=desc, unit="frame", disable=not progress):
        rgb = frame.rgb
        size = size or (rgb.shape[1], rgb.shape[0])
        count = frame.index + 1
        if wanted(frame.index):
            path = frame_file(folder, frame.index)
            if not path.is_file():
                write_png(path, rgb)
                written.append(frame.index)
    if size is None:
        raise InputError(f"{source.path}: no frame could be decoded")
    return DecodeResult(count, size, written)
