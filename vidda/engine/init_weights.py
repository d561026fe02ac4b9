"""Start a run from another run's weights (``model.init_checkpoint``): the student only; the EMA
teacher copies it at iteration 0, and the ImageNet feature-distance model keeps
``model.pretrained``'s weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from vidda.engine.checkpoint import CheckpointError, load_checkpoint

__all__ = ["init_from_checkpoint", "describe_mismatch", "trained_as"]

log = logging.getLogger(__name__)
_SHOWN = 3  # keys named per kind in an error


def trained_as(state: dict[str, Any]) -> str:
    """``"dacs with mit_b0+segformer (encoder_decoder, 19 classes)"`` from a checkpoint's config."""
    cfg = state.get("config") if isinstance(state, dict) else None
    if not isinstance(cfg, dict):
        return "an unknown model (no config stored)"
    model, method = cfg.get("model", {}), cfg.get("method", {})
    return (f"{method.get('name', '?')} with {model.get('backbone', '?')}+{model.get('head', '?')} "
            f"({model.get('segmentor', '?')}, {model.get('num_classes', '?')} classes)")


def describe_mismatch(module: nn.Module, weights: dict[str, Any]) -> str:
    """Missing / unexpected keys and shape differences (counts and the first few), or ""."""
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]  # fmt: skip
    parts = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = ", ..." if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {what} ({', '.join(items[:_SHOWN])}{more})")
    return "; ".join(parts)


def init_from_checkpoint(student: nn.Module, path: str | Path) -> str:
    """Load ``path``'s student weights into ``student``; returns what was loaded into (for logs).

    A two-frame student (ACCEL) whose shared network ``student.segmentor`` fits the weights (a
    single-frame checkpoint) gets them there; its fusion keeps its initialisation.

    Raises:
        CheckpointError: unreadable file, no student weights, or weights that fit neither the
            student nor its shared network (the message names keys and the checkpoint's model).
    """
    path = Path(path).expanduser()
    state = load_checkpoint(path)
    models = state.get("models") if isinstance(state, dict) else None
    if not isinstance(models, dict) or "student" not in models:
        raise CheckpointError(f"model.init_checkpoint {path} holds no student weights "
                              "(models.student); is it a vidda checkpoint?")  # fmt: skip
    weights = models["student"]
    targets: list[tuple[str, nn.Module]] = [("the student", student)]
    shared = getattr(student, "segmentor", None)
    if student.two_frame and isinstance(shared, nn.Module):
        targets.append(("ACCEL's shared network", shared))
    for name, module in targets:
        if not describe_mismatch(module, weights):
            module.load_state_dict(weights)
            log.info("initialised %s from %s", name, path)
            return name
    raise CheckpointError(f"model.init_checkpoint {path} (trained as {trained_as(state)}) does "
                          f"not fit this config's model: {describe_mismatch(student, weights)}")
