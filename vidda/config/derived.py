"""Settings derived from several config sections that more than one layer reads."""

from __future__ import annotations

from vidda.config.schema import Config, DatasetConfig

__all__ = ["dataset_given", "has_labels", "target_previous_offset"]


def dataset_given(ds: DatasetConfig) -> bool:
    """Whether a dataset section names data: a root folder, or videos for ``type: video``."""
    return bool(ds.videos) if ds.type == "video" else bool(ds.root)


def has_labels(ds: DatasetConfig) -> bool:
    """Whether a dataset section's clips carry ground truth (``type: video`` never does)."""
    return ds.type != "video"


def target_previous_offset(cfg: Config, two_frame: bool) -> int:
    """Canonical offset of target "frame t−k" for the teacher's earlier pseudo-label.

    ``-k`` (``method.frame_distance``), except under ``compat.bdd_prev_frame_t4`` with a BDDVid
    target and a single-frame model: the original's ``imtk`` alias, frame t−2k with the flow
    t → t−k.
    """
    k = cfg.method.frame_distance
    alias = cfg.compat.bdd_prev_frame_t4 and cfg.data.target.type == "bddvid" and not two_frame
    return -2 * k if alias else -k
