"""Scores of a model's predictions that need no ground truth, for choosing checkpoints on
unlabelled target video.

From the softmax ``p`` of every pixel of every frame seen (C classes):

* ``confidence``: the mean of ``max_c p_c``, percent;
* ``confident``: the share of pixels with ``max_c p_c >= threshold`` (the pseudo-label
  threshold τ, so: the share of pixels self-training would trust), percent;
* ``entropy``: the mean of ``H(p) / log C``, percent (lower is more certain);
* ``im``: information maximisation, ``(H(p̄) − mean H(p)) / log C`` in percent, where ``p̄`` is
  the mean prediction over all pixels: high when predictions are certain *and* the classes are
  used evenly, so a model that collapses onto a few classes scores low although it is certain.

The temporal consistency of predictions along the flow (``vidda.temporal``) is the fifth
label-free score; ``vidda.engine.selection`` combines them. Everything accumulates on the
device (no host synchronisation per update). Example::

    scores = LabelFreeScores(num_classes=19, threshold=0.968)
    for logits in batches:                   # [B, C, H, W]
        scores.update(logits)
    scores.compute()["im"]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LABEL_FREE_KEYS", "LabelFreeScores"]

LABEL_FREE_KEYS = ("confidence", "confident", "entropy", "im")


class LabelFreeScores:
    """Streaming confidence, confident share, entropy and information maximisation.

    Args:
        num_classes: C, the logits' channel count.
        threshold: τ of ``confident``, in (0, 1].
    """

    def __init__(self, num_classes: int, threshold: float) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        # float64 [4]: Σ max p, Σ [max p >= τ], Σ H(p), pixels; [C]: Σ p over pixels
        self._sums: Tensor | None = None
        self._mass: Tensor | None = None

    @torch.no_grad()
    def update(self, logits: Tensor, valid: Tensor | None = None) -> None:
        """Count the pixels of ``logits`` float ``[B, C, H, W]`` (``valid``: bool ``[B, H, W]``,
        the pixels to count; None = all)."""
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be [B, {self.num_classes}, H, W], got {tuple(logits.shape)}"
            )
        logp = torch.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        top = p.amax(dim=1)  # [B, H, W]
        ent = -(p * logp).sum(dim=1)
        w = torch.ones_like(top) if valid is None else valid.to(top.dtype)
        sums = torch.stack([(top * w).sum(), ((top >= self.threshold) * w).sum(),
                            (ent * w).sum(), w.sum()])  # fmt: skip
        mass = (p * w[:, None]).sum(dim=(0, 2, 3))
        self._sums = sums if self._sums is None else self._sums + sums
        self._mass = mass if self._mass is None else self._mass + mass

    def all_reduce(self) -> None:
        """Sum the counts over all ``torch.distributed`` ranks (no-op when not initialised)."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or self._sums is None:
            return
        assert self._mass is not None
        both = torch.cat([self._sums, self._mass])
        dist.all_reduce(both, op=dist.ReduceOp.SUM)
        self._sums, self._mass = both[:4], both[4:]

    def compute(self) -> dict[str, float]:
        """``{confidence, confident, entropy, im}`` in percent (NaN when nothing was counted)
        and ``pixels``."""
        if self._sums is None or self._mass is None or float(self._sums[3]) == 0:
            return {**{k: math.nan for k in LABEL_FREE_KEYS}, "pixels": 0}
        top, confident, ent, n = (float(v) for v in self._sums.cpu())
        log_c = math.log(self.num_classes)
        mean_p = self._mass / self._mass.sum()
        marginal = float(-(mean_p * mean_p.clamp_min(1e-300).log()).sum())
        return {
            "confidence": 100.0 * top / n,
            "confident": 100.0 * confident / n,
            "entropy": 100.0 * ent / n / log_c,
            "im": 100.0 * (marginal - ent / n) / log_c,
            "pixels": int(n),
        }
