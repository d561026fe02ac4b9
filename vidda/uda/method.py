"""What every training method provides to the trainer.

A method owns the networks it trains besides the student (EMA teacher, frozen ImageNet copy,
...), runs one iteration's forward and backward passes (``train_step``), and lists its state for
checkpoints. The trainer owns the optimizer, the schedule, AMP, logging and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

Backward = Callable[[torch.Tensor], None]


@dataclass
class StepContext:
    """Per-iteration inputs of ``train_step``.

    generator/rng: the iteration's own random streams (derived from the seed and the step, so a
    resumed run draws exactly what an uninterrupted one does). backward: back-propagates a loss
    (with AMP scaling). visuals: whether to return image panels this step.
    """

    step: int
    generator: torch.Generator
    rng: np.random.Generator
    backward: Backward
    visuals: bool = False


class Method(nn.Module):
    """Base class; subclasses implement ``train_step``.

    Attributes:
        student: the segmentor being trained (plain module; ``student_forward`` may be its DDP
            wrapper, which must be used for every forward whose loss is back-propagated; the
            segmentors' ``forward`` is their ``forward_train``).
        uses_target: whether batches must hold a ``target`` clip.
    """

    uses_target: bool = False

    def __init__(self, student: nn.Module, student_forward: nn.Module | None = None) -> None:
        super().__init__()
        self.student = student
        # Not registered as a submodule: it wraps ``student``, which is registered already.
        object.__setattr__(self, "student_forward", student_forward or student)

    def before_step(self, step: int) -> None:
        """Called before the iteration's forward passes (e.g. the EMA teacher update)."""

    def train_step(
        self, batch: dict[str, Any], ctx: StepContext
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One iteration: forward, ``ctx.backward`` every loss. Returns (logs, image panels)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, nn.Module]:
        """Networks besides the student that a checkpoint must hold, by name."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The method's own optimizers (e.g. the discriminator's), by name.

        The trainer zeroes them with its own before ``before_step``, steps them right after its
        own (through the same AMP scaler) and keeps their state in checkpoints; their learning
        rates are the method's business (set in ``before_step``).
        """
        return {}
