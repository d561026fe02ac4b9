"""SYNTHIA-Seq (SYNTHIA-SEQS-04-DAWN, front-left camera), labels converted by
``vidda data convert synthia-seq`` (docs/datasets.md).

Frames are numbered ``000000``–``000849``. Without a split file every converted label is an entry
(entries whose earlier frames would be negative are reported by the index check).
"""

from __future__ import annotations

from pathlib import Path

from vidda.data.layout import SequenceLayout

# Classes SYNTHIA-Seq can hold after conversion (the converter's trainIds).
LABEL_VALUES = frozenset([0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 255])


def layout(root: Path, split: str, split_file: Path | None = None) -> SequenceLayout:
    """``root/RGB/Stereo_Left/Omni_F/<frame6>.png`` and ``root/GT/LABELS/...`` (one split)."""
    default_split = root / "splits" / f"{split}.txt"
    return SequenceLayout(
        dataset="synthia-seq",
        root=root,
        split=split,
        image_dir=root / "RGB" / "Stereo_Left" / "Omni_F",
        image_suffix=".png",
        label_dir=root / "GT" / "LABELS" / "Stereo_Left" / "Omni_F",
        label_suffix="_labelTrainIds_updated.png",
        flow_suffix=".png",
        split_file=split_file or (default_split if default_split.is_file() else None),
        frame_step=1,
        offset_range=None,
        label_values=LABEL_VALUES,
    )
