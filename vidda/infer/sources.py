"""Where ``vidda infer`` reads frames from: a video file, a folder of frames, a glob, one image.

* **Video** (anything OpenCV's ``VideoCapture`` reads: mp4, avi, mkv, ...): frames are decoded in
  order and named ``frame_000123`` (0-based index in the video).
* **Folder** (the image files directly inside it) or **glob** (``"clips/*/img_*.jpg"``, quoted so
  the shell leaves it alone): files sorted *naturally* (``img_2`` before ``img_10``), each frame
  named after its file's stem. Two files with the same stem are an error (their outputs would
  collide). Every frame must have the first frame's size (an error names the first that does
  not); frames are read only when needed, so resuming a run skips decoding finished frames.
* **One image file**: a one-frame sequence.

Frames are ``uint8 [H, W, 3]`` R,G,B arrays. Errors are :class:`InputError` (a ``UserError``:
one line, exit status 2) naming the file and, for videos, the frame index reached.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vidda.errors import UserError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Frame",
    "FrameSource",
    "ImageSequence",
    "InputError",
    "VideoFile",
    "natural_key",
    "open_source",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

VIDEO_COUNT_TOLERANCE = 2
"""Frames a video may fall short of the count its container announces before it is an error
(some containers only estimate it)."""


class InputError(UserError):
    """An input that cannot be read: missing, empty, corrupt, or frames of different sizes."""


def natural_key(text: str) -> list[int | str]:
    """Sort key in which digit runs compare as numbers: ``f2`` < ``f10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass
class Frame:
    """One input frame: its position, its output name and its pixels (read on first access).

    Attributes:
        index: 0-based position in the source.
        name: output file stem (``frame_000123`` for videos, the file stem for images).
        path: the image file, or the video file it was decoded from.
    """

    index: int
    name: str
    path: Path
    _load: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    _rgb: np.ndarray | None = field(default=None, repr=False)

    @property
    def rgb(self) -> np.ndarray:
        """``uint8 [H, W, 3]`` R,G,B pixels (decoded on first access, then kept)."""
        if self._rgb is None:
            assert self._load is not None
            self._rgb = self._load()
            self._load = None
        return self._rgb

    @property
    def loaded(self) -> bool:
        return self._rgb is not None


class FrameSource:
    """An ordered sequence of frames (iterate it once, in order)."""

    path: Path
    fps: float | None = None  # frames per second of a video; None for image sequences
    kind: str = ""

    def __len__(self) -> int:
        """Number of frames (a video's count as its container announces it)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} {self.path} ({len(self)} frames)"


class ImageSequence(FrameSource):
    """Image files in the given order; every frame must have the first frame's size."""

    kind = "frames"

    def __init__(self, files: list[Path], origin: Path | str) -> None:
        if not files:
            raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {origin}")
        seen: dict[str, Path] = {}
        for f in files:
            if f.stem in seen:
                raise InputError(f"{seen[f.stem]} and {f} have the same name {f.stem!r}; their "
                                 "outputs would collide (give a folder or glob without duplicates)")
            seen[f.stem] = f
        self.files = files
        self.path = Path(origin)
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> np.ndarray:
        path = self.files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"cannot read image {path} (frame {index}): missing or not an image")
        size = image.shape[:2]
        if self._size is None:
            self._size = size
        elif size != self._size:
            h, w = self._size
            raise InputError(f"{path} (frame {index}) is {size[1]}x{size[0]}, but the sequence's "
                             f"frames are {w}x{h}; all frames must have one size")  # fmt: skip
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            yield Frame(i, path.stem, path, _load=lambda i=i: self._read(i))


class VideoFile(FrameSource):
    """A video decoded in order with ``cv2.VideoCapture``."""

    kind = "video"

    def __init__(self, path: Path) -> None:
        self.path = path
        cap = self._open()
        try:
            self.count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            self.fps = fps if 0 < fps < 1000 else None
        finally:
            cap.release()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise InputError(f"cannot read video {self.path} at frame 0: OpenCV cannot open it "
                             "(corrupt, not a video, or a codec this OpenCV build lacks)")
        return cap

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        index = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield Frame(index, f"frame_{index:06d}", self.path, _rgb=rgb)
                index += 1
        finally:
            cap.release()
        if index == 0:
            raise InputError(f"cannot read video {self.path} at frame 0: no frame could be "
                             "decoded (corrupt or empty video)")
        if index < self.count - VIDEO_COUNT_TOLERANCE:
            raise InputError(f"cannot read video {self.path} at frame {index}: decoding stopped "
                             f"there, but the file announces {self.count} frames (corrupt or "
                             f"truncated video); frames 0-{index - 1} were processed")  # fmt: skip


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def open_source(spec: str | Path) -> FrameSource:
    """The frame source ``spec`` names: a video file, a folder, an image file or a glob.

    Raises:
        InputError: nothing there, no images in the folder or glob, or an unopenable video.
    """
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        return ImageSequence(sorted(files, key=lambda p: natural_key(p.name)), path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageSequence([path], path)
        return VideoFile(path)
    if _is_glob(str(spec)):
        matches = [Path(p) for p in glob.glob(str(spec), recursive=True)]
        files = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        return ImageSequence(sorted(files, key=lambda p: natural_key(str(p))), str(spec))
    raise InputError(f"input not found: {spec} (give a video file, a folder of frames or a glob)")
