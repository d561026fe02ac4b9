"""Build datasets from config: the dataset registry and the config → ``ClipDataset`` mapping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vidda.config.registry import lookup
from vidda.config.schema import CompatConfig, DatasetConfig
from vidda.data.clips import ClipEntry, build_index
from vidda.data.dataset import ClipDataset
from vidda.data.datasets import (
    bdd_vid,
    cityscapes_seq,
    synthetic_layout,
    synthia_seq,
    viper_seq,
)
from vidda.data.layout import DatasetError, SequenceLayout
from vidda.data.transforms import ClipTransform

LayoutFn = Callable[..., SequenceLayout]

LAYOUTS: dict[str, LayoutFn] = {
    "cityscapes-seq": cityscapes_seq.layout,
    "viper-seq": viper_seq.layout,
    "synthia-seq": synthia_seq.layout,
    "bddvid": bdd_vid.layout,
    "synthetic": synthetic_layout.layout,
}
"""Dataset type name (``data.*.type`` in a config) → function building its ``SequenceLayout``."""


def dataset_layout(cfg: DatasetConfig, key: str = "dataset") -> SequenceLayout:
    """The file layout ``cfg`` describes; ``key`` names the config section in errors."""
    make_layout = lookup(LAYOUTS, cfg.type, f"{key}.type", "dataset type", DatasetError)
    if not cfg.root:
        raise DatasetError(f"{key}.root: no dataset root given for {cfg.type}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{key}.root: {cfg.type} root folder not found: {root}")
    kwargs: dict = {"split_file": Path(cfg.split_file) if cfg.split_file else None}
    if cfg.type == "synthetic":
        kwargs["domain"] = cfg.domain
    layout = make_layout(root, cfg.split, **kwargs)
    if cfg.frame_step:
        layout = replace(layout, frame_step=cfg.frame_step)
    return layout


def flow_roots(
    cfg: DatasetConfig, layout: SequenceLayout, key: str = "dataset"
) -> list[Path | None]:
    """One flow folder (or None) per offset of ``cfg``.

    ``flow_roots`` (per offset, as the published archives are laid out) wins; else ``flow_root``
    or the dataset's default folder serves every offset listed in ``flow_offsets``.
    """
    if cfg.flow_roots:
        if len(cfg.flow_roots) != len(cfg.offsets):
            raise DatasetError(
                f"{key}.flow_roots has {len(cfg.flow_roots)} entries but offsets "
                f"{list(cfg.offsets)} has {len(cfg.offsets)}"
            )
        return [None if r is None else _under(layout.root, r) for r in cfg.flow_roots]
    unknown = [o for o in cfg.flow_offsets if o not in cfg.offsets]
    if unknown:
        raise DatasetError(f"{key}.flow_offsets {unknown} are not in offsets {list(cfg.offsets)}")
    root = _under(layout.root, cfg.flow_root) if cfg.flow_root else layout.default_flow_root()
    return [root if o in cfg.flow_offsets else None for o in cfg.offsets]


def build_transform(cfg: DatasetConfig, train: bool, compat: CompatConfig) -> ClipTransform:
    """The train (random) or test (deterministic) pipeline of ``cfg``."""
    resize = tuple(cfg.resize) if cfg.resize else None
    margins = tuple(cfg.pl_margins) if cfg.pl_margins else None
    if not train:
        return ClipTransform(resize=resize, scale_flow=not compat.flow_not_rescaled)
    return ClipTransform(
        resize=resize,
        ratio_range=tuple(cfg.ratio_range) if cfg.ratio_range else None,
        crop_size=tuple(cfg.crop_size) if cfg.crop_size else None,
        cat_max_ratio=cfg.cat_max_ratio,
        flip_prob=0.5 if cfg.flip else 0.0,
        photometric=cfg.photometric,
        scale_flow=not compat.flow_not_rescaled,
        pl_margins=margins,
    )


def build_dataset(
    cfg: DatasetConfig,
    train: bool,
    compat: CompatConfig | None = None,
    with_labels: bool = True,
    key: str = "dataset",
    cache_dir: Path | None = None,
    progress: bool = False,
) -> ClipDataset:
    """Index and check a dataset split, then wrap it with its pipeline.

    ``type: video`` (the user's own unlabelled footage) decodes its videos into a frame and flow
    cache first: ``cfg.cache_dir``, else ``cache_dir`` (the trainer passes
    ``<run folder>/video_cache``); ``progress`` shows bars for that. It never has labels.
    """
    _check_lists(cfg, key)
    if cfg.type == "video":
        from vidda.data.datasets.video import video_dataset

        transform = build_transform(cfg, train, compat or CompatConfig())
        return video_dataset(cfg, transform, key, cache_dir, progress)
    layout = dataset_layout(cfg, key)
    layout.check_offsets(list(cfg.offsets))
    entries: list[ClipEntry] = build_index(
        layout, cfg.offsets, flow_roots(cfg, layout, key), with_labels, cfg.on_missing
    )
    transform = build_transform(cfg, train, compat or CompatConfig())
    return ClipDataset(layout, entries, list(cfg.offsets), transform)


def _check_lists(cfg: DatasetConfig, key: str) -> None:
    for name, value, n in (
        ("resize", cfg.resize, 2),
        ("crop_size", cfg.crop_size, 2),
        ("ratio_range", cfg.ratio_range, 2),
        ("pl_margins", cfg.pl_margins, 4),
    ):
        if value and len(value) != n:
            raise DatasetError(f"{key}.{name} must have {n} numbers, got {list(value)}")
    if sorted(set(cfg.offsets)) != list(cfg.offsets):
        raise DatasetError(f"{key}.offsets must be distinct and ascending, got {list(cfg.offsets)}")


def _under(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p

