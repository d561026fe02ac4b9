"""``vidda weights convert SRC DST``: official checkpoints → files vidda loads.

* ImageNet backbone files (official SegFormer ``mit_b*.pth``, Hugging Face ``nvidia/mit-b*``,
  mmcv ResNet-101 v1c) → a backbone state dict with vidda's key names (``model.pretrained``).
* DAFormer / HRDA / MIC segmentor checkpoints (mmseg) → a vidda checkpoint holding the student
  (or teacher) and the resolved ``--config``, ready for ``vidda eval`` and ``vidda infer``.

Imported by the command's handler only, so that building the parser imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from vidda.config.load import ConfigError
from vidda.config.plain import plain_config
from vidda.config.schema import Config
from vidda.engine.checkpoint import save_checkpoint
from vidda.models.backbones import build_backbone
from vidda.models.build import build_segmentor
from vidda.models.import_mmseg import is_mmseg_segmentor, load_mmseg_segmentor
from vidda.models.weights import guess_backbone, load_backbone_file, read_checkpoint


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
    name = backbone or (cfg.model.backbone if cfg is not None else None) or guess_backbone(state)
    module = build_backbone(name)
    report = load_backbone_file(module, src)
    save_checkpoint(module.state_dict(), dst)
    return f"{dst}: {name} backbone from {src} ({report})"

