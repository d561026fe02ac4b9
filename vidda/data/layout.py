"""Where a video dataset keeps its files, and how the names of earlier frames are derived.

Every dataset is described by a ``SequenceLayout``: image, label and flow folders with their
suffixes, the split file, and the dataset's frame spacing. A split line names the labelled frame t
(e.g. ``aachen/aachen_000000_000019``); the frame at offset o is found by changing the last
``_``-separated number by o, keeping its zero padding (the original loaders' rule).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vidda.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset that cannot be used as configured; the message names files, counts or values."""


def shift_frame(name: str, offset: int) -> str:
    """The name of the frame ``offset`` frames away from ``name``.

    ``"aachen/aachen_000000_000019", -1 → "aachen/aachen_000000_000018"``,
    ``"000123", -2 → "000121"``, ``"53f06672-e942bc38_307", -4 → "53f06672-e942bc38_303"``.
    A trailing image extension (DA-VSN style ``000001.png``) is dropped first.

    Raises:
        DatasetError: the name has no frame number, or the new frame number would be negative.
    """
    stem = _strip_extension(name.strip())
    head, sep, number = stem.rpartition("_")
    folder, slash, number = number.rpartition("/") if not sep else ("", "", number)
    if not number.isdigit():
        raise DatasetError(f"split entry {name!r} does not end in a frame number")
    frame = int(number) + offset
    if frame < 0:
        raise DatasetError(f"split entry {name!r} has no frame at offset {offset} (frame {frame})")
    prefix = f"{head}{sep}" if sep else f"{folder}{slash}"
    return f"{prefix}{frame:0{len(number)}d}"


def _strip_extension(name: str) -> str:
    base, ext = os.path.splitext(name)
    return base if ext.lower() in (".png", ".jpg", ".jpeg") else name


def read_split(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split file (a missing final newline is fine).

    Raises:
        DatasetError: the file is missing or holds no entries.
    """
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    entries = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not entries:
        raise DatasetError(f"split file {path} holds no entries")
    return entries


@dataclass(frozen=True)
class SequenceLayout:
    """File conventions of one split of one dataset.

    Paths are ``<image_dir>/<name><image_suffix>``, ``<label_dir>/<name><label_suffix>`` and
    ``<flow root>/<name><flow_suffix>`` for a frame ``name`` (a split line shifted by an offset).
    """

    dataset: str
    root: Path
    split: str
    image_dir: Path
    image_suffix: str
    label_dir: Path
    label_suffix: str
    flow_suffix: str
    split_file: Path | None  # None: index the labels found under label_dir
    frame_step: int = 1  # video frames between two canonical offsets (BDDVid: 2)
    offset_range: tuple[int, int] | None = None  # real frame offsets the dataset provides
    label_values: frozenset[int] = field(default_factory=lambda: frozenset([*range(19), 255]))
    flow_dir: Path | None = None  # where this dataset's own flows lie, if it ships them

    def image(self, name: str) -> Path:
        return self.image_dir / f"{name}{self.image_suffix}"

    def label(self, name: str) -> Path:
        return self.label_dir / f"{name}{self.label_suffix}"

    def flow(self, flow_root: Path, name: str) -> Path:
        return flow_root / f"{name}{self.flow_suffix}"

    def default_flow_root(self) -> Path:
        """The dataset's own flows if it ships them, else where ``vidda flow compute`` writes."""
        if self.flow_dir is not None:
            return self.flow_dir
        return self.root / "flow" / f"backward_k{self.frame_step}" / self.split

    def entries(self) -> list[str]:
        """The labelled frames: the split file's lines, else every label file under label_dir."""
        if self.split_file is not None:
            return read_split(self.split_file)
        if not self.label_dir.is_dir():
            raise DatasetError(
                f"{self.dataset}: label folder not found: {self.label_dir} (and no split file)"
            )
        names = sorted(
            str(p.relative_to(self.label_dir))[: -len(self.label_suffix)]
            for p in self.label_dir.rglob(f"*{self.label_suffix}")
        )
        if not names:
            raise DatasetError(
                f"{self.dataset}: no '*{self.label_suffix}' label files under {self.label_dir}"
            )
        return names

    def check_offsets(self, offsets: list[int]) -> None:
        """Raise when a canonical offset needs frames the dataset does not have."""
        if 0 not in offsets:
            raise DatasetError(f"{self.dataset}: offsets {offsets} must include 0 (the key frame)")
        if self.offset_range is None:
            return
        lo, hi = self.offset_range
        for o in offsets:
            if not lo <= o * self.frame_step <= hi:
                raise DatasetError(
                    f"{self.dataset}: offset {o} (= {o * self.frame_step} video frames at frame "
                    f"step {self.frame_step}) is outside the frames it provides ({lo}..{hi})"
                )
