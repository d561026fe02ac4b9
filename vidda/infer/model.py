"""The network ``vidda infer`` runs: read from a checkpoint, wrapped for uint8 video frames.

A vidda checkpoint (``vidda train``'s ``latest.pt`` / ``best.pt``, or ``vidda weights convert``'s
output) carries its resolved config, so no config file is needed; ``--config CFG`` replaces it
(required for files without one) and ``KEY=VALUE`` overrides apply on top (e.g.
``eval.mode=slide``). The student is used unless ``network="teacher"`` asks for the EMA teacher
that training checkpoints of DACS-style methods also hold.

Two-frame models: ``model.segmentor: accel`` configs build ACCEL (``model.accel``, the
``compat.accel_*`` switches). A checkpoint whose weights are an ACCEL model's (``segmentor.*`` +
``fusion.weight``) under a config that names only its base segmentor (e.g. ``--config`` of the
base) is wrapped in a default :class:`vidda.models.segmentors.accel.ACCEL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidda.amp import AMP_DTYPES
from vidda.config.load import config_from_dict, load_config, merge_overrides
from vidda.config.schema import Config, EvalConfig
from vidda.engine.checkpoint import CheckpointError, load_checkpoint
from vidda.errors import UserError
from vidda.models.build import build_segmentor
from vidda.models.segmentors.accel import ACCEL
from vidda.models.segmentors.inputs import Pair

__all__ = [
    "NETWORKS",
    "LoadedModel",
    "Segmenter",
    "build_model",
    "is_two_frame_state",
    "load_model",
    "resolve_device",
]

NETWORKS = ("student", "teacher")


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, in eval mode on the CPU."""

    model: nn.Module
    cfg: Config
    network: str
    step: int | None
    checkpoint: Path

    @property
    def description(self) -> str:
        """E.g. ``"demo_dacs_mic: EncoderDecoder (mit_b0 + segformer head, 19 classes), student
        at step 1500"``."""
        m = self.cfg.model
        step = f" at step {self.step}" if self.step is not None else ""
        return (f"{self.cfg.name or self.checkpoint.stem}: {type(self.model).__name__} "
                f"({m.backbone} + {m.head} head, {m.num_classes} classes), "
                f"{self.network}{step}")  # fmt: skip


def is_two_frame_state(weights: dict[str, Any]) -> bool:
    """Whether a state dict is an ACCEL model's: ``fusion.weight`` and ``segmentor.*`` only."""
    return "fusion.weight" in weights and all(
        k == "fusion.weight" or k.startswith("segmentor.") for k in weights
    )


def build_model(cfg: Config, weights: dict[str, Any]) -> nn.Module:
    """The architecture ``cfg`` describes (ACCEL with ``cfg.compat``'s switches) that ``weights``
    fit; a two-frame state dict under a single-frame config is wrapped in a default ACCEL."""
    model = build_segmentor(cfg.model, load_pretrained=False, compat=cfg.compat)
    if is_two_frame_state(weights) and not is_two_frame_state(model.state_dict()):
        model = ACCEL(model, cfg.model.num_classes)
    return model


def _config(state: Any, checkpoint: Path, config: Path | None, overrides: Sequence[str]) -> Config:
    if config is not None:
        return load_config(config, overrides)
    stored = state.get("config") if isinstance(state, dict) else None
    if not isinstance(stored, dict):
        raise CheckpointError(f"{checkpoint} holds no config; pass --config CFG (the config the "
                              "model was trained with)")  # fmt: skip
    cfg = config_from_dict(stored, origin=f"the config stored in {checkpoint}")
    return merge_overrides(cfg, overrides) if overrides else cfg


def load_model(
    checkpoint: str | Path,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    network: str = "student",
) -> LoadedModel:
    """Rebuild ``network`` of ``checkpoint`` (in eval mode, on the CPU).

    Raises:
        CheckpointError: unreadable file, no config and no ``config``, no such network, or
            weights that do not fit the config's model.
        ConfigError: a bad ``config`` file or override.
    """
    checkpoint = Path(checkpoint)
    if network not in NETWORKS:
        raise UserError(f"network must be one of {NETWORKS}, got {network!r}")
    state = load_checkpoint(checkpoint)
    cfg = _config(state, checkpoint, Path(config) if config else None, overrides)
    models = state.get("models") if isinstance(state, dict) else None
    if not isinstance(models, dict) or "student" not in models:
        raise CheckpointError(f"{checkpoint} holds no model weights (models.student); is it a "
                              "vidda checkpoint? (convert official ones: vidda weights convert)")
    if network not in models:
        have = [k for k in NETWORKS if k in models]
        raise CheckpointError(f"{checkpoint} holds no {network} network; it has: {have}")
    weights = models[network]
    model = build_model(cfg, weights)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint} does not fit the config's model: {str(err).splitlines()[0]}"
        ) from err
    step = state.get("step")
    return LoadedModel(model.eval(), cfg, network, int(step) if step is not None else None,
                       checkpoint)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device: {err}") from err


class Segmenter:
    """A segmentor applied to uint8 frames with the config's test-time settings.

    Args:
        model: a segmentor (:class:`vidda.models.segmentors.base.Segmentor`); one whose
            ``predict_two_frame`` is set (ACCEL) also reads the previous frame and the flow.
        eval_cfg: ``mode`` (whole | slide), ``crop_size``, ``stride`` (HRDA's multi-resolution
            inference happens inside its ``predict``).
        device: where the model runs (it is moved there).
        amp: ``off``, ``bf16`` or ``fp16`` autocast — on CUDA only; ignored on the CPU.
    """

    def __init__(
        self, model: nn.Module, eval_cfg: EvalConfig, device: torch.device | str = "cpu",
        amp: str = "off",
    ) -> None:  # fmt: skip
        if amp not in AMP_DTYPES:
            raise UserError(f"amp must be one of {list(AMP_DTYPES)}, got {amp!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.mode = eval_cfg.mode
        self.crop = tuple(eval_cfg.crop_size) if eval_cfg.crop_size else None
        self.stride = tuple(eval_cfg.stride) if eval_cfg.stride else None
        self.amp_dtype = AMP_DTYPES[amp] if self.device.type == "cuda" else None
        self.two_frame = bool(model.predict_two_frame)

    @torch.no_grad()
    def __call__(
        self,
        frames: Tensor,
        prev: Tensor | None = None,
        flow: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Logits ``float32 [B, K, H, W]`` of frames ``uint8 [B, 3, H, W]`` (R,G,B, CPU or device).

        Two-frame models also take ``prev`` (the previous frames, ``uint8 [B, 3, H, W]``), the
        backward ``flow`` ``[B, 2, H, W]`` of each frame into its previous one (pixels) and its
        ``valid`` mask ``bool [B, H, W]``.
        """
        dev = self.device
        inputs = Pair(frames.to(dev, non_blocking=True))
        if self.two_frame:
            if prev is None or flow is None:
                raise ValueError("a two-frame model needs prev and flow")
            inputs = Pair(inputs.x, prev.to(dev), flow.to(dev),
                          None if valid is None else valid.to(dev))  # fmt: skip
        inputs = self.model.prepare(inputs)
        with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model.predict(inputs, self.mode, self.crop, self.stride)
        return logits.float()
