"""Tests for the decode heads (DAFormer, its conv1 variant, SegFormer, DeepLabV2) and their blocks.

Expected parameter counts are the original models' and are cross-checked by
formulas written here from the layer shapes; hand-computed outputs are derived in comments.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidda.models import build_head
from vidda.models.heads import head_names
from vidda.models.heads.common import ConvModule, resize
from vidda.models.heads.daformer import DAFormerHead, daformer_conv1
from vidda.models.heads.dlv2 import DLV2Head
from vidda.models.heads.segformer import SegFormerHead

MIT_B5 = (64, 128, 320, 512)  # MiT-b1…b5
MIT_B0 = (32, 64, 160, 256)
RESNET = (256, 512, 1024, 2048)
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _feats(channels, strides=(4, 8, 16, 32), size=32, batch=2, seed=0) -> list[torch.Tensor]:
    """Random backbone features for a ``size``×``size`` input: ``[B, C_i, size/s_i, size/s_i]``."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, size // s, size // s, generator=g)
        for c, s in zip(channels, strides, strict=True)
    ]


def _backward_and_check_grads(model: nn.Module, out: torch.Tensor) -> None:
    """Random-weighted sum as loss (a plain sum would give zero gradients through BN)."""
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------------------
# Formulas from the layer shapes (independent of the implementation).


def _bn(c: int) -> int:
    return 2 * c  # weight + bias


def _embed(in_channels, dim: int) -> int:
    return sum(c * dim + dim for c in in_channels)  # Linear with bias per level


def _daformer_formula(in_channels, k: int, e: int = 256, ch: int = 256, fuse: str = "sepaspp"):
    cat = len(in_channels) * e
    if fuse == "conv1":
        fuse_params = cat * ch + _bn(ch)
    else:
        branch0 = cat * ch + _bn(ch)  # 1×1, no bias
        sep = (cat * 1 * 3 * 3 + _bn(cat)) + (cat * ch + _bn(ch))  # depthwise + pointwise
        bottleneck = 4 * ch * ch * 3 * 3 + _bn(ch)  # regular 3×3 over 4 branches
        fuse_params = branch0 + 3 * sep + bottleneck
    return _embed(in_channels, e) + fuse_params + (ch * k + k)


def _segformer_formula(in_channels, k: int, e: int = 768) -> int:
    return _embed(in_channels, e) + (len(in_channels) * e * e + _bn(e)) + (e * k + k)


def _dlv2_formula(c_in: int, k: int, n_branches: int) -> int:
    return n_branches * (c_in * k * 3 * 3 + k)


# ---------------------------------------------------------------------------------------------
# Registry, shapes and gradients


def test_registry_lists_all_heads():
    assert head_names() == ["daformer", "daformer_conv1", "dlv2", "segformer"]


@pytest.mark.parametrize("name", ["daformer", "daformer_conv1", "segformer"])
@pytest.mark.parametrize("in_channels", [MIT_B5, MIT_B0], ids=["mit_b5", "mit_b0"])
def test_mit_heads_shape_and_gradients(name, in_channels):
    torch.manual_seed(0)
    head = build_head(name, in_channels=in_channels, num_classes=19)
    head.train()
    feats = _feats(in_channels)  # 32×32 input → 8, 4, 2, 1
    out = head(feats)
    assert out.shape == (2, 19, 8, 8)
    assert torch.isfinite(out).all()
    assert head.out_stride == 4
    _backward_and_check_grads(head, out)


def test_dlv2_shape_and_gradients():
    torch.manual_seed(0)
    head = build_head("dlv2", in_channels=RESNET, num_classes=19)
    feats = _feats(RESNET, strides=(4, 8, 8, 8), size=40, batch=2)  # 10, 5, 5, 5
    out = head(feats)
    assert out.shape == (2, 19, 5, 5)
    assert torch.isfinite(out).all()
    assert head.out_stride == 8
    _backward_and_check_grads(head, out)


def test_out_stride_follows_in_strides():
    assert DAFormerHead(MIT_B0, 19, in_strides=(2, 4, 8, 16)).out_stride == 2
    assert SegFormerHead(MIT_B0, 19, in_strides=(8, 16, 32, 64)).out_stride == 8
    assert DLV2Head(MIT_B0, 19, in_strides=(4, 8, 16, 32)).out_stride == 32
    assert DLV2Head(MIT_B0, 19, in_index=1, in_strides=(4, 8, 16, 32)).out_stride == 8


def test_conv1_attention_head_single_channel():
    head = daformer_conv1(in_channels=MIT_B0, num_classes=1)
    assert head(_feats(MIT_B0)).shape == (2, 1, 8, 8)


def test_wrong_features_are_rejected():
    head = DAFormerHead(MIT_B0, 19)
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        head(_feats(MIT_B0)[:3])
    with pytest.raises(ValueError, match="feature 1"):
        head(_feats((32, 63, 160, 256)))
    with pytest.raises(ValueError, match="fuse"):
        DAFormerHead(MIT_B0, 19, fuse="mlp")


# ---------------------------------------------------------------------------------------------
# Parameter counts


def test_daformer_parameter_count():
    head = DAFormerHead(MIT_B5, 19)
    # embed 263,168 + fuse 3,444,224 + conv_seg 4,883
    assert _n_params(head.embed_layers) == 263_168
    assert _n_params(head.fuse_layer) == 3_444_224
    assert _n_params(head.conv_seg) == 4_883
    assert _n_params(head) == 3_712_275 == _daformer_formula(MIT_B5, 19)
    assert _n_params(DAFormerHead(MIT_B0, 7)) == _daformer_formula(MIT_B0, 7)


def test_daformer_conv1_parameter_count():
    assert _n_params(daformer_conv1(in_channels=MIT_B5, num_classes=19)) == 530_707
    assert _daformer_formula(MIT_B5, 19, fuse="conv1") == 530_707
    head = daformer_conv1(in_channels=MIT_B0, num_classes=1)
    assert _n_params(head) == _daformer_formula(MIT_B0, 1, fuse="conv1")
    # HRDA-DAFormer head total (with HRDA's scale-attention head)
    assert _n_params(DAFormerHead(MIT_B5, 19)) + 530_707 == 4_242_982


def test_segformer_parameter_count():
    assert _n_params(SegFormerHead(MIT_B5, 19)) == _segformer_formula(MIT_B5, 19) == 3_164_947
    assert _n_params(SegFormerHead(MIT_B0, 19, embed_dim=256)) == _segformer_formula(
        MIT_B0, 19, e=256
    )


def test_dlv2_parameter_count():
    assert _n_params(DLV2Head(RESNET, 19)) == 700_454 == _dlv2_formula(2048, 19, 2)
    four = DLV2Head(RESNET, 19, dilations=(6, 12, 18, 24))
    assert _n_params(four) == _dlv2_formula(2048, 19, 4)


# ---------------------------------------------------------------------------------------------
# Key names


def _module_keys(prefix: str) -> set[str]:
    """Keys of a ConvModule with BN: conv weight (no bias) + BN parameters and buffers."""
    return {f"{prefix}.conv.weight"} | {f"{prefix}.bn.{k}" for k in BN_KEYS}


def test_daformer_state_dict_keys_exact():
    expected = {f"embed_layers.{i}.proj.{w}" for i in range(4) for w in ("weight", "bias")}
    expected |= _module_keys("fuse_layer.aspp_modules.0")
    for i in (1, 2, 3):
        expected |= _module_keys(f"fuse_layer.aspp_modules.{i}.depthwise_conv")
        expected |= _module_keys(f"fuse_layer.aspp_modules.{i}.pointwise_conv")
    expected |= _module_keys("fuse_layer.bottleneck")
    expected |= {"conv_seg.weight", "conv_seg.bias"}
    sd = DAFormerHead(MIT_B5, 19).state_dict()
    assert set(sd) == expected
    assert sd["embed_layers.2.proj.weight"].shape == (256, 320)  # a Linear weight [out, in]
    assert sd["fuse_layer.aspp_modules.1.depthwise_conv.conv.weight"].shape == (1024, 1, 3, 3)
    assert sd["fuse_layer.aspp_modules.3.pointwise_conv.conv.weight"].shape == (256, 1024, 1, 1)
    assert sd["fuse_layer.bottleneck.conv.weight"].shape == (256, 1024, 3, 3)
    assert sd["conv_seg.weight"].shape == (19, 256, 1, 1)


def test_daformer_aspp_dilations():
    aspp = DAFormerHead(MIT_B5, 19).fuse_layer
    assert aspp.aspp_modules[0].conv.kernel_size == (1, 1)
    for i, d in zip((1, 2, 3), (6, 12, 18), strict=True):
        dw = aspp.aspp_modules[i].depthwise_conv.conv
        assert dw.dilation == (d, d) and dw.padding == (d, d) and dw.groups == 1024
    assert aspp.bottleneck.conv.groups == 1 and aspp.bottleneck.conv.padding == (1, 1)


def test_conv1_state_dict_keys_exact():
    sd = daformer_conv1(in_channels=MIT_B5, num_classes=19).state_dict()
    expected = {f"embed_layers.{i}.proj.{w}" for i in range(4) for w in ("weight", "bias")}
    expected |= _module_keys("fuse_layer") | {"conv_seg.weight", "conv_seg.bias"}
    assert set(sd) == expected
    assert sd["fuse_layer.conv.weight"].shape == (256, 1024, 1, 1)


def test_segformer_state_dict_keys_exact():
    sd = SegFormerHead(MIT_B5, 19).state_dict()
    expected = {f"linear_c.{i}.proj.{w}" for i in range(4) for w in ("weight", "bias")}
    expected |= _module_keys("linear_fuse") | {"linear_pred.weight", "linear_pred.bias"}
    assert set(sd) == expected  # in particular: no unused conv_seg
    assert sd["linear_c.3.proj.weight"].shape == (768, 512)
    assert sd["linear_fuse.conv.weight"].shape == (768, 3072, 1, 1)


def test_dlv2_state_dict_keys_exact():
    sd = DLV2Head(RESNET, 19).state_dict()
    assert set(sd) == {f"aspp_modules.{i}.conv.{w}" for i in (0, 1) for w in ("weight", "bias")}
    assert sd["aspp_modules.1.conv.weight"].shape == (19, 2048, 3, 3)


@pytest.mark.parametrize("make", [DAFormerHead, daformer_conv1, SegFormerHead])
def test_no_conv_bias_before_bn(make):
    head = make(in_channels=MIT_B0, num_classes=19)
    modules = [m for m in head.modules() if isinstance(m, ConvModule)]
    assert modules
    for m in modules:
        assert m.bn is not None and m.conv.bias is None


# ---------------------------------------------------------------------------------------------
# Semantics


def test_dlv2_output_is_sum_of_branches_by_hand():
    # 2-channel all-ones 5×5 input; branch 0 (dilation 1): weights 1, bias 0.5; branch 1
    # (dilation 6): weights 2, bias -1.  With zero padding a 3×3 tap lands inside the image
    # along one axis n(i) times: dilation 1 → n = [2, 3, 3, 3, 2]; dilation 6 → only the centre
    # tap, n = 1.  So out[y, x] = (2·1·n(y)·n(x) + 0.5) + (2·2·1·1 - 1).
    head = DLV2Head((1, 1, 1, 2), num_classes=1, dilations=(1, 6))
    with torch.no_grad():
        head.aspp_modules[0].conv.weight.fill_(1.0)
        head.aspp_modules[0].conv.bias.fill_(0.5)
        head.aspp_modules[1].conv.weight.fill_(2.0)
        head.aspp_modules[1].conv.bias.fill_(-1.0)
    feats = [torch.zeros(1, 1, 5, 5)] * 3 + [torch.ones(1, 2, 5, 5)]
    out = head(feats)[0, 0]
    n = torch.tensor([2.0, 3.0, 3.0, 3.0, 2.0])
    expected = 2 * n[:, None] * n[None, :] + 0.5 + 3.0
    assert out.shape == (5, 5)
    torch.testing.assert_close(out, expected)
    assert out[0, 0].item() == pytest.approx(11.5) and out[2, 2].item() == pytest.approx(21.5)


def test_dlv2_dilation_semantics():
    # Cross-correlation with dilation 6, padding 6: out[y, x] = Σ w[a, b]·in[y+6(a-1), x+6(b-1)].
    # A unit impulse at (6, 6) of a 13×13 map therefore shows w[2, 2] at (0, 0), w[1, 1] at (6, 6),
    # w[0, 0] at (12, 12), w[0, 2] at (12, 0); every other position is zero.
    head = DLV2Head((1,), num_classes=1, dilations=(6,))
    with torch.no_grad():
        head.aspp_modules[0].conv.weight.copy_(torch.arange(1.0, 10.0).view(1, 1, 3, 3))
    x = torch.zeros(1, 1, 13, 13)
    x[0, 0, 6, 6] = 1.0
    out = head([x])[0, 0]
    assert out.shape == (13, 13)
    assert int((out != 0).sum()) == 9
    assert out[0, 0] == 9 and out[6, 6] == 5 and out[12, 12] == 1 and out[12, 0] == 3
    assert out[0, 6] == 8 and out[6, 0] == 6


def test_daformer_features_match_token_reference():
    # Reference path written from the spec: flatten to tokens, Linear, reshape, bilinear resize
    # to level 0, concat in level order [0..3], then the fuse layer.
    torch.manual_seed(0)
    head = daformer_conv1(in_channels=MIT_B0, num_classes=19).eval()
    feats = _feats(MIT_B0, batch=1)
    embedded = []
    for f, layer in zip(feats, head.embed_layers, strict=True):
        b, c, h, w = f.shape
        tokens = f.flatten(2).transpose(1, 2) @ layer.proj.weight.T + layer.proj.bias
        emb = tokens.transpose(1, 2).reshape(b, -1, h, w)
        embedded.append(F.interpolate(emb, size=(8, 8), mode="bilinear", align_corners=False))
    fused = head.fuse_layer(torch.cat(embedded, dim=1))
    torch.testing.assert_close(head.features(feats), fused)
    torch.testing.assert_close(head(feats), head.conv_seg(fused))


@pytest.mark.parametrize("make", [DAFormerHead, SegFormerHead])
def test_channels_last_gives_same_output(make):
    torch.manual_seed(0)
    head = make(in_channels=MIT_B0, num_classes=19).eval()
    feats = _feats(MIT_B0, batch=1)
    ref = head(feats)
    out = head([f.contiguous(memory_format=torch.channels_last) for f in feats])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_resize_is_bilinear_half_pixel():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert resize(x, (2, 2)) is x
    up = resize(x, (4, 4))
    # align_corners=False: output pixel centres at input coords -0.25, 0.25, 0.75, 1.25 (clamped)
    torch.testing.assert_close(up[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(up[0, 0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_dropout_only_in_training():
    head = DAFormerHead(MIT_B0, 19)
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1
    head.eval()
    feats = _feats(MIT_B0, batch=1)
    torch.testing.assert_close(head(feats), head(feats))
    assert isinstance(DAFormerHead(MIT_B0, 19, dropout_ratio=0).dropout, nn.Identity)


# ---------------------------------------------------------------------------------------------
# Init


def _std_close(t: torch.Tensor, std: float, rel: float = 0.1) -> bool:
    return abs(t.float().std().item() - std) < rel * std and abs(t.mean().item()) < 0.1 * std


def test_conv_seg_init():
    for head in (DAFormerHead(MIT_B5, 19), daformer_conv1(in_channels=MIT_B5, num_classes=19)):
        assert _std_close(head.conv_seg.weight, 0.01)
        assert torch.all(head.conv_seg.bias == 0)


def test_dlv2_init():
    head = DLV2Head(RESNET, 19)
    for branch in head.aspp_modules:
        assert _std_close(branch.conv.weight, 0.01, rel=0.02)  # 350k samples
        assert torch.all(branch.conv.bias == 0)


def test_conv_module_init():
    head = DAFormerHead(MIT_B5, 19)
    bottleneck = head.fuse_layer.bottleneck.conv.weight  # fan_out = 256·3·3
    assert _std_close(bottleneck, math.sqrt(2 / (256 * 9)), rel=0.02)
    dw = head.fuse_layer.aspp_modules[2].depthwise_conv.conv.weight  # fan_out = 1024·3·3
    assert _std_close(dw, math.sqrt(2 / (1024 * 9)), rel=0.05)
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 3 * 2 + 1
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert bn.eps == 1e-5 and bn.momentum == 0.1


def test_conv_module_bias_only_without_norm():
    assert ConvModule(4, 8, 3).conv.bias is None
    plain = ConvModule(4, 8, 3, norm=False, act=False)
    assert plain.conv.bias is not None and torch.all(plain.conv.bias == 0)
    assert plain.bn is None and plain.activate is None
    assert [n for n, _ in ConvModule(4, 8, 1).named_children()] == ["conv", "bn", "activate"]
