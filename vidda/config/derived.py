"""Settings derived from several config sections that more than one layer reads."""

from __future__ import annotations

from vidda.config.schema import Config

__all__ = ["target_previous_offset"]


def target_previous_offset(cfg: Config, two_frame: bool) -> int:
    """Canonical offset of target "frame t−k" for the teacher's earlier pseudo-label.

    ``-k`` (``method.frame_distance``), except under ``compat.bdd_prev_frame_t4`` with a BDDVid
    target and a single-frame model: the original's ``imtk`` alias, frame t−2k with the flow
    t → t−k.
    """
    k = cfg.method.frame_distance
    alias = cfg.compat.bdd_prev_frame_t4 and cfg.data.target.type == "bddvid" and not two_frame
    return -2 * k if alias else -k
