"""Label class tables and the per-file work of ``vidda.data.convert``.

One label file is one ``LabelJob``: decode the source label, check its values against the
dataset's class table, map it to Cityscapes trainIds with a uint8[256] lookup table and write the
result atomically (or, for BDD, only validate it). ``run_job`` is a plain top-level function so that
a process pool can run it; a bad file comes back as an error message, never as a crash of the pool.

Class tables: the mappings of the original UVDA converters (VIPER, SYNTHIA-Seq).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vidda.classes import IGNORE_INDEX, NUM_CLASSES
from vidda.errors import UserError


class ConvertError(UserError, ValueError):
    """A dataset that cannot be converted: the message names the folder or file and the values."""


# --------------------------------------------------------------------------- class tables

# (VIPER id, name, trainId) from the UVDA converter's mapping. Van (25) is listed with its
# *intended* trainId 255; the original turns it into train (16), see ``viper_lut``.
VIPER_CLASSES: tuple[tuple[int, str, int], ...] = (
    (0, "unlabeled", 255), (1, "ambiguous", 255), (2, "sky", 10), (3, "road", 0),
    (4, "sidewalk", 1), (5, "railtrack", 255), (6, "terrain", 9), (7, "tree", 8),
    (8, "vegetation", 8), (9, "building", 2), (10, "infrastructure", 255), (11, "fence", 4),
    (12, "billboard", 255), (13, "trafficlight", 6), (14, "trafficsign", 7),
    (15, "mobilebarrier", 255), (16, "firehydrant", 255), (17, "chair", 255), (18, "trash", 255),
    (19, "trashcan", 255), (20, "person", 11), (21, "animal", 255), (22, "bicycle", 18),
    (23, "motorcycle", 17), (24, "car", 13), (25, "van", 255), (26, "bus", 15), (27, "truck", 14),
    (28, "trailer", 255), (29, "train", 16), (30, "plane", 255), (31, "boat", 255),
)  # fmt: skip
VIPER_VAN_ID = 25
VIPER_TRAIN_TRAIN_ID = 16

# (SYNTHIA-SEQS id, name, trainId) from the UVDA converter's mapping: bicycle/cyclist
# → rider, lane marking not merged into road, 13 and 14 reserved.
SYNTHIA_SEQ_CLASSES: tuple[tuple[int, str, int], ...] = (
    (0, "void", 255), (1, "sky", 10), (2, "building", 2), (3, "road", 0), (4, "sidewalk", 1),
    (5, "fence", 4), (6, "vegetation", 8), (7, "pole", 5), (8, "car", 13),
    (9, "traffic sign", 7), (10, "pedestrian", 11), (11, "bicycle", 12), (12, "lanemarking", 255),
    (13, "reserved", 255), (14, "reserved", 255), (15, "traffic light", 6),
)  # fmt: skip

TRAIN_IDS = frozenset([*range(NUM_CLASSES), IGNORE_INDEX])
"""Values a trainId label may hold."""


def _lut(table: tuple[tuple[int, str, int], ...]) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for raw_id, _name, train_id in table:
        lut[raw_id] = train_id
    return lut


def viper_lut(van_as_train: bool = True) -> np.ndarray:
    """uint8[256]: VIPER class id → trainId; ids outside the table → 255.

    Args:
        van_as_train: map van (25) to train (16) as the original converter does through its
            van/train colour collision (reproduces the paper); False maps van to 255 as intended.
    """
    lut = _lut(VIPER_CLASSES)
    if van_as_train:
        lut[VIPER_VAN_ID] = VIPER_TRAIN_TRAIN_ID
    return lut


VIPER_TO_TRAIN_ID: np.ndarray = viper_lut(van_as_train=True)
"""uint8[256] VIPER id → trainId as in the original (van → train); ``viper_lut(False)`` for 255."""

SYNTHIA_SEQ_TO_TRAIN_ID: np.ndarray = _lut(SYNTHIA_SEQ_CLASSES)
"""uint8[256] SYNTHIA-SEQS class id (R channel of ``GT/LABELS``) → trainId."""

for _lut_array in (VIPER_TO_TRAIN_ID, SYNTHIA_SEQ_TO_TRAIN_ID):
    _lut_array.flags.writeable = False


def known_mask(values: frozenset[int] | range) -> np.ndarray:
    """bool[256]: True for the raw values a dataset's labels may hold."""
    mask = np.zeros(256, dtype=bool)
    mask[list(values)] = True
    return mask


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class LabelJob:
    """What to do with one label file.

    ``decoder`` is ``"index"`` (8-bit single-channel or palette PNG, read as indices) or
    ``"r_channel"`` (multi-channel 8/16-bit PNG, class id in R). ``dst`` None means validate only.
    """

    src: Path
    dst: Path | None
    decoder: str
    lut: np.ndarray  # uint8[256] raw value → trainId
    known: np.ndarray  # bool[256] raw values the class table accepts
    values_desc: str  # how the accepted values are named in errors, e.g. "VIPER class ids 0..31"


@dataclass(frozen=True)
class LabelResult:
    """The outcome of one job: ``status`` converted / skipped / validated, or ``error`` set."""

    src: Path
    status: str
    counts: tuple[int, ...] = ()  # pixels per trainId 0..18 in the (written or existing) output
    error: str = ""


def run_job(job: LabelJob, overwrite: bool) -> LabelResult:
    """Convert, skip (output up to date) or validate one file; user errors become ``error``."""
    try:
        if job.dst is None:
            hist = _checked_histogram(_decode(job.src, job.decoder), job)
            return LabelResult(job.src, "validated", _train_counts(hist, job.lut))
        if not overwrite and is_up_to_date(job.src, job.dst):
            return LabelResult(job.src, "skipped", _existing_output_counts(job.dst))
        raw = _decode(job.src, job.decoder)
        hist = _checked_histogram(raw, job)
        write_png_atomic(job.dst, job.lut[raw])
        return LabelResult(job.src, "converted", _train_counts(hist, job.lut))
    except UserError as err:
        return LabelResult(job.src, "failed", error=str(err))


def is_up_to_date(src: Path, dst: Path) -> bool:
    """True when ``dst`` exists and is not older than ``src`` (equal times count as up to date)."""
    try:
        return dst.stat().st_mtime_ns >= src.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _decode(path: Path, decoder: str) -> np.ndarray:
    if decoder == "index":
        return read_index_png(path)
    if decoder == "r_channel":
        return read_r_channel_png(path)
    raise ValueError(f"unknown decoder {decoder!r}")


def read_index_png(path: Path) -> np.ndarray:
    """The pixel values of an 8-bit single-channel PNG ("L") or the indices of a palette PNG ("P").

    Palette colours are never looked at. Returns uint8 [H, W].
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise ConvertError(
                    f"{path}: image mode {img.mode!r}; expected an 8-bit single-channel ('L') "
                    "or palette ('P') label PNG"
                )
            img.load()
            return np.asarray(img, dtype=np.uint8)
    except ConvertError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # missing, not an image, truncated
        raise ConvertError(f"{path}: cannot read label PNG ({err})") from None


def read_r_channel_png(path: Path) -> np.ndarray:
    """The R channel of a multi-channel 8- or 16-bit PNG, bit depth kept (uint8/uint16 [H, W])."""
    if not path.is_file():
        raise ConvertError(f"{path}: label file not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ConvertError(f"{path}: cannot read label PNG (unreadable or truncated)")
    if raw.ndim != 3 or raw.shape[2] < 3:
        channels = 1 if raw.ndim == 2 else raw.shape[2]
        raise ConvertError(
            f"{path}: {channels}-channel image; expected a 3- or 4-channel label PNG with the "
            "class id in the R channel"
        )
    return raw[..., 2]  # OpenCV order is B, G, R[, A]


def _checked_histogram(raw: np.ndarray, job: LabelJob) -> np.ndarray:
    """int64[256] pixel count per raw value; raises when a value is not in the class table."""
    hist = _histogram(raw)
    present = np.flatnonzero(hist)
    bad = [int(v) for v in present if v >= 256 or not job.known[v]]
    if bad:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ConvertError(
            f"{job.src}: label values [{shown}] are not {job.values_desc} "
            f"({int(hist[bad].sum())} pixels)"
        )
    return hist[:256]


def _histogram(raw: np.ndarray) -> np.ndarray:
    """int64 pixel count per value (at least 256 bins)."""
    if raw.dtype == np.uint8 and raw.size < 2**24:  # float32 bins stay exact; ~8x np.bincount
        hist = cv2.calcHist([np.ascontiguousarray(raw)], [0], None, [256], [0, 256])
        return hist.ravel().astype(np.int64)
    return np.bincount(raw.ravel(), minlength=256)


def _train_counts(hist: np.ndarray, lut: np.ndarray) -> tuple[int, ...]:
    per_train_id = np.bincount(lut, weights=hist, minlength=256)
    return tuple(int(n) for n in per_train_id[:NUM_CLASSES])


_IDENTITY = np.arange(256, dtype=np.uint8)
_TRAIN_ID_KNOWN = known_mask(TRAIN_IDS)


def _existing_output_counts(dst: Path) -> tuple[int, ...]:
    """Pixels per trainId of an output written earlier, after checking its value set."""
    job = LabelJob(dst, None, "index", _IDENTITY, _TRAIN_ID_KNOWN, "trainIds (0..18, 255)")
    hist = _checked_histogram(read_index_png(dst), job)
    return _train_counts(hist, _IDENTITY)


def write_png_atomic(path: Path, array: np.ndarray) -> None:
    """Write an 8-bit single-channel PNG through a temporary file in the same folder."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8))
    if not ok:
        raise ConvertError(f"{path}: PNG encoding failed")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except OSError as err:
        raise ConvertError(f"{path}: cannot write ({err})") from None
    finally:
        tmp.unlink(missing_ok=True)  # only still there when something failed
