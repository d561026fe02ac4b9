"""Cityscapes-Seq (``leftImg8bit_sequence`` + ``gtFine``), as downloaded (docs/datasets.md).

The labelled frame of a 30-frame snippet is its 20th (offsets −19…+10 exist), but its number is
not always ``000019``: neighbours are derived from the entry's own frame number.
"""

from __future__ import annotations

from pathlib import Path

from vidda.data.layout import SequenceLayout


def layout(root: Path, split: str, split_file: Path | None = None) -> SequenceLayout:
    """``root/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` etc."""
    default_split = root / "splits" / f"{split}.txt"
    return SequenceLayout(
        dataset="cityscapes-seq",
        root=root,
        split=split,
        image_dir=root / "leftImg8bit_sequence" / split,
        image_suffix="_leftImg8bit.png",
        label_dir=root / "gtFine" / split,
        label_suffix="_gtFine_labelTrainIds.png",
        flow_suffix="_leftImg8bit.png",
        split_file=split_file or (default_split if default_split.is_file() else None),
        frame_step=1,
        offset_range=(-19, 10),
    )
