"""``vidda data check``: read every file a config's datasets will need, before a long run.

For each dataset split: the index (frames at every offset, the label, the flows), then every file
decoded: images readable and of one size per clip, labels single-channel 8-bit with values of the
dataset's class table, flows readable and of their frame's size, and the rare-class statistics
when they are used. Problems are grouped by kind with counts and the first paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from vidda.config.schema import Config, DatasetConfig
from vidda.data.build import dataset_layout, flow_roots
from vidda.data.clips import ClipEntry, read_label, scan_index
from vidda.data.layout import DatasetError
from vidda.flow.io import FlowFileError, read_flow

SHOW = 5  # paths printed per kind


@dataclass
class SplitReport:
    """What ``check_dataset`` found in one dataset split."""

    name: str  # e.g. "data.source (viper-seq 'train')"
    entries: int = 0
    clean: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, what: str) -> None:
        self.problems.setdefault(kind, []).append(what)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        status = "ok" if self.ok else "PROBLEMS"
        lines = [f"{self.name}: {self.entries} entries, {self.clean} clean — {status}"]
        for kind, items in sorted(self.problems.items()):
            lines.append(f"  {len(items)} × {kind}")
            lines += [f"    {item}" for item in items[:SHOW]]
            if len(items) > SHOW:
                lines.append(f"    ... and {len(items) - SHOW} more")
        return "\n".join(lines)


def check_config(cfg: Config, workers: int = 0, progress: bool = True) -> list[SplitReport]:
    """Check every dataset the config names (``data.source``, ``data.target``, ``data.val``)."""
    reports = []
    for key in ("source", "target", "val"):
        ds: DatasetConfig = getattr(cfg.data, key)
        if not ds.root:
            continue
        stats = None
        if key == "source" and cfg.data.rcs.enabled:
            stats = (
                Path(cfg.data.rcs.stats_file)
                if cfg.data.rcs.stats_file
                else Path(ds.root) / ("sample_class_stats.json")
            )
        reports.append(check_dataset(ds, f"data.{key}", workers, progress, stats))
    return reports


def check_dataset(
    cfg: DatasetConfig,
    key: str = "dataset",
    workers: int = 0,
    progress: bool = True,
    class_stats: Path | None = None,
) -> SplitReport:
    """Check one dataset split as configured; never raises for problems in the data."""
    report = SplitReport(f"{key} ({cfg.type} '{cfg.split}' at {cfg.root})")
    try:
        layout = dataset_layout(cfg, key)
        entries, missing, total = scan_index(layout, cfg.offsets, flow_roots(cfg, layout, key))
    except DatasetError as err:
        report.add("unusable configuration or split", str(err))
        return report
    report.entries = total
    for kind, items in missing.items():
        for item in items:
            report.add("bad entry" if kind == "entry" else f"missing {kind}", item)
    allowed = layout.label_values
    results = _map(_check_entry, [(e, allowed) for e in entries], workers, progress, report.name)
    for problems in results:
        for kind, what in problems:
            report.add(kind, what)
        report.clean += not problems
    if class_stats is not None and not class_stats.is_file():
        report.add("missing class statistics (rare-class sampling)", str(class_stats))
    return report


def _check_entry(args: tuple[ClipEntry, frozenset[int]]) -> list[tuple[str, str]]:
    """(kind, message) for every problem of one clip's files."""
    entry, allowed = args
    problems: list[tuple[str, str]] = []
    sizes: dict[Path, tuple[int, int]] = {}
    for path in entry.frames:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            problems.append(("unreadable image", str(path)))
        else:
            sizes[path] = image.shape[:2]
    key_size = sizes.get(entry.frames[-1])
    for path, size in sizes.items():
        if key_size is not None and size != key_size:
            problems.append(("frame size differs from the key frame", f"{path}: {_wh(size)}"))
    if entry.label is not None:
        try:
            label = read_label(entry.label, allowed)
            if key_size is not None and label.shape != key_size:
                problems.append(("label size differs from its frame", f"{entry.label}"))
        except DatasetError as err:
            kind = (
                "label values outside the class table"
                if "values" in str(err)
                else ("unreadable label")
            )
            problems.append((kind, str(err)))
    for frame, path in zip(entry.frames, entry.flows, strict=True):
        if path is None:
            continue
        try:
            flow, _ = read_flow(path)
        except FlowFileError as err:
            problems.append(("unreadable flow", str(err)))
            continue
        size = sizes.get(frame)
        if size is not None and flow.shape[:2] != size:
            problems.append(("flow size differs from its frame",
                             f"{path}: {_wh(flow.shape)} vs frame {_wh(size)}"))  # fmt: skip
    return problems


def _map(fn, items: list, workers: int, progress: bool, desc: str) -> Iterable:
    bar = dict(total=len(items), desc=desc, disable=not progress, unit="clip")
    if workers <= 0 or len(items) < 2:
        return [fn(x) for x in tqdm(items, **bar)]
    with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=16), **bar))


def _wh(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {
    "cityscapes-seq": ("train", "val"),
    "viper-seq": ("train", "val"),
    "synthia-seq": ("train",),
    "bddvid": ("train", "val_orig_10k"),
    "synthetic": ("train", "val"),
}
"""Splits ``vidda data check --dataset NAME ROOT`` looks at when no ``--split`` is given."""


def dataset_configs(name: str, root: str, splits: list[str], flows: bool) -> list[DatasetConfig]:
    """The configs ``vidda data check --dataset NAME ROOT`` checks: each split (and domain)."""
    if name not in DEFAULT_SPLITS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {sorted(DEFAULT_SPLITS)}")
    domains = ("source", "target") if name == "synthetic" else ("",)
    out = []
    for split in splits or DEFAULT_SPLITS[name]:
        if (
            name == "viper-seq"
            and not splits
            and split == "val"
            and not (Path(root) / split).is_dir()
        ):
            continue  # VIPER's val part is optional
        for domain in domains:
            out.append(
                DatasetConfig(
                    type=name,
                    root=root,
                    split=split,
                    domain=domain,
                    flow_offsets=[-1, 0] if flows else [],
                )  # fmt: skip
            )
    return out
