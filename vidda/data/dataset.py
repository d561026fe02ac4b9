"""``ClipDataset``: a map-style dataset of clips (see ``vidda.data.clips``) with a transform."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vidda.data.clips import ClipEntry, RawClip, load_clip
from vidda.data.layout import SequenceLayout
from vidda.data.transforms import ClipTransform


class ClipDataset(Dataset):
    """Clips of one dataset split.

    ``dataset[i]`` is the deterministic (test) sample of entry i; training code calls
    ``get(i, rng)`` so that every random draw comes from a generator it controls (exact resume).
    """

    def __init__(
        self,
        layout: SequenceLayout,
        entries: list[ClipEntry],
        offsets: list[int],
        transform: ClipTransform,
    ) -> None:
        self.layout = layout
        self.entries = entries
        self.offsets = list(offsets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (
            f"ClipDataset({self.layout.dataset} '{self.layout.split}', {len(self)} clips, "
            f"offsets {self.offsets}, frame step {self.layout.frame_step})"
        )

    def load(self, index: int) -> RawClip:
        """Decode entry ``index`` (numpy arrays at native resolution)."""
        return load_clip(self.entries[index], self.layout.label_values)

    def get(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Entry ``index`` transformed with the draws of ``rng`` (None: the test path)."""
        sample = self.transform(self.load(index), rng)
        sample["index"] = index
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index)
