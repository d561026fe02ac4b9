"""Training streams: source/target clip pairs, rare-class sampling, resumable sampling order.

Every random choice of training sample number k (which source and target clip, the crop, the
flip, ...) comes from ``np.random.default_rng([seed, k])``. A run resumed at step s therefore
sees exactly the samples an uninterrupted run would, whatever the number of workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vidda.config.schema import RCSConfig
from vidda.data.dataset import ClipDataset
from vidda.data.layout import DatasetError

log = logging.getLogger(__name__)

RCS_CROP_TRIES = 10  # re-draws of a crop that holds too few pixels of the sampled class


class RareClassSampler:
    """Draw class c with probability softmax((1 − f_c) / T), then a clip with > min_pixels of c.

    f_c is the share of class c among all labelled pixels of the source split (from
    ``sample_class_stats.json``, matched to the split's entries by label-file name; statistics of
    files outside the split are ignored).
    """

    def __init__(self, dataset: ClipDataset, cfg: RCSConfig) -> None:
        self.cfg = cfg
        stats_path = Path(cfg.stats_file) if cfg.stats_file else (
            dataset.layout.root / "sample_class_stats.json"
        )
        by_file = _read_stats(stats_path)
        index_of = {e.label.name: i for i, e in enumerate(dataset.entries) if e.label is not None}
        matched = {name: counts for name, counts in by_file.items() if name in index_of}
        if not matched:
            raise DatasetError(
                f"{stats_path}: none of its {len(by_file)} files is an entry of "
                f"{dataset!r} (files are matched by label-file name)"
            )
        if len(matched) < len(by_file):
            log.info("RCS: ignoring %d statistics of files outside the split",
                     len(by_file) - len(matched))  # fmt: skip
        totals: dict[int, int] = {}
        for counts in matched.values():
            for c, n in counts.items():
                totals[c] = totals.get(c, 0) + n
        classes = sorted(totals)
        freq = np.array([totals[c] for c in classes], np.float64)
        freq /= freq.sum()
        logits = (1.0 - freq) / cfg.class_temp
        probs = np.exp(logits - logits.max())
        self.candidates: dict[int, np.ndarray] = {}
        keep = []
        for c, p in zip(classes, probs, strict=True):
            files = sorted(index_of[f] for f, counts in matched.items()
                           if counts.get(c, 0) > cfg.min_pixels)  # fmt: skip
            if files:
                self.candidates[c] = np.array(files)
                keep.append((c, p))
            else:
                log.warning("RCS: no source clip holds more than %d pixels of class %d",
                            cfg.min_pixels, c)  # fmt: skip
        self.classes = np.array([c for c, _ in keep])
        p = np.array([p for _, p in keep])
        self.probs = p / p.sum()

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """(class, dataset index) of one rare-class draw."""
        c = int(self.classes[rng.choice(len(self.classes), p=self.probs)])
        files = self.candidates[c]
        return c, int(files[rng.integers(len(files))])

    def enough(self, label: torch.Tensor, c: int) -> bool:
        """Whether a transformed label crop holds enough pixels of class c."""
        return int((label == c).sum()) > self.cfg.min_pixels * self.cfg.min_crop_ratio


def _read_stats(path: Path) -> dict[str, dict[int, int]]:
    """``{label file name: {trainId: pixels}}`` from the original's ``sample_class_stats.json``."""
    if not path.is_file():
        raise DatasetError(
            f"rare-class sampling needs {path}; write it with `vidda data convert` "
            "(or set data.rcs.enabled=false)"
        )
    try:
        rows = json.loads(path.read_text())
        return {
            Path(row["file"]).name: {int(k): int(v) for k, v in row.items() if k != "file"}
            for row in rows
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetError(
            f"{path}: expected a JSON list of {{'file': ..., '<trainId>': pixels}} objects ({err})"
        ) from err


class TrainStream(Dataset):
    """Training sample number k → ``{"source": sample, "target": sample}`` (target optional)."""

    def __init__(
        self,
        source: ClipDataset,
        target: ClipDataset | None = None,
        seed: int = 0,
        rcs: RareClassSampler | None = None,
    ) -> None:
        self.source, self.target, self.seed, self.rcs = source, target, seed, rcs

    def __len__(self) -> int:  # a stream has no natural end; the sampler decides
        return 2**62

    def __getitem__(self, k: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, k])
        out = {"source": self._source_sample(rng)}
        if self.target is not None:
            out["target"] = self.target.get(int(rng.integers(len(self.target))), rng)
        return out

    def _source_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        if self.rcs is None:
            return self.source.get(int(rng.integers(len(self.source))), rng)
        c, index = self.rcs.sample(rng)
        raw = self.source.load(index)  # decoded once, re-cropped until the class is in view
        for _ in range(RCS_CROP_TRIES):
            sample = self.source.transform(raw, rng)
            if self.rcs.enough(sample["label"], c):
                break
        sample["index"] = index
        return sample


class StreamSampler(Sampler[int]):
    """Sample numbers for steps ``start .. stop-1``: rank r of w takes ``(step·w + r)·B + b``."""

    def __init__(
        self, batch_size: int, start_step: int = 0, stop_step: int | None = None,
        rank: int = 0, world_size: int = 1,
    ) -> None:  # fmt: skip
        self.batch_size, self.start, self.stop = batch_size, start_step, stop_step
        self.rank, self.world = rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while self.stop is None or step < self.stop:
            base = (step * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless StreamSampler has no length")
        return max(self.stop - self.start, 0) * self.batch_size


def worker_init(_: int) -> None:
    """Data workers decode with OpenCV single-threaded: the workers are the parallelism."""
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def train_loader(
    stream: TrainStream,
    batch_size: int,
    num_workers: int,
    start_step: int = 0,
    stop_step: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Batches of ``stream`` for steps ``start_step ..``; pinned memory when CUDA is present."""
    sampler = StreamSampler(batch_size, start_step, stop_step, rank, world_size)
    return DataLoader(
        stream,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_init,
        prefetch_factor=2 if num_workers > 0 else None,
        # Its own generator: starting an iterator must not consume the global torch RNG (which
        # drop-path and dropout use), or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(0),
    )
