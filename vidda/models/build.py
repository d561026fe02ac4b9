"""Build a segmentor from ``ModelConfig``: backbone, head(s), segmentor, pretrained weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from vidda.config.load import ConfigError
from vidda.config.schema import CompatConfig, ModelConfig
from vidda.models.backbones import build_backbone
from vidda.models.heads import build_head
from vidda.models.segmentors.accel import ACCEL, INVALID_FILLS
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA

# HRDA's scale-attention head for each segmentation head (as in the original HRDA configs).
ATTENTION_HEADS = {"daformer": "daformer_conv1", "dlv2": "dlv2", "segformer": "segformer"}
SINGLE_FRAME = ("encoder_decoder", "hrda")
SEGMENTORS = (*SINGLE_FRAME, "accel")


def build_segmentor(
    cfg: ModelConfig, load_pretrained: bool = True, compat: CompatConfig | None = None
) -> nn.Module:
    """The segmentor ``cfg`` describes, with the ImageNet backbone weights when given.

    ``compat`` sets ACCEL's switches (``original_warp``, ``accel_*``); other segmentors ignore it.
    """
    if cfg.segmentor not in SEGMENTORS:
        raise ConfigError(
            f"model.segmentor: unknown segmentor {cfg.segmentor!r}; expected one of {SEGMENTORS}"
        )
    if cfg.segmentor == "accel":
        return _build_accel(cfg, load_pretrained, compat or CompatConfig())
    backbone = build_backbone(cfg.backbone, **cfg.backbone_kwargs)
    if load_pretrained and cfg.pretrained:
        load_backbone_weights(backbone, cfg.pretrained)

    def head(name: str, num_classes: int) -> nn.Module:
        return build_head(name, tuple(backbone.out_channels), num_classes,
                          in_strides=tuple(backbone.out_strides), **cfg.head_kwargs)  # fmt: skip

    decode = head(cfg.head, cfg.num_classes)
    if cfg.segmentor == "encoder_decoder":
        return EncoderDecoder(backbone, decode)
    kwargs = dict(cfg.segmentor_kwargs)
    classwise = kwargs.pop("attention_classwise", True)
    fixed = kwargs.pop("fixed_attention", None)
    if "hr_crop" in kwargs:
        kwargs["hr_crop"] = tuple(kwargs["hr_crop"])
    attention = None
    if fixed is None:
        attention = head(ATTENTION_HEADS[cfg.head], cfg.num_classes if classwise else 1)
    try:
        return HRDA(backbone, decode, attention, fixed_attention=fixed, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.segmentor_kwargs: {err}") from err


def _build_accel(cfg: ModelConfig, load_pretrained: bool, compat: CompatConfig) -> ACCEL:
    """ACCEL around the base segmentor ``model.accel.base`` (built from the rest of ``cfg``)."""
    if cfg.accel.base not in SINGLE_FRAME:
        raise ConfigError(f"model.accel.base: unknown base segmentor {cfg.accel.base!r}; "
                          f"expected one of {SINGLE_FRAME}")  # fmt: skip
    if cfg.accel.invalid_fill not in INVALID_FILLS:
        raise ConfigError(f"model.accel.invalid_fill: {cfg.accel.invalid_fill!r} is not one of "
                          f"{INVALID_FILLS}")  # fmt: skip
    base = build_segmentor(replace(cfg, segmentor=cfg.accel.base), load_pretrained)
    return ACCEL(
        base,
        cfg.num_classes,
        invalid_fill=cfg.accel.invalid_fill,
        hr_fusion="original" if compat.accel_hr_fusion else "none",
        original_warp=compat.original_warp,
        compat_invalid_255=compat.accel_invalid_255,
        compat_unwarped=compat.accel_unwarped_fusion,
        compat_single_frame_eval=compat.accel_single_frame_eval,
    )


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load an ImageNet backbone file the user supplies (official MiT, HF MiT, mmcv ResNet)."""
    from vidda.models.weights import load_backbone_file

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"model.pretrained: backbone weights not found: {file} (see the README for where the "
            "official ImageNet files come from)"
        )
    load_backbone_file(backbone, file)
