"""Which checkpoint is best: one number per evaluation, from labels or from the predictions alone.

An evaluation result (:func:`vidda.engine.evaluator.evaluate`) holds the mIoU of each protocol
(with labels), the temporal consistency (``eval.temporal``) and the label-free scores of
:mod:`vidda.label_free`. :func:`selection_scores` flattens it to ``{name: value}`` where a larger
value is always better (``entropy`` enters negated), and adds ``label_free``, the fixed
combination ``vidda.config.derived.LABEL_FREE_WEIGHTS`` that ``eval.best_by: auto`` uses for
unlabelled targets.
"""

from __future__ import annotations

import math
from typing import Any

from vidda.config.derived import LABEL_FREE_WEIGHTS

__all__ = ["selection_scores"]


def selection_scores(result: dict[str, Any]) -> dict[str, float]:
    """``{standard, uvda, temporal, confidence, confident, entropy, im, label_free}`` — those
    the result holds — each "larger is better" (``entropy`` is the negated mean entropy)."""
    scores: dict[str, float] = {}
    for protocol in ("standard", "uvda"):
        if protocol in result:
            scores[protocol] = _number(result[protocol].get("miou"))
    if "temporal" in result:
        scores["temporal"] = _number(result["temporal"].get("miou"))
    free = result.get("label_free", {})
    for key in ("confidence", "confident", "im"):
        if key in free:
            scores[key] = _number(free[key])
    if "entropy" in free:
        scores["entropy"] = -_number(free["entropy"])
    if all(k in scores for k in LABEL_FREE_WEIGHTS):
        scores["label_free"] = sum(w * scores[k] for k, w in LABEL_FREE_WEIGHTS.items())
    return scores


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan
