"""ACCEL (and consistent mixup) on small stand-in networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from standins import Head, Stride4

from vidda.models.losses import seg_loss
from vidda.models.segmentors.accel import ACCEL
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA
from vidda.models.segmentors.inputs import Pair
from vidda.uda.mix import class_mix_masks, mix, mix_flows

K = 5
H = W = 32


def up(z: torch.Tensor, size=(H, W)) -> torch.Tensor:
    return F.interpolate(z, size, mode="bilinear", align_corners=False)


def make_accel(**kw) -> ACCEL:
    torch.manual_seed(0)
    return ACCEL(EncoderDecoder(Stride4(), Head()), K, **kw).eval()


def make_hrda_accel(**kw) -> ACCEL:
    torch.manual_seed(0)
    hrda = HRDA(Stride4(), Head(), attention_head=Head(), hr_crop=(16, 16))
    return ACCEL(hrda, K, **kw).eval()


def pair(b: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(b, 3, H, W, generator=g)
    x_tk = torch.randn(b, 3, H, W, generator=g)
    flow = torch.randn(b, 2, H, W, generator=g) * 6  # many vectors leave the image
    return x_t, x_tk, flow


def shift_flow(b: int, u: float, v: float) -> torch.Tensor:
    flow = torch.zeros(b, 2, H, W)
    flow[:, 0], flow[:, 1] = u, v
    return flow


@torch.no_grad()
def set_fusion(model: ACCEL, a: torch.Tensor, b: torch.Tensor) -> None:
    """fusion weight := [A | B]."""
    model.fusion.weight.copy_(torch.cat([a, b], 1)[:, :, None, None])


def test_state_dict_and_fusion_initialisation():
    model = make_accel()
    keys = set(model.state_dict())
    assert "fusion.weight" in keys and all(k == "fusion.weight" or k.startswith("segmentor.")
                                           for k in keys)  # fmt: skip
    assert model.fusion.bias is None and model.fusion.weight.shape == (K, 2 * K, 1, 1)
    torch.testing.assert_close(model.fusion.weight[:, :, 0, 0],
                               torch.cat([torch.eye(K), torch.zeros(K, K)], 1))  # fmt: skip
    assert model.out_stride == 4


def test_fusion_starts_as_identity_even_where_the_warp_is_invalid():
    model = make_accel()
    x_t, x_tk, flow = pair()
    valid = torch.rand(2, H, W, generator=torch.Generator().manual_seed(3)) > 0.3
    out = model.forward_train(Pair(x_t, x_tk, flow, valid))
    assert out["logits"].shape == (2, K, H, W)
    torch.testing.assert_close(out["logits"], up(model.segmentor.logits(x_t)))
    torch.testing.assert_close(model.inference(Pair(x_t, x_tk, flow, valid)),
                               model.segmentor.inference(x_t))  # fmt: skip
    # HRDA: the fused map is frame t's own fused map upsampled; hr is frame t's own crop
    hmodel = make_hrda_accel()
    box = (8, 24, 0, 16)
    out = hmodel.forward_train(Pair(x_t, x_tk, flow, valid), box=box)
    ref = hmodel.segmentor.forward_train(x_t, box=box)
    torch.testing.assert_close(out["logits"], up(ref["logits"]))
    torch.testing.assert_close(out["lr"], up(ref["lr"]))
    torch.testing.assert_close(out["hr"], ref["hr"])
    assert out["box"] == box
    for a, b in zip(out["features"], ref["features"], strict=True):
        torch.testing.assert_close(a, b)


def test_gradients_reach_fusion_and_base_network_only_through_frame_t():
    model = make_accel().train()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.fusion.weight.add_(0.1 * torch.randn(model.fusion.weight.shape, generator=g))
    x_t, x_tk, flow = pair(seed=2)
    flow = flow / 6  # mostly valid
    x_t.requires_grad_(True)
    x_tk.requires_grad_(True)
    out = model.forward_train(Pair(x_t, x_tk, flow))
    label = torch.randint(0, K, (2, H, W), generator=g)
    sum(model.loss(out, label).values()).backward()
    grad = model.fusion.weight.grad[:, :, 0, 0]
    assert grad[:, :K].abs().sum() > 0 and grad[:, K:].abs().sum() > 0  # both halves learn
    for name, p in model.segmentor.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x_t.grad is not None and x_t.grad.abs().sum() > 0
    assert x_tk.grad is None  # the t−k branch ran without gradients


def test_constant_flow_shift_warps_the_previous_logits_by_hand():
    model = make_accel()
    set_fusion(model, torch.zeros(K, K), torch.eye(K))  # output = the warped half alone
    x_t, x_tk, _ = pair()
    flow = shift_flow(2, 1.0, -2.0)  # pixel (y, x) of frame t is (y − 2, x + 1) of frame t−k
    out = model.forward_train(Pair(x_t, x_tk, flow))["logits"]
    z_t, z_tk = up(model.segmentor.logits(x_t)), up(model.segmentor.logits(x_tk))
    expected = z_t.clone()  # invalid (first two rows, last column) → frame t's logits
    expected[:, :, 2:, :-1] = z_tk[:, :, :-2, 1:]
    torch.testing.assert_close(out, expected)
    # the other fills
    warped = make_accel(invalid_fill="zero").warp(z_tk, z_t, flow)
    assert warped[:, :, :2].abs().sum() == 0 and warped[..., -1].abs().sum() == 0
    warped = make_accel(compat_invalid_255=True).warp(z_tk, z_t, flow)
    assert (warped[:, :, :2] == 255).all() and (warped[..., -1] == 255).all()
    torch.testing.assert_close(warped[:, :, 2:, :-1], z_tk[:, :, :-2, 1:])
    # the original's warp: same shift above its bottom limit (int(0.7·32) = 22), frame t's
    # logits below it; zero flow is invalid there → everything falls back to frame t
    orig = make_accel(original_warp=True)
    warped = orig.warp(z_tk, z_t, shift_flow(2, 1.0, 0.0))
    torch.testing.assert_close(warped[:, :, :22, :-1], z_tk[:, :, :22, 1:])
    torch.testing.assert_close(warped[:, :, 22:], z_t[:, :, 22:])
    torch.testing.assert_close(orig.warp(z_tk, z_t, shift_flow(2, 0.0, 0.0)), z_t)


def test_inference_with_identical_frames_and_zero_flow_is_the_base_inference():
    model = make_accel()
    g = torch.Generator().manual_seed(7)
    a = torch.randn(K, K, generator=g)
    set_fusion(model, a, torch.eye(K) - a)  # A + B = I: identity whenever warped == current
    x_t, _, _ = pair()
    zero = torch.zeros(2, 2, H, W)
    torch.testing.assert_close(model.inference(Pair(x_t, x_t, zero)),
                               model.segmentor.inference(x_t))  # fmt: skip
    # HRDA base as well
    hmodel = make_hrda_accel()
    set_fusion(hmodel, a, torch.eye(K) - a)
    torch.testing.assert_close(hmodel.inference(Pair(x_t, x_t, zero)),
                               hmodel.segmentor.inference(x_t))  # fmt: skip


def test_compat_unwarped_fuses_the_unwarped_previous_logits():
    model = make_accel(compat_unwarped=True)
    g = torch.Generator().manual_seed(8)
    set_fusion(model, torch.randn(K, K, generator=g), torch.randn(K, K, generator=g))
    x_t, x_tk, flow = pair()
    z_t, z_tk = model.segmentor.inference(x_t), model.segmentor.inference(x_tk)
    torch.testing.assert_close(model.inference(Pair(x_t, x_tk, flow)), model.fuse(z_t, z_tk))
    model.compat_unwarped = False
    assert not torch.allclose(model.inference(Pair(x_t, x_tk, flow)), model.fuse(z_t, z_tk))


def test_predict_slide_equals_whole_when_one_window_covers_the_image():
    model = make_accel()
    g = torch.Generator().manual_seed(9)
    set_fusion(model, torch.randn(K, K, generator=g), torch.randn(K, K, generator=g))
    x_t, x_tk, flow = pair()
    flow = flow / 3
    valid = torch.rand(2, H, W, generator=g) > 0.2
    whole = model.predict(Pair(x_t, x_tk, flow, valid))
    assert whole.shape == (2, K, H, W)
    p = Pair(x_t, x_tk, flow, valid)
    torch.testing.assert_close(model.predict(p, "slide", (H, W), (16, 16)), whole)
    torch.testing.assert_close(model.predict(Pair(x_t, x_tk, flow), "slide", (64, 64), (32, 32)),
                               model.predict(Pair(x_t, x_tk, flow)))  # fmt: skip
    with pytest.raises(ValueError, match="slide"):
        model.predict(Pair(x_t, x_tk, flow), mode="slide")


def test_predict_slide_cuts_frames_and_flow_identically():
    model = make_accel()
    a = torch.randn(K, K, generator=torch.Generator().manual_seed(10))
    set_fusion(model, a, torch.eye(K) - a)
    x_t, _, _ = pair()
    zero = torch.zeros(2, 2, H, W)
    # identical frames + zero flow: every window fuses to the base's window logits
    torch.testing.assert_close(model.predict(Pair(x_t, x_t, zero, None), "slide", (16, 16), (8, 8)),
                               model.segmentor.predict(x_t, "slide", (16, 16), (8, 8)))  # fmt: skip


def test_compat_single_frame_eval_ignores_the_previous_frame():
    model = make_accel(compat_single_frame_eval=True)
    set_fusion(model, torch.zeros(K, K), torch.eye(K))
    x_t, x_tk, flow = pair()
    torch.testing.assert_close(model.predict(Pair(x_t, x_tk, flow)), model.segmentor.predict(x_t))


def test_loss_delegates_to_hrda_with_fused_and_hr_terms():
    model = make_hrda_accel()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model.fusion.weight.add_(0.1 * torch.randn(model.fusion.weight.shape, generator=g))
    x_t, x_tk, flow = pair()
    label = torch.randint(0, K, (2, H, W), generator=g)
    box = (0, 16, 16, 32)
    out = model.forward_train(Pair(x_t, x_tk, flow), box=box, generator=g)
    losses = model.loss(out, label)
    assert set(losses) == {"loss_seg", "loss_seg_hr"}
    torch.testing.assert_close(losses["loss_seg"], 0.9 * seg_loss(out["logits"], label))
    hr_own = model.segmentor.forward_train(x_t, box=box)["hr"]
    torch.testing.assert_close(losses["loss_seg_hr"],
                               0.1 * seg_loss(hr_own, label[:, 0:16, 16:32]))  # fmt: skip


def test_original_hr_fusion_stretches_and_fuses_the_crop_logits():
    model = make_hrda_accel(hr_fusion="original")
    x_t, x_tk, flow = pair()
    box = (0, 16, 16, 32)
    out = model.forward_train(Pair(x_t, x_tk, flow), box=box)
    assert out["hr"].shape == (2, K, H, W)
    torch.testing.assert_close(out["hr"], up(model.segmentor.forward_train(x_t, box=box)["hr"]))
    losses = model.loss(out, torch.randint(0, K, (2, H, W)))
    assert torch.isfinite(losses["loss_seg_hr"])


def test_consistent_mixup_one_mask_mixes_both_frames_and_the_flow():
    g = torch.Generator().manual_seed(12)
    b, t = 2, 2  # clip frames (t−k, t)
    src = torch.randn(b, t, 3, H, W, generator=g)
    trg = torch.randn(b, t, 3, H, W, generator=g)
    src_flow, trg_flow = torch.randn(b, 2, H, W, generator=g), torch.randn(b, 2, H, W, generator=g)
    src_valid, trg_valid = torch.ones(b, H, W, dtype=torch.bool), torch.zeros(b, H, W, dtype=bool)
    src_label = torch.randint(0, K, (b, H, W), generator=g)
    mask = class_mix_masks(src_label, np.random.default_rng(0))
    assert mask.any() and (~mask).any()

    clip = mix(mask, src, trg)
    flow, valid = mix_flows(mask, (src_flow, src_valid), (trg_flow, trg_valid))
    m = mask[:, None, None].expand_as(src)
    torch.testing.assert_close(clip[m], src[m])  # both frames: source where the mask is set
    torch.testing.assert_close(clip[~m], trg[~m])  # both frames: target elsewhere
    mf = mask[:, None].expand_as(src_flow)
    torch.testing.assert_close(flow[mf], src_flow[mf])
    torch.testing.assert_close(flow[~mf], trg_flow[~mf])
    assert torch.equal(valid, mask)

    model = make_accel().train()
    out = model.forward_train(Pair(clip[:, 1], clip[:, 0], flow, valid))
    label = mix(mask, src_label, torch.randint(0, K, (b, H, W), generator=g))
    loss = sum(model.loss(out, label).values())
    loss.backward()
    assert torch.isfinite(loss) and model.fusion.weight.grad is not None


def test_bad_shapes_and_options_are_rejected():
    model = make_accel()
    x_t, x_tk, flow = pair()
    with pytest.raises(ValueError, match="flow"):
        model.forward_train(Pair(x_t, x_tk, flow[:, :, :16]))
    with pytest.raises(ValueError, match="frames"):
        model.inference(Pair(x_t, x_tk[:1], flow))
    with pytest.raises(ValueError, match="invalid_fill"):
        make_accel(invalid_fill="nan")
    with pytest.raises(ValueError, match="hr_fusion"):
        make_accel(hr_fusion="aligned")
