"""``vidda weights convert SRC DST``: official checkpoints → files vidda loads.

* ImageNet backbone files (official SegFormer ``mit_b*.pth``, Hugging Face ``nvidia/mit-b*``,
  mmcv ResNet-101 v1c) → a backbone state dict with vidda's key names (``model.pretrained``).
* DAFormer / HRDA / MIC segmentor checkpoints (mmseg) → a vidda checkpoint holding the student
  (or teacher) and the resolved ``--config``, ready for ``vidda eval`` and ``vidda infer``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidda.config.load import ConfigError
from vidda.config.plain import plain_config
from vidda.config.schema import Config
from vidda.engine.checkpoint import save_checkpoint
from vidda.models.backbones import build_backbone
from vidda.models.backbones.mit import VARIANTS
from vidda.models.build import build_segmentor
from vidda.models.import_mmseg import is_mmseg_segmentor, load_mmseg_segmentor
from vidda.models.weights import (
    detect_format,
    load_backbone_file,
    mit_state_dict,
    read_checkpoint,
)


def convert(
    src: Path, dst: Path, cfg: Config | None = None, network: str = "student",
    backbone: str | None = None,
) -> str:  # fmt: skip
    """Convert ``src`` into ``dst``; returns a one-line description of what was written."""
    state = read_checkpoint(src)
    if is_mmseg_segmentor(state):
        if cfg is None:
            raise ConfigError(f"{src} is a segmentor checkpoint: give --config with its model")
        model = build_segmentor(cfg.model, load_pretrained=False)
        report = load_mmseg_segmentor(model, state, network)
        save_checkpoint({"step": 0, "config": plain_config(cfg), "source": str(src),
                         "models": {"student": model.state_dict()}}, dst)  # fmt: skip
        return f"{dst}: {network} of {src} as a vidda {type(model).__name__} ({report})"
    name = backbone or (cfg.model.backbone if cfg is not None else None) or _guess(state)
    module = build_backbone(name)
    report = load_backbone_file(module, src)
    save_checkpoint(module.state_dict(), dst)
    return f"{dst}: {name} backbone from {src} ({report})"


def _guess(state: dict[str, torch.Tensor]) -> str:
    """The MiT variant or ResNet a backbone file holds, from its tensors."""
    if detect_format(state) == "unknown":
        if any(k.startswith("stem.") for k in state):
            return "resnet101_v1c"
        raise ConfigError("cannot tell which backbone the file holds; give --backbone")
    sd = mit_state_dict(state)
    width = sd["patch_embed1.proj.weight"].shape[0]
    depths = tuple(1 + max(int(k.split(".")[1]) for k in sd if k.startswith(f"block{i}."))
                   for i in range(1, 5))  # fmt: skip
    for variant, spec in VARIANTS.items():
        if spec.embed_dims[0] == width and tuple(spec.depths) == depths:
            return variant
    raise ConfigError(f"no MiT variant has width {width} and depths {depths}; give --backbone")
