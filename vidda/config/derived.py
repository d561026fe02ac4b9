"""Settings derived from several config sections that more than one layer reads."""

from __future__ import annotations

from vidda.config.schema import Config, DatasetConfig

__all__ = [
    "LABEL_FREE_DEFAULT",
    "LABEL_FREE_WEIGHTS",
    "available_scores",
    "best_by",
    "dataset_given",
    "has_labels",
    "target_previous_offset",
]


def dataset_given(ds: DatasetConfig) -> bool:
    """Whether a dataset section names data: a root folder, or videos for ``type: video``."""
    return bool(ds.videos) if ds.type == "video" else bool(ds.root)


LABEL_FREE_WEIGHTS: dict[str, float] = {"temporal": 0.5, "im": 0.5}
"""The score ``label_free`` = Σ weight · score over these (each in percent, larger is better;
computed by ``vidda.engine.selection``)."""

LABEL_FREE_DEFAULT = "label_free"
"""What ``eval.best_by: auto`` selects by when ``data.val`` has no labels (see
``docs/label_free_selection.md`` for how the scores ranked checkpoints)."""


def best_by(cfg: Config) -> str:
    """The score that selects ``best.pt``: ``eval.best_by``, with ``auto`` resolved to
    ``standard`` (or the first protocol) for a labelled ``data.val``, else to the label-free
    default."""
    if cfg.eval.best_by != "auto":
        return cfg.eval.best_by
    if not has_labels(cfg.data.val):
        return LABEL_FREE_DEFAULT
    protocols = list(cfg.eval.protocols)
    return "standard" if "standard" in protocols or not protocols else protocols[0]


def available_scores(cfg: Config) -> list[str]:
    """The scores an evaluation of ``cfg`` produces, each a possible ``eval.best_by``: the
    protocols' mIoU (labelled ``data.val`` only), ``temporal`` (with ``eval.temporal``), the
    label-free scores, and ``label_free`` when every score it combines is there."""
    scores = list(cfg.eval.protocols) if has_labels(cfg.data.val) else []
    scores += ["temporal"] if cfg.eval.temporal else []
    scores += ["confidence", "confident", "entropy", "im"]
    if all(k in scores for k in LABEL_FREE_WEIGHTS):
        scores.append("label_free")
    return scores


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
