"""Every backbone × head × segmentor: shapes, no NaN, a finite gradient for every parameter."""

from __future__ import annotations

import pytest
import torch

from vidda.config.schema import ModelConfig
from vidda.models.backbones import backbone_names
from vidda.models.build import build_segmentor
from vidda.models.heads import head_names

HEADS = [h for h in head_names() if h != "daformer_conv1"]  # conv1 is HRDA's attention head


def slow(backbone: str, head: str) -> bool:
    """CI runs MiT-b0 with every head and ResNet-101 with its paper head (DeepLabV2); the other
    combinations reuse the same code with deeper networks (``pytest -m slow``)."""
    return (
        backbone not in ("mit_b0", "resnet101_v1c")
        or (backbone, head) == ("resnet101_v1c", "daformer")
        or (backbone, head) == ("resnet101_v1c", "segformer")
    )


def combos():
    for backbone in backbone_names():
        for head in HEADS:
            for segmentor in ("encoder_decoder", "hrda"):
                marks = [pytest.mark.slow] if slow(backbone, head) else []
                yield pytest.param(backbone, head, segmentor, marks=marks,
                                   id=f"{backbone}-{head}-{segmentor}")  # fmt: skip


@pytest.mark.parametrize("backbone,head,segmentor", list(combos()))
def test_forward_backward(backbone: str, head: str, segmentor: str):
    torch.manual_seed(0)
    kwargs = {"hr_crop": [32, 32]} if segmentor == "hrda" else {}
    head_kwargs = {"segformer": {"embed_dim": 64}, "daformer": {"embed_dims": 64, "channels": 64},
                   "dlv2": {}}[head]  # fmt: skip
    cfg = ModelConfig(segmentor=segmentor, backbone=backbone, head=head, num_classes=7,
                      head_kwargs=head_kwargs, segmentor_kwargs=kwargs)  # fmt: skip
    model = build_segmentor(cfg).train()
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x)
    stride = model.out_stride
    assert out["logits"].shape == (2, 7, 64 // stride, 64 // stride)
    label = torch.randint(0, 7, (2, 64, 64))
    loss = sum(model.loss(out, label).values())
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    model.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # HRDA slides its detail windows inside ``inference`` already
        pred = (
            model.predict(x)
            if segmentor == "hrda"
            else model.predict(x, "slide", (64, 64), (32, 32))
        )
    assert pred.shape == (1, 7, 96, 96) and torch.isfinite(pred).all()
