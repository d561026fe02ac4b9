"""Backbones by name. Each returns its stage features as a list of ``[B, C_i, H_i, W_i]`` tensors
and exposes ``out_channels`` (tuple of C_i) and ``out_strides`` (tuple of input/feature ratios).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from torch import nn

from vidda.config.registry import lookup
from vidda.errors import UserError

# name → "module:function"; modules are imported on first use.
_BACKBONES: dict[str, str] = {
    **{f"mit_b{i}": f"vidda.models.backbones.mit:mit_b{i}" for i in range(6)},
    "resnet101_v1c": "vidda.models.backbones.resnet:resnet101_v1c",
}


class UnknownModelError(UserError, ValueError):
    """A backbone, head or segmentor name that vidda does not have."""


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build backbone ``name`` (``mit_b0`` … ``mit_b5``, ``resnet101_v1c``) with ``kwargs``."""
    return _resolve(_BACKBONES, name, "backbone")(**kwargs)


def _resolve(table: dict[str, str], name: str, what: str) -> Callable[..., nn.Module]:
    """The constructor ``table`` lists for ``name`` (its module imported now)."""
    module, func = lookup(table, name, "", what, UnknownModelError).split(":")
    return getattr(import_module(module), func)
