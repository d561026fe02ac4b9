"""Learning-rate schedule: poly decay with linear warm-up (mmcv 1.3.7 semantics).

Pure functions below the engine and the UDA methods, which both set learning rates.
"""

from __future__ import annotations

from torch.optim import Optimizer


def lr_factor(
    step: int, total: int, power: float = 1.0, warmup: int = 0, ratio: float = 1e-6
) -> float:
    """Multiplier of each group's initial lr before 0-based iteration ``step``.

    poly(t) = (1 − t/T)^power; during warm-up the *already decayed* value is scaled by
    1 − (1 − t/warmup)(1 − ratio), as mmcv 1.3.7 does (so lr(0) = ratio · lr₀).
    """
    factor = max(1.0 - step / total, 0.0) ** power
    if step < warmup:
        factor *= 1.0 - (1.0 - step / warmup) * (1.0 - ratio)
    return factor


def set_lr(optimizer: Optimizer, factor: float) -> None:
    """Set every group's lr to its ``initial_lr`` × ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
