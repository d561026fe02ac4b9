"""Parameter groups and the learning-rate schedule against the original's rules, by hand."""

from __future__ import annotations

import pytest
import torch

from vidda.config.schema import ModelConfig, OptimConfig
from vidda.engine.optim import build_optimizer, param_groups
from vidda.models.build import build_segmentor
from vidda.models.segmentors.accel import ACCEL
from vidda.schedule import lr_factor


def groups_by_param(model):
    out = {}
    for g in param_groups(model, OptimConfig()):
        for p in g["params"]:
            out[id(p)] = (round(g["lr"], 12), g["weight_decay"])
    return {name: out[id(p)] for name, p in model.named_parameters()}


def test_decoder_x10_and_no_decay_on_mit_norms():
    model = build_segmentor(ModelConfig(segmentor="hrda", backbone="mit_b0", head="daformer"))
    g = groups_by_param(model)
    assert g["decode_head.conv_seg.weight"] == (6e-4, 0.01)
    assert g["decode_head.fuse_layer.bottleneck.bn.weight"] == (6e-4, 0.01)  # "head" wins
    assert g["scale_attention.conv_seg.weight"] == (6e-4, 0.01)
    assert g["backbone.block1.0.norm1.weight"] == (6e-5, 0.0)
    assert g["backbone.patch_embed1.norm.bias"] == (6e-5, 0.0)
    assert g["backbone.block1.0.attn.norm.weight"] == (6e-5, 0.0)
    assert g["backbone.block1.0.attn.q.weight"] == (6e-5, 0.01)
    wrapped = groups_by_param(ACCEL(model, num_classes=19))
    assert wrapped["segmentor.decode_head.conv_seg.weight"] == (6e-4, 0.01)
    assert wrapped["fusion.weight"] == (6e-5, 0.01)  # the fusion layer: base rate


def test_resnet_batchnorm_keeps_weight_decay():
    model = build_segmentor(ModelConfig(backbone="resnet101_v1c", head="dlv2"))
    g = groups_by_param(model)
    assert g["backbone.stem.1.weight"] == (6e-5, 0.01)
    assert g["backbone.layer1.0.bn1.weight"] == (6e-5, 0.01)
    assert g["decode_head.aspp_modules.0.conv.weight"] == (6e-4, 0.01)
    opt = build_optimizer(model, OptimConfig())
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)


def test_poly_with_warmup_multiplies_the_decayed_value():
    T, W = 40000, 1500
    assert lr_factor(0, T, 1.0, W, 1e-6) == pytest.approx(1e-6)
    assert lr_factor(750, T, 1.0, W, 1e-6) == pytest.approx((1 - 750 / T) * (1 - 0.5 * (1 - 1e-6)))
    assert lr_factor(1500, T, 1.0, W, 1e-6) == pytest.approx(1 - 1500 / T)
    assert lr_factor(39999, T, 1.0, W, 1e-6) == pytest.approx(1 / T)
    assert lr_factor(20000, T, 0.9) == pytest.approx(0.5**0.9)


def test_set_lr_scales_the_initial_lr_not_the_current_one():
    from vidda.schedule import set_lr

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.2, "initial_lr": 0.2}], lr=0.2)
    set_lr(opt, 0.5)
    set_lr(opt, 0.5)  # the same factor twice: still 0.1, not 0.05
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
