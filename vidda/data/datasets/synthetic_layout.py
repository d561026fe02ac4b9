"""Reading the synthetic benchmark that ``vidda data synth`` writes (same path as real datasets).

``ROOT/<domain>/<split>/{images,labels,flow}/<clip>/<clip>_<frame6>...`` with the split file
``ROOT/<domain>/<split>.txt``; every frame but a clip's first has its backward flow.
"""

from __future__ import annotations

from pathlib import Path

from vidda.data.layout import DatasetError, SequenceLayout

DOMAINS = ("source", "target")


def layout(
    root: Path, split: str, split_file: Path | None = None, domain: str = ""
) -> SequenceLayout:
    if domain not in DOMAINS:
        raise DatasetError(f"synthetic dataset: domain must be one of {DOMAINS}, got {domain!r}")
    base = root / domain / split
    return SequenceLayout(
        dataset="synthetic",
        root=root,
        split=split,
        image_dir=base / "images",
        image_suffix=".png",
        label_dir=base / "labels",
        label_suffix="_labelTrainIds.png",
        flow_suffix=".png",
        split_file=split_file or root / domain / f"{split}.txt",
        frame_step=1,
        flow_dir=base / "flow",
    )
