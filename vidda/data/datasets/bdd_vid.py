"""BDDVid (BDD10k frames with their BDD100K videos), as built by ``vidda data build-bddvid``.

Frames 303–311 of each video are extracted; 307 is the labelled one, so the frame step is 2 and
canonical offsets −2, −1, 0 read video frames 303, 305, 307. ``val_orig_10k`` holds the BDD10k
still as frame 307 (the image the label was drawn on), which is what evaluation uses.
"""

from __future__ import annotations

from pathlib import Path

from vidda.data.layout import SequenceLayout

SPLIT_FILES = {
    "train": "valid_imgs_train.txt",
    "train_orig_10k": "valid_imgs_train.txt",
    "val": "valid_imgs_val.txt",
    "val_orig_10k": "valid_imgs_val.txt",
}


def layout(root: Path, split: str, split_file: Path | None = None) -> SequenceLayout:
    """``root/<split>/images/<id>_<frame3>.jpg`` and ``root/<split>/labels/<id>_307.png``."""
    default_split = root / "splits" / SPLIT_FILES.get(split, f"{split}.txt")
    return SequenceLayout(
        dataset="bddvid",
        root=root,
        split=split,
        image_dir=root / split / "images",
        image_suffix=".jpg",
        label_dir=root / split / "labels",
        label_suffix=".png",
        flow_suffix=".png",
        split_file=split_file or (default_split if default_split.is_file() else None),
        frame_step=2,
        offset_range=(-4, 4),  # only frames 303..311 are extracted
    )
