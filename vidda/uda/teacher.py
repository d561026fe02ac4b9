"""EMA teacher of self-training (DACS, DAFormer, HRDA, MIC).

* The teacher is a deep copy of the student segmentor; its parameters never require grad.
* :meth:`EMATeacher.update` at step ``t``: ``t == 0`` copies the student's parameters, later steps
  do ``θ_t ← a·θ_t + (1 − a)·θ_s`` with the warm-start momentum ``a = min(1 − 1/(t + 1), alpha)``
  (0.5 at t = 1, 0.9 at t = 9, ``alpha`` from ``t = 1/(1 − alpha) − 1`` on).
* **Parameters only.** Buffers (BN running statistics, ``num_batches_tracked``) are never copied
  or averaged; the teacher keeps its own, fed by its own forward passes.
* :func:`pseudo_mode` is how the teacher predicts: Dropout and DropPath off, **BatchNorm in train
  mode** (current-batch statistics), exactly like the original where the runner calls
  ``model.train()`` every iteration and only the dropout modules are switched to eval.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["EMATeacher", "ema_momentum", "is_dropout", "pseudo_mode"]


def ema_momentum(step: int, alpha: float) -> float:
    """Warm-start EMA momentum ``min(1 − 1/(step + 1), alpha)`` (0 at step 0)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(1.0 - 1.0 / (step + 1), alpha)


def is_dropout(module: nn.Module) -> bool:
    """True for ``nn.Dropout*`` (incl. Dropout2d, AlphaDropout) and any module class named
    ``DropPath`` (stochastic depth, e.g. :class:`vidda.models.backbones.mit.DropPath`)."""
    return isinstance(module, nn.modules.dropout._DropoutNd) or type(module).__name__ == "DropPath"


@contextmanager
def pseudo_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Context in which ``model`` predicts like the original's teacher.

    Every module is put in train mode (so BatchNorm normalises with the current batch's statistics
    and updates its running statistics, as the original's teacher does), then every Dropout and
    DropPath module is put in eval mode. On exit each module's previous ``training`` flag is
    restored. Gradients are not disabled here; wrap the forward in ``torch.no_grad()`` (the
    teacher's parameters do not require grad anyway, see :meth:`EMATeacher.predict`).
    """
    previous = [(m, m.training) for m in model.modules()]
    try:
        model.train()
        for m in model.modules():
            if is_dropout(m):
                m.eval()
        yield model
    finally:
        for m, flag in previous:
            m.training = flag


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``; else ``model`` itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


class EMATeacher(nn.Module):
    """Exponential-moving-average copy of a segmentor.

    Args:
        student: the segmentor to follow (a DDP/DataParallel wrapper is unwrapped). It is
            deep-copied once here; the copy is the teacher (``self.model``).
        alpha: the final EMA momentum (0.999 in ``dacs_a999_*``, 0.99 in base DACS).

    ``state_dict()`` holds the teacher's parameters and buffers under ``model.*``. The teacher is
    left in train mode, like the original's; use :meth:`predict` (or :func:`pseudo_mode`) to run it.
    """

    def __init__(self, student: nn.Module, alpha: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.model = copy.deepcopy(_unwrap(student))
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> float:
        """Move the teacher's parameters towards ``student``'s; returns the momentum ``a`` used.

        ``step == 0`` copies, later steps average (see the module docstring). Buffers untouched.
        Fused over all parameters with ``torch._foreach_mul_`` / ``torch._foreach_add_``.
        """
        a = ema_momentum(step, self.alpha)
        teacher_params, student_params = self._paired(_unwrap(student))
        if step == 0:
            torch._foreach_copy_(teacher_params, student_params)
        else:
            torch._foreach_mul_(teacher_params, a)
            torch._foreach_add_(teacher_params, student_params, alpha=1.0 - a)
        return a

    def _paired(self, student: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """Teacher and student parameters in the same order; names and shapes must match."""
        teacher = list(self.model.named_parameters())
        other = list(student.named_parameters())
        if len(teacher) != len(other):
            raise ValueError(f"teacher has {len(teacher)} parameters, student {len(other)}")
        for (tn, tp), (sn, sp) in zip(teacher, other, strict=True):
            if tn != sn or tp.shape != sp.shape:
                raise ValueError(
                    f"parameter mismatch: teacher {tn} {tuple(tp.shape)} "
                    f"vs student {sn} {tuple(sp.shape)}"
                )
        return [p for _, p in teacher], [p.detach() for _, p in other]

    @torch.no_grad()
    def predict(self, x: Tensor, method: str = "inference") -> Tensor:
        """Teacher logits for target images ``x`` ``[B, 3, H, W]`` under :func:`pseudo_mode`.

        Calls ``self.model.<method>(x)`` (``inference`` of the vidda segmentors gives
        full-resolution logits ``[B, K, H, W]``); falls back to ``self.model(x)`` when that method
        does not exist.
        """
        fn = getattr(self.model, method, self.model)
        with pseudo_mode(self.model):
            return fn(x)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`predict` with the default method."""
        return self.predict(x)
