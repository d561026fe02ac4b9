"""Build a segmentor from ``ModelConfig``: backbone, head(s), segmentor, pretrained weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from torch import nn

from vidda.config.load import ConfigError
from vidda.config.registry import lookup
from vidda.config.schema import CompatConfig, ModelConfig
from vidda.models.backbones import build_backbone
from vidda.models.heads import build_head
from vidda.models.segmentors.accel import ACCEL, INVALID_FILLS
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA

# HRDA's scale-attention head for each segmentation head (as in the original HRDA configs).
ATTENTION_HEADS = {"daformer": "daformer_conv1", "dlv2": "dlv2", "segformer": "segformer"}
SINGLE_FRAME = ("encoder_decoder", "hrda")  # the segmentors ACCEL can wrap


def build_segmentor(
    cfg: ModelConfig, load_pretrained: bool = True, compat: CompatConfig | None = None
) -> nn.Module:
    """The segmentor ``cfg`` describes, with the ImageNet backbone weights when given.

    ``compat`` sets ACCEL's switches (``original_warp``, ``accel_*``); other segmentors ignore it.
    """
    build = lookup(BUILDERS, cfg.segmentor, "model.segmentor")
    return build(cfg, load_pretrained, compat or CompatConfig())


HeadFn = Callable[[str, int], nn.Module]
"""``head(name, num_classes)``: a head on the backbone's features, with ``model.head_kwargs``."""


def _backbone_and_heads(cfg: ModelConfig, load_pretrained: bool) -> tuple[nn.Module, HeadFn]:
    """The backbone (with its pretrained weights when asked) and a builder of heads on it."""
    backbone = build_backbone(cfg.backbone, **cfg.backbone_kwargs)
    if load_pretrained and cfg.pretrained:
        load_backbone_weights(backbone, cfg.pretrained)

    def head(name: str, num_classes: int) -> nn.Module:
        return build_head(name, tuple(backbone.out_channels), num_classes,
                          in_strides=tuple(backbone.out_strides), **cfg.head_kwargs)  # fmt: skip

    return backbone, head


def _build_encoder_decoder(
    cfg: ModelConfig, load_pretrained: bool, compat: CompatConfig
) -> EncoderDecoder:
    """Backbone + decode head at one scale."""
    backbone, head = _backbone_and_heads(cfg, load_pretrained)
    return EncoderDecoder(backbone, head(cfg.head, cfg.num_classes))


def _build_hrda(cfg: ModelConfig, load_pretrained: bool, compat: CompatConfig) -> HRDA:
    """HRDA: the decode head and (unless ``fixed_attention``) its scale-attention head."""
    backbone, head = _backbone_and_heads(cfg, load_pretrained)
    decode = head(cfg.head, cfg.num_classes)
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
    single_frame = {name: BUILDERS[name] for name in SINGLE_FRAME}
    build_base = lookup(single_frame, cfg.accel.base, "model.accel.base", "base segmentor")
    if cfg.accel.invalid_fill not in INVALID_FILLS:
        raise ConfigError(f"model.accel.invalid_fill: {cfg.accel.invalid_fill!r} is not one of "
                          f"{INVALID_FILLS}")  # fmt: skip
    base = build_base(replace(cfg, segmentor=cfg.accel.base), load_pretrained, CompatConfig())
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


SegmentorBuilder = Callable[[ModelConfig, bool, CompatConfig], nn.Module]

BUILDERS: dict[str, SegmentorBuilder] = {
    "encoder_decoder": _build_encoder_decoder,
    "hrda": _build_hrda,
    "accel": _build_accel,
}
"""``model.segmentor`` name → ``build(cfg, load_pretrained, compat)``."""


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
