"""VIPER (-Seq), as downloaded, labels converted by ``vidda data convert viper`` (docs/datasets.md).

Split entries are every 10th frame (``001/001_00010``); the earlier frames come from the
``*[2-9]`` image archives.
"""

from __future__ import annotations

from pathlib import Path

from vidda.data.layout import SequenceLayout

# Classes VIPER can hold after conversion: no wall, pole or rider.
LABEL_VALUES = frozenset([0, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 255])


def layout(root: Path, split: str, split_file: Path | None = None) -> SequenceLayout:
    """``root/<split>/img/<seq>/<seq>_<frame5>.jpg`` and ``.../cls/..._labelTrainIds.png``."""
    default_split = root / "splits" / f"{split}.txt"
    return SequenceLayout(
        dataset="viper-seq",
        root=root,
        split=split,
        image_dir=root / split / "img",
        image_suffix=".jpg",
        label_dir=root / split / "cls",
        label_suffix="_labelTrainIds.png",
        flow_suffix=".png",
        split_file=split_file or (default_split if default_split.is_file() else None),
        frame_step=1,
        offset_range=(-9, 9),  # entries are multiples of 10 from 00010: neighbours stay in sequence
        label_values=LABEL_VALUES,
    )
