"""Networks: backbones (MiT-b0…b5, ResNet-101 v1c), decode heads and segmentors."""

from vidda.models.backbones import build_backbone
from vidda.models.heads import build_head

__all__ = ["build_backbone", "build_head"]
