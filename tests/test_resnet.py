"""Tests for the ResNet-V1c backbone.

The parameter count 42,519,392 is ResNet-101-V1c's without fc; it is cross-checked by a formula
written here from the layer shapes. Feature sizes are derived with the convolution size formula
``o = (i + 2p - d(k - 1) - 1) // s + 1``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vidda.models import build_backbone
from vidda.models.backbones.resnet import Bottleneck, ResNetV1c, resnet101_v1c

BLOCKS_101 = (3, 4, 23, 3)


@pytest.fixture(scope="module")
def r101() -> ResNetV1c:
    torch.manual_seed(0)
    return resnet101_v1c()


def _bottleneck_params(inplanes: int, planes: int) -> int:
    """1×1 (inplanes→planes) + 3×3 (planes→planes) + 1×1 (planes→4·planes), no bias, 3 BNs."""
    out = 4 * planes
    return inplanes * planes + planes * planes * 9 + planes * out + 2 * (planes + planes + out)


def _formula_params(blocks=BLOCKS_101) -> int:
    """Parameters of ResNet-V1c from its layer shapes (BN: weight + bias)."""
    stem = 3 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 2 * (32 + 32 + 64)
    total, inplanes = stem, 64
    for i, n in enumerate(blocks):
        planes = 64 * 2**i
        out = 4 * planes
        downsample = inplanes * out + 2 * out  # 1×1 conv + BN on the first block
        total += _bottleneck_params(inplanes, planes) + downsample
        total += (n - 1) * _bottleneck_params(out, planes)
        inplanes = out
    return total


def _out_size(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def test_parameter_count(r101):
    n = sum(p.numel() for p in r101.parameters())
    assert n == 42_519_392 == _formula_params()
    # HRDA-DLV2 student = ResNet-101 + 2 DLV2 heads (segmentation and scale attention)
    assert n + 2 * 700_454 == 43_920_300


def test_registry_and_attributes():
    model = build_backbone("resnet101_v1c")
    assert isinstance(model, ResNetV1c) and model.depth == 101
    assert model.out_channels == (256, 512, 1024, 2048)
    assert model.out_strides == (4, 8, 8, 8)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == list(BLOCKS_101)


def test_state_dict_keys(r101):
    sd = r101.state_dict()
    present = [
        "stem.0.weight",
        "stem.1.weight",
        "stem.1.running_var",
        "stem.3.weight",
        "stem.4.bias",
        "stem.6.weight",
        "stem.7.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer1.0.bn3.weight",
        "layer1.0.downsample.0.weight",
        "layer3.0.downsample.0.weight",
        "layer3.0.downsample.1.running_mean",
        "layer3.22.conv3.weight",
        "layer4.2.bn2.bias",
    ]
    for key in present:
        assert key in sd, key
    absent = ["fc.weight", "stem.2.weight", "stem.9.weight", "layer1.1.downsample.0.weight"]
    absent += ["layer3.23.conv1.weight", "conv1.weight", "layer1.0.conv1.bias"]
    for key in absent:
        assert key not in sd, key
    assert not [k for k in sd if ".conv" in k and k.endswith(".bias")]
    assert not [k for k in sd if k.startswith("stem.") and k.split(".")[1] in {"2", "5", "8"}]
    assert sd["stem.0.weight"].shape == (32, 3, 3, 3)
    assert sd["stem.3.weight"].shape == (32, 32, 3, 3)
    assert sd["stem.6.weight"].shape == (64, 32, 3, 3)
    assert sd["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1)
    assert sd["layer4.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


def test_no_conv_bias(r101):
    convs = [m for m in r101.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 3 * sum(BLOCKS_101) + 4
    assert all(c.bias is None for c in convs)


def test_strides_pytorch_style(r101):
    assert r101.stem[0].stride == (2, 2) and r101.stem[3].stride == (1, 1)
    assert r101.maxpool.kernel_size == 3 and r101.maxpool.stride == 2 and r101.maxpool.padding == 1
    first = r101.layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)  # stride on the 3×3
    assert first.downsample[0].stride == (2, 2)
    for name in ("layer1", "layer3", "layer4"):
        block = getattr(r101, name)[0]
        assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)


def test_dilations_contracted(r101):
    def dil(layer):
        return [b.conv2.dilation[0] for b in layer]

    assert dil(r101.layer1) == [1] * 3
    assert dil(r101.layer2) == [1] * 4
    assert dil(r101.layer3) == [1] + [2] * 22  # first block: 2 // 2
    assert dil(r101.layer4) == [2, 4, 4]  # first block: 4 // 2
    for block in r101.modules():
        if isinstance(block, Bottleneck):
            assert block.conv2.padding == block.conv2.dilation
    plain = ResNetV1c(depth=50, contract_dilation=False)
    assert dil(plain.layer3)[0] == 2 and dil(plain.layer4)[0] == 4


def test_forward_sizes_65(r101):
    # stem conv: 65 → 33; two stride-1 3×3 convs keep 33; max-pool 3/2/1: 33 → 17 (layer1);
    # layer2's conv2 (3×3, stride 2, pad 1): 17 → 9; layers 3 and 4 keep 9 (output stride 8).
    s = _out_size(65, 3, s=2, p=1)
    s = _out_size(s, 3, s=2, p=1)
    l1 = s
    l2 = _out_size(l1, 3, s=2, p=1)
    l3 = _out_size(l2, 3, p=2, d=2)
    assert (l1, l2, l3) == (17, 9, 9)
    r101.eval()
    with torch.no_grad():
        outs = r101(torch.randn(1, 3, 65, 65))
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, l1, l1),
        (1, 512, l2, l2),
        (1, 1024, l3, l3),
        (1, 2048, l3, l3),
    ]
    r101.train()


def test_forward_backward_small(r101):
    r101.train()
    r101.zero_grad()
    before = r101.stem[1].running_mean.clone()
    outs = r101(torch.randn(1, 3, 33, 33, generator=torch.Generator().manual_seed(0)))
    assert [o.shape[-1] for o in outs] == [9, 5, 5, 5]  # ⌈33/4⌉, ⌈33/8⌉
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)
    loss.backward()
    for name, p in r101.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # BN runs in training mode: running statistics were updated
    assert not torch.equal(before, r101.stem[1].running_mean)
    assert int(r101.stem[1].num_batches_tracked) >= 1


def test_init():
    torch.manual_seed(0)
    model = ResNetV1c(depth=50)
    w = model.layer4[1].conv2.weight  # fan_out = 512·3·3, 2.4M samples
    assert abs(w.std().item() - math.sqrt(2 / (512 * 9))) < 0.01 * math.sqrt(2 / (512 * 9))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    zero = ResNetV1c(depth=50, zero_init_residual=True)
    assert torch.all(zero.layer2[0].bn3.weight == 0) and torch.all(zero.layer2[0].bn2.weight == 1)


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        ResNetV1c(depth=34)
