"""The Cityscapes label space shared by every benchmark, and the benchmarks' class subsets.

Facts from the official cityscapesScripts ``labels.py``. The table sits below data, flow, models,
uda and engine, which all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255
"""The ignore label: unlabelled pixels, dropped pseudo-labels and invalid warps (every channel)."""

NUM_CLASSES = 19

CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
"""R,G,B colour of each trainId; the ignore label is drawn black."""


@dataclass(frozen=True)
class CityscapesLabel:
    """One row of the official ``labels.py`` table."""

    name: str
    id: int
    train_id: int
    category: str
    cat_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
LABELS: tuple[CityscapesLabel, ...] = tuple(CityscapesLabel(*row) for row in (
    ("unlabeled",             0, 255, "void",         0, False, True,  (0, 0, 0)),
    ("ego vehicle",           1, 255, "void",         0, False, True,  (0, 0, 0)),
    ("rectification border",  2, 255, "void",         0, False, True,  (0, 0, 0)),
    ("out of roi",            3, 255, "void",         0, False, True,  (0, 0, 0)),
    ("static",                4, 255, "void",         0, False, True,  (0, 0, 0)),
    ("dynamic",               5, 255, "void",         0, False, True,  (111, 74, 0)),
    ("ground",                6, 255, "void",         0, False, True,  (81, 0, 81)),
    ("road",                  7,   0, "flat",         1, False, False, (128, 64, 128)),
    ("sidewalk",              8,   1, "flat",         1, False, False, (244, 35, 232)),
    ("parking",               9, 255, "flat",         1, False, True,  (250, 170, 160)),
    ("rail track",           10, 255, "flat",         1, False, True,  (230, 150, 140)),
    ("building",             11,   2, "construction", 2, False, False, (70, 70, 70)),
    ("wall",                 12,   3, "construction", 2, False, False, (102, 102, 156)),
    ("fence",                13,   4, "construction", 2, False, False, (190, 153, 153)),
    ("guard rail",           14, 255, "construction", 2, False, True,  (180, 165, 180)),
    ("bridge",               15, 255, "construction", 2, False, True,  (150, 100, 100)),
    ("tunnel",               16, 255, "construction", 2, False, True,  (150, 120, 90)),
    ("pole",                 17,   5, "object",       3, False, False, (153, 153, 153)),
    ("polegroup",            18, 255, "object",       3, False, True,  (153, 153, 153)),
    ("traffic light",        19,   6, "object",       3, False, False, (250, 170, 30)),
    ("traffic sign",         20,   7, "object",       3, False, False, (220, 220, 0)),
    ("vegetation",           21,   8, "nature",       4, False, False, (107, 142, 35)),
    ("terrain",              22,   9, "nature",       4, False, False, (152, 251, 152)),
    ("sky",                  23,  10, "sky",          5, False, False, (70, 130, 180)),
    ("person",               24,  11, "human",        6, True,  False, (220, 20, 60)),
    ("rider",                25,  12, "human",        6, True,  False, (255, 0, 0)),
    ("car",                  26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    ("truck",                27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    ("bus",                  28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    ("caravan",              29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    ("trailer",              30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    ("train",                31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    ("motorcycle",           32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    ("bicycle",              33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    ("license plate",        -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
))
# fmt: on


def _id_to_train_id_lut() -> np.ndarray:
    """uint8[256]: Cityscapes labelId → trainId; every id not in the table maps to 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0 and 0 <= label.train_id < NUM_CLASSES:
            lut[label.id] = label.train_id
    return lut


ID_TO_TRAIN_ID: np.ndarray = _id_to_train_id_lut()
"""uint8[256] lookup table: ``ID_TO_TRAIN_ID[label_ids]`` converts a ``*_gtFine_labelIds.png``."""

TRAIN_ID_TO_ID: np.ndarray = np.array(
    [next(lb.id for lb in LABELS if lb.train_id == t) for t in range(NUM_CLASSES)], dtype=np.uint8
)
"""uint8[19]: trainId → Cityscapes labelId (exports that cityscapesScripts can score)."""

# Benchmark class subsets: the classes the paper evaluates for each source.
VIPER_CLASSES: tuple[int, ...] = (0, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 17, 18)
SYNTHIA_SEQ_CLASSES: tuple[int, ...] = (0, 1, 2, 5, 6, 7, 8, 10, 11, 12, 13)

CLASS_SUBSETS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(NUM_CLASSES)),
    "viper": VIPER_CLASSES,
    "synthia_seq": SYNTHIA_SEQ_CLASSES,
}
"""Named class subsets a config can refer to (``eval.classes: viper``)."""


def class_subset(name_or_ids: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Resolve a subset name (``"viper"``, ``"synthia_seq"``, ``"all"``) or an explicit id list."""
    if isinstance(name_or_ids, str):
        if name_or_ids not in CLASS_SUBSETS:
            raise ValueError(
                f"unknown class subset {name_or_ids!r}; expected one of {sorted(CLASS_SUBSETS)}"
            )
        return CLASS_SUBSETS[name_or_ids]
    ids = tuple(int(i) for i in name_or_ids)
    bad = [i for i in ids if not 0 <= i < NUM_CLASSES]
    if bad or len(set(ids)) != len(ids):
        raise ValueError(
            f"class subset {list(ids)} must hold distinct trainIds in 0..18; bad: {bad}"
        )
    return tuple(sorted(ids))


def palette_lut() -> np.ndarray:
    """uint8[256, 3] R,G,B colours indexed by trainId (ignore and unused values are black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = np.asarray(PALETTE, dtype=np.uint8)
    return lut


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Colour a trainId map.

    Args:
        train_ids: uint8/int array [H, W] of trainIds (255 = ignore).
    Returns:
        uint8 array [H, W, 3] in R,G,B order (reverse the last axis before ``cv2.imwrite``).
    """
    return palette_lut()[np.asarray(train_ids).astype(np.uint8)]
