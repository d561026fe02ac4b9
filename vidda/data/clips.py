"""Clips: the frames at a dataset's offsets, the key frame's label and each frame's backward flow.

``build_index`` turns a split into ``ClipEntry`` records and checks, before anything trains, that
every file they name exists (reporting the missing ones by kind, count and path). ``load_clip``
decodes one entry into a ``RawClip`` of numpy arrays and checks sizes and label values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vidda.data.layout import DatasetError, SequenceLayout, shift_frame
from vidda.flow.io import FlowFileError, read_flow

log = logging.getLogger(__name__)

_SHOW = 5  # paths listed per kind in an error message


@dataclass(frozen=True)
class ClipEntry:
    """The files of one clip; tuples are ordered like the offsets (oldest first, key frame last)."""

    name: str  # the split line: the labelled frame t
    frames: tuple[Path, ...]
    label: Path | None
    flows: tuple[Path | None, ...]


@dataclass
class RawClip:
    """A decoded clip, before any transform. T = number of offsets.

    frames: T × uint8 [H, W, 3] R,G,B. label: uint8 [H, W] trainIds (255 ignore) or None.
    flows / flow_valid: T × float32 [H, W, 2] (backward flow of that frame, pixels) and
    bool [H, W], or None for frames without flow.
    """

    name: str
    frames: list[np.ndarray]
    label: np.ndarray | None
    flows: list[np.ndarray | None]
    flow_valid: list[np.ndarray | None]


def build_index(
    layout: SequenceLayout,
    offsets: Sequence[int],
    flow_roots: Sequence[Path | None],
    with_labels: bool = True,
    on_missing: str = "error",
) -> list[ClipEntry]:
    """Index a split and check that every file it needs exists.

    Args:
        layout: the dataset split's file conventions.
        offsets: canonical offsets, key frame 0 included (multiplied by ``layout.frame_step``).
        flow_roots: one per offset, the folder holding that frame's backward flow, or None.
        with_labels: whether the key frame's label is required.
        on_missing: ``"error"`` (default) raises listing the missing files; ``"drop"`` leaves
            incomplete entries out and logs how many.
    Raises:
        DatasetError: missing files (by kind, with the count and the first paths), bad offsets.
    """
    if len(flow_roots) != len(offsets):
        raise DatasetError(
            f"{layout.dataset}: {len(flow_roots)} flow roots for {len(offsets)} offsets {offsets}"
        )
    if on_missing not in ("error", "drop"):
        raise DatasetError(f"on_missing must be 'error' or 'drop', got {on_missing!r}")
    entries, missing, total = scan_index(layout, offsets, flow_roots, with_labels)
    bad = total - len(entries)
    if bad:
        summary = missing_summary(missing)
        where = f"{layout.dataset} '{layout.split}' ({layout.root})"
        if on_missing == "error" or not entries:
            raise DatasetError(f"{where}: {bad} of {total} entries are incomplete: {summary}")
        log.warning("%s: dropped %d of %d incomplete entries: %s", where, bad, total, summary)
    return entries


def scan_index(
    layout: SequenceLayout,
    offsets: Sequence[int],
    flow_roots: Sequence[Path | None],
    with_labels: bool = True,
) -> tuple[list[ClipEntry], dict[str, list[str]], int]:
    """The complete entries, the missing files by kind (frame, label, flow, entry) and the count.

    Like ``build_index`` but reports instead of raising (what ``vidda data check`` needs).
    """
    layout.check_offsets(list(offsets))
    names = layout.entries()
    entries: list[ClipEntry] = []
    missing: dict[str, list[str]] = {"frame": [], "label": [], "flow": [], "entry": []}
    for name in names:
        entry, problems = _entry(layout, name, offsets, flow_roots, with_labels)
        for kind, what in problems:
            missing[kind].append(what)
        if entry is not None and not problems:
            entries.append(entry)
    return entries, missing, len(names)


def _entry(
    layout: SequenceLayout,
    name: str,
    offsets: Sequence[int],
    flow_roots: Sequence[Path | None],
    with_labels: bool,
) -> tuple[ClipEntry | None, list[tuple[str, str]]]:
    try:
        shifted = [shift_frame(name, o * layout.frame_step) for o in offsets]
    except DatasetError as err:
        return None, [("entry", str(err))]
    frames = tuple(layout.image(n) for n in shifted)
    flows = tuple(
        None if root is None else layout.flow(root, n)
        for root, n in zip(flow_roots, shifted, strict=True)
    )
    label = layout.label(shifted[list(offsets).index(0)]) if with_labels else None
    problems = [("frame", str(p)) for p in frames if not p.is_file()]
    if label is not None and not label.is_file():
        problems.append(("label", str(label)))
    problems += [("flow", str(p)) for p in flows if p is not None and not p.is_file()]
    return ClipEntry(name, frames, label, flows), problems


def missing_summary(missing: dict[str, list[str]]) -> str:
    parts = []
    for kind, items in missing.items():
        if items:
            shown = ", ".join(items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")
            label = "bad entries" if kind == "entry" else f"missing {kind} files"
            parts.append(f"{len(items)} {label} ({shown})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- decoding


def read_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] R,G,B. Raises DatasetError naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image {path} (missing, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path, allowed: frozenset[int]) -> np.ndarray:
    """uint8 [H, W] trainIds, checked against the dataset's ``allowed`` values."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetError(f"cannot decode label {path} (missing, truncated or not an image)")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(
            f"label {path} must be a single-channel 8-bit PNG of trainIds, got dtype {label.dtype} "
            f"and shape {list(label.shape)} (convert it with `vidda data convert`)"
        )
    ok = np.zeros(256, dtype=bool)
    ok[list(allowed)] = True
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = [int(v) for v in present if not ok[v]]
    if bad:
        raise DatasetError(
            f"label {path} holds values {bad} outside this dataset's classes {sorted(allowed)}"
        )
    return label


def load_clip(entry: ClipEntry, allowed_labels: frozenset[int]) -> RawClip:
    """Decode every file of ``entry``; all frames, the label and flows must share one size."""
    frames = [read_image(p) for p in entry.frames]
    size = frames[-1].shape[:2]
    for path, frame in zip(entry.frames, frames, strict=True):
        if frame.shape[:2] != size:
            raise DatasetError(
                f"{path} is {_wh(frame.shape)} but {entry.frames[-1]} is {_wh(size)}"
            )
    label = None
    if entry.label is not None:
        label = read_label(entry.label, allowed_labels)
        if label.shape != size:
            raise DatasetError(f"label {entry.label} is {_wh(label.shape)}, its image {_wh(size)}")
    flows: list[np.ndarray | None] = []
    valid: list[np.ndarray | None] = []
    for path in entry.flows:
        if path is None:
            flows.append(None)
            valid.append(None)
            continue
        try:
            flow, ok = read_flow(path)
        except FlowFileError as err:
            raise DatasetError(str(err)) from err
        if flow.shape[:2] != size:
            raise DatasetError(f"flow {path} is {_wh(flow.shape)} but the frames are {_wh(size)}")
        flows.append(flow)
        valid.append(ok)
    return RawClip(entry.name, frames, label, flows, valid)


def _wh(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"
