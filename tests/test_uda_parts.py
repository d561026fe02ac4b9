"""Tests for the small UDA building blocks in ``vidda.uda``: normalisation, EMA teacher,
pseudo-labels, ClassMix, strong augmentation, MIC block masks and the ImageNet feature distance.

References are independent of the code under test: hand-computed values (derived in comments),
``colorsys`` for RGB↔HSV, OpenCV for the Gaussian blur, numpy for the ClassMix draws and a one-hot
re-implementation for the label down-scaling.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidda.config.schema import FDConfig
from vidda.models.backbones.mit import DropPath
from vidda.models.normalize import MEAN, STD, denormalize, normalize, renormalize
from vidda.uda.augment import (
    StrongAugParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_kernel_size,
    color_jitter,
    draw_jitter,
    gaussian_blur,
    gaussian_kernel1d,
    hsv_to_rgb,
    rgb_to_hsv,
    strong_augment,
)
from vidda.uda.fd import (
    FD_CLASSES_GTA_SYNTHIA,
    downscale_label_ratio,
    feature_distance,
)
from vidda.uda.mic import block_mask, mask_images
from vidda.uda.mix import class_mix_masks, draw_mix_classes, mix, mix_flows
from vidda.uda.pseudo import pseudo_label
from vidda.uda.teacher import EMATeacher, ema_momentum, pseudo_mode


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- normalisation


def test_normalize_values_and_round_trip():
    img = torch.tensor([124, 116, 104], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    x = normalize(img)
    expected = [(124 - 123.675) / 58.395, (116 - 116.28) / 57.12, (104 - 103.53) / 57.375]
    assert x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected), atol=1e-6)
    clip = torch.randint(0, 256, (2, 3, 3, 4, 5), dtype=torch.uint8, generator=_gen())
    back = denormalize(normalize(clip))
    assert torch.allclose(back, clip.float() / 255, atol=1e-6)
    assert torch.allclose(renormalize(back), normalize(clip), atol=1e-5)
    assert MEAN == (123.675, 116.28, 103.53) and STD == (58.395, 57.12, 57.375)
    with pytest.raises(ValueError):
        normalize(torch.zeros(1, 4, 2, 2))


# ----------------------------------------------------------------------------- EMA teacher


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.Linear(3, 2))


def _set_params(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_ema_momentum_warm_start():
    assert ema_momentum(0, 0.999) == 0.0
    assert ema_momentum(1, 0.999) == 0.5
    assert ema_momentum(9, 0.999) == pytest.approx(0.9)
    assert ema_momentum(998, 0.999) == pytest.approx(1 - 1 / 999)
    assert ema_momentum(999, 0.999) == 0.999
    assert ema_momentum(5000, 0.999) == 0.999
    assert ema_momentum(5000, 0.99) == 0.99


def test_ema_update_matches_formula_and_leaves_buffers():
    student = _tiny_net()
    teacher = EMATeacher(student, alpha=0.999)
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert all(p.requires_grad for p in student.parameters())

    _set_params(teacher.model, -7.0)
    _set_params(student, 3.0)
    assert teacher.update(student, 0) == 0.0  # step 0: plain copy
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in teacher.model.parameters())

    # Hand-computed: θ_t = a·θ_t + (1 − a)·θ_s
    for step, a, t_before, s in [
        (1, 0.5, 3.0, 5.0),
        (9, 0.9, 4.0, 14.0),
        (5000, 0.999, 9.0, 1009.0),
    ]:
        _set_params(teacher.model, t_before)
        _set_params(student, s)
        assert teacher.update(student, step) == pytest.approx(a)
        want = a * t_before + (1 - a) * s  # 4.0, 5.0, 10.0
        for p in teacher.model.parameters():
            assert torch.allclose(p, torch.full_like(p, want), rtol=1e-6), (step, p.flatten()[0])

    # Buffers (BN running stats) are never copied or averaged.
    t_bn, s_bn = teacher.model[1], student[1]
    before = {k: v.clone() for k, v in t_bn.named_buffers()}
    s_bn.running_mean.fill_(42.0)
    s_bn.running_var.fill_(9.0)
    s_bn.num_batches_tracked.fill_(17)
    teacher.update(student, 0)
    teacher.update(student, 3)
    for k, v in t_bn.named_buffers():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())


def test_ema_update_tracks_a_real_student_and_rejects_mismatch():
    torch.manual_seed(0)
    student = _tiny_net()
    teacher = EMATeacher(student, alpha=0.99)
    s0 = [p.detach().clone() for p in student.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student, 1)  # a = 0.5 → halfway between the old and new student weights
    for p_t, p_old in zip(teacher.model.parameters(), s0, strict=True):
        assert torch.allclose(p_t, p_old + 0.5, atol=1e-6)
    with pytest.raises(ValueError):
        teacher.update(nn.Sequential(nn.Linear(2, 3)), 1)


def _bn_dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout2d(0.5), DropPath(0.5), nn.Conv2d(4, 2, 1)
    )


def test_pseudo_mode_disables_dropout_keeps_batch_norm_in_train_mode():
    net = _bn_dropout_net()
    net.eval()  # pseudo_mode must not rely on the caller's mode
    x = torch.randn(4, 3, 5, 5, generator=_gen(1))
    with torch.no_grad(), pseudo_mode(net):
        assert net[1].training and not net[2].training and not net[3].training
        mean_before = net[1].running_mean.clone()
        y1, y2 = net(x), net(x)
        assert torch.equal(y1, y2)  # no dropout / drop-path randomness
        assert not torch.equal(net[1].running_mean, mean_before)  # BN updated its stats
        # Batch statistics: sample 0's output depends on the rest of the batch.
        x_other = x.clone()
        x_other[1:] = x_other[1:] * 3 + 2
        assert not torch.allclose(net(x_other)[0], y1[0])
    assert not any(m.training for m in net.modules())  # previous flags restored

    # Without pseudo_mode, the train-mode net is stochastic (so the test above can fail).
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))


def test_teacher_predict_uses_pseudo_mode_without_graph():
    teacher = EMATeacher(_bn_dropout_net())
    x = torch.randn(3, 3, 4, 4, generator=_gen(2))
    y1, y2 = teacher.predict(x), teacher.predict(x)
    assert torch.equal(y1, y2) and not y1.requires_grad
    assert teacher.model.training  # left in train mode, like the original's teacher


# ----------------------------------------------------------------------------- pseudo-labels


def test_pseudo_label_quality_is_one_batch_scalar_with_margins():
    # Two-class logits per pixel (B=2, H=1, W=2). Max probabilities by hand:
    #   image 0: [0, 4] → σ(4) = 0.98201 ≥ 0.968 (label 1);  [5, 0] → σ(5) = 0.99331 ≥ τ (label 0)
    #   image 1: [0, 3] → σ(3) = 0.95257 < τ (label 1);  [0, .1] → σ(0.1) = 0.52498 < τ (label 1)
    # q = 2 / 4 = 0.5 for the whole batch (a per-image q would give 1 and 0).
    logits = torch.tensor([[[0.0, 5.0], [4.0, 0.0]], [[0.0, 0.0], [3.0, 0.1]]]).view(2, 2, 1, 2)
    label, weight, conf = pseudo_label(logits)
    assert label.dtype == torch.int64 and label.tolist() == [[[1, 0]], [[1, 1]]]
    assert torch.allclose(conf.flatten(), torch.sigmoid(torch.tensor([4.0, 5.0, 3.0, 0.1])))
    assert torch.allclose(weight, torch.full((2, 1, 2), 0.5))

    # The margin mask zeroes weights but q still counts the margin pixels: the confident pixel 0
    # of image 0 is in the margin and q stays 2/4 (not 1/3).
    valid = torch.tensor([[[False, True]], [[True, True]]])
    _, w_margin, _ = pseudo_label(logits, valid_mask=valid)
    assert w_margin.tolist() == [[[0.0, 0.5]], [[0.5, 0.5]]]

    # Another threshold: only σ(5) passes → q = 1/4.
    _, w_hi, _ = pseudo_label(logits, threshold=0.99)
    assert torch.allclose(w_hi, torch.full((2, 1, 2), 0.25))


def test_pseudo_label_v1_rows_and_never_ignore():
    logits = torch.randn(2, 19, 6, 4, generator=_gen(3)) * 10
    label, weight, _ = pseudo_label(logits, ignore_top=1, ignore_bottom=2)
    assert not (label == 255).any() and int(label.max()) < 19
    assert (weight[:, :1] == 0).all() and (weight[:, -2:] == 0).all()
    assert torch.allclose(weight[:, 1:4], weight[0, 1, 0].expand(2, 3, 4))
    with pytest.raises(ValueError):
        pseudo_label(logits, valid_mask=torch.ones(2, 6, 4), ignore_top=1)


# ----------------------------------------------------------------------------- ClassMix


def _source_labels() -> torch.Tensor:
    a = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255], [0, 1, 2, 255], [0, 0, 0, 0]])
    b = torch.tensor([[3, 3, 4, 4], [3, 3, 4, 4], [11, 11, 255, 255], [4, 4, 4, 4]])
    return torch.stack([a, b])  # classes of the whole batch: 0 1 2 3 4 11 255 → n = 7


def test_class_mix_draws_half_of_the_batch_classes_incl_ignore():
    labels = _source_labels()
    drawn = draw_mix_classes(labels, np.random.default_rng(5))
    # Independent reference: numpy's choice over the sorted unique values, ceil(7/2) = 4 per image.
    rng = np.random.default_rng(5)
    pool = np.array([0, 1, 2, 3, 4, 11, 255])
    for d in drawn:
        want = rng.choice(pool, 4, replace=False)
        assert d.tolist() == want.tolist()
        assert len(set(d.tolist())) == 4
    # Even n: 4 classes → 2 drawn.
    even = torch.tensor([[[1, 2], [3, 255]]])
    assert [len(d) for d in draw_mix_classes(even, np.random.default_rng(0))] == [2]
    # Over many draws, 255 is drawn about half the time (it is a candidate like any class).
    rng = np.random.default_rng(0)
    hits = sum(255 in d.tolist() for _ in range(400) for d in draw_mix_classes(labels, rng))
    assert 0.45 < hits / 800 < 0.69  # expected 4/7 = 0.571


def test_class_mix_mask_pastes_exactly_the_drawn_classes():
    labels = _source_labels()
    masks = class_mix_masks(labels, np.random.default_rng(11))
    drawn = draw_mix_classes(labels, np.random.default_rng(11))
    assert masks.shape == labels.shape and masks.dtype == torch.bool
    for i in range(2):
        for y in range(4):
            for x in range(4):
                want = int(labels[i, y, x]) in set(drawn[i].tolist())
                assert bool(masks[i, y, x]) == want, (i, y, x)

    # Mixing: source where mask, target elsewhere; source 255 pixels stay 255.
    pl = torch.full_like(labels, 7)
    y_m = mix(masks, labels, pl)
    assert torch.equal(y_m[masks], labels[masks]) and (y_m[~masks] == 7).all()
    w_m = mix(masks, 1.0, torch.full(labels.shape, 0.25))
    assert (w_m[masks] == 1.0).all() and (w_m[~masks] == 0.25).all()
    if (labels[masks] == 255).any():
        assert (y_m[masks & (labels == 255)] == 255).all()


def test_mix_images_clips_and_flows_share_one_mask():
    g = _gen(4)
    b, t, h, w = 2, 3, 4, 4
    mask = class_mix_masks(_source_labels(), np.random.default_rng(2))
    assert mask.any() and not mask.all()
    m = mask[:, None]  # [B, 1, H, W]
    img_s, img_t = torch.randn(b, 3, h, w, generator=g), torch.randn(b, 3, h, w, generator=g)
    out = mix(mask, img_s, img_t)
    assert torch.equal(out, m * img_s + (~m) * img_t)

    clip_s, clip_t = (
        torch.randn(b, t, 3, h, w, generator=g),
        torch.randn(b, t, 3, h, w, generator=g),
    )
    out = mix(mask, clip_s, clip_t)
    for f in range(t):  # every frame uses the key frame's mask
        assert torch.equal(out[:, f], mix(mask, clip_s[:, f], clip_t[:, f]))

    flow_s, flow_t = (
        torch.randn(b, t, 2, h, w, generator=g),
        torch.randn(b, t, 2, h, w, generator=g),
    )
    valid_s = torch.ones(b, t, h, w, dtype=torch.bool)
    valid_t = torch.zeros(b, t, h, w, dtype=torch.bool)
    flow, valid = mix_flows(mask, (flow_s, valid_s), (flow_t, valid_t))
    assert valid.dtype == torch.bool
    for f in range(t):
        assert torch.equal(valid[:, f], mask)  # source validity exactly on the mask
        for c in range(2):  # u and v both taken from the source where mask = 1
            assert torch.equal(flow[:, f, c][mask], flow_s[:, f, c][mask])
            assert torch.equal(flow[:, f, c][~mask], flow_t[:, f, c][~mask])
    with pytest.raises(ValueError):
        mix(mask, img_s, img_t[:, :, :3])


# ----------------------------------------------------------------------------- colour jitter


def _rgb(seed: int, n: int = 2, h: int = 3, w: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=_gen(seed))


def _pixels(x: torch.Tensor):
    """Yield (n, y, x, (r, g, b)) for every pixel of [N, 3, H, W]."""
    n, _, h, w = x.shape
    for i in range(n):
        for yy in range(h):
            for xx in range(w):
                yield i, yy, xx, tuple(float(v) for v in x[i, :, yy, xx])


def test_rgb_hsv_matches_colorsys_incl_ties_and_grey():
    x = _rgb(0)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey
    x[0, :, 0, 1] = torch.tensor([0.7, 0.7, 0.2])  # R = G max
    x[0, :, 0, 2] = torch.tensor([0.1, 0.6, 0.6])  # G = B max
    x[0, :, 0, 3] = torch.tensor([0.0, 0.0, 0.0])  # black
    hsv = rgb_to_hsv(x)
    for i, yy, xx, rgb in _pixels(x):
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        got = hsv[i, :, yy, xx]
        assert float(got[0]) == pytest.approx(2 * math.pi * h, abs=1e-5)
        assert float(got[1]) == pytest.approx(s, abs=1e-5)  # eps 1e-6 in S
        assert float(got[2]) == pytest.approx(v, abs=1e-7)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-5)
    # Hue outside [0, 2π) is wrapped by a positive modulo.
    shifted = hsv.clone()
    shifted[:, 0] -= 4 * math.pi
    assert torch.allclose(hsv_to_rgb(shifted), x, atol=1e-5)


def test_brightness_is_additive_and_contrast_multiplicative():
    x = torch.tensor([0.1, 0.5, 0.95]).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    f = torch.tensor([1.2, 0.8])
    out = adjust_brightness(x, f)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.3, 0.7, 1.0]))  # +0.2, clamped
    assert torch.allclose(out[1, :, 0, 0], torch.tensor([0.0, 0.3, 0.75]))  # −0.2, clamped
    out = adjust_contrast(x, f)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.12, 0.6, 1.0]))  # ×1.2, no centring
    assert torch.allclose(out[1, :, 0, 0], torch.tensor([0.08, 0.4, 0.76]))


def test_saturation_and_hue_against_colorsys():
    x = _rgb(1)
    sat = torch.tensor([1.19, 0.83])
    hue = torch.tensor([0.17, -0.2])  # turns
    out_s, out_h = adjust_saturation(x, sat), adjust_hue(x, hue)
    for i, yy, xx, rgb in _pixels(x):
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        want_s = colorsys.hsv_to_rgb(h, min(s * float(sat[i]), 1.0), v)
        want_h = colorsys.hsv_to_rgb((h + float(hue[i])) % 1.0, s, v)
        assert torch.allclose(out_s[i, :, yy, xx], torch.tensor(want_s), atol=2e-5)
        assert torch.allclose(out_h[i, :, yy, xx], torch.tensor(want_h), atol=2e-5)


def test_color_jitter_applies_ops_in_drawn_order():
    draw = draw_jitter(2, 0.2, _gen(7))
    x = _rgb(2)
    ops = {
        0: lambda y: adjust_brightness(y, draw.brightness),
        1: lambda y: adjust_contrast(y, draw.contrast),
        2: lambda y: adjust_saturation(y, draw.saturation),
        3: lambda y: adjust_hue(y, draw.hue),
    }
    want = x
    for i in draw.order:
        want = ops[i](want)
    assert sorted(draw.order) == [0, 1, 2, 3]
    assert torch.allclose(color_jitter(x, draw), want)
    # Order matters (brightness then contrast ≠ contrast then brightness).
    b_then_c = adjust_contrast(adjust_brightness(x, draw.brightness), draw.contrast)
    c_then_b = adjust_brightness(adjust_contrast(x, draw.contrast), draw.brightness)
    assert not torch.allclose(b_then_c, c_then_b)


def test_draw_jitter_ranges_and_per_sample_factors():
    d = draw_jitter(5000, 0.2, _gen(8))
    for f in (d.brightness, d.contrast, d.saturation):
        assert float(f.min()) >= 0.8 and float(f.max()) <= 1.2
        assert float(f.mean()) == pytest.approx(1.0, abs=0.01)
        assert float(f.std()) == pytest.approx(0.4 / math.sqrt(12), rel=0.05)
    assert float(d.hue.min()) >= -0.2 and float(d.hue.max()) <= 0.2
    assert len(set(d.brightness[:10].tolist())) == 10


def _force_jitter(s: float = 0.2) -> StrongAugParams:
    return StrongAugParams(color_jitter_p=-1.0, color_jitter_s=s, blur=False)  # gate always open


def test_strong_augment_identity_at_zero_strength_and_reproducible():
    x = normalize(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=_gen(0)))
    assert torch.equal(strong_augment(x, _force_jitter(0.0), _gen(1)), x)
    assert torch.equal(strong_augment(x, StrongAugParams(1.0, 0.2, False), _gen(1)), x)  # gate shut
    a = strong_augment(x, _force_jitter(), _gen(3))
    b = strong_augment(x, _force_jitter(), _gen(3))
    c = strong_augment(x, _force_jitter(), _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)
    x_before = x.clone()
    strong_augment(x, StrongAugParams(-1.0, 0.2, True), _gen(5))
    assert torch.equal(x, x_before)  # input untouched


def test_strong_augment_clip_shares_factors_over_frames_not_samples():
    # One image repeated over 2 samples × 3 frames: frames of a clip stay identical after the
    # augmentation, the two clips differ (per-sample factors).
    img = normalize(torch.randint(30, 220, (1, 1, 3, 6, 6), dtype=torch.uint8, generator=_gen(1)))
    clip = img.expand(2, 3, 3, 6, 6).clone()
    out = strong_augment(clip, _force_jitter(), _gen(2))
    for f in (1, 2):
        assert torch.equal(out[:, f], out[:, 0])
    assert not torch.allclose(out[0], out[1])
    # Equivalent to augmenting the key frames only with the same generator state.
    key = strong_augment(clip[:, 0], _force_jitter(), _gen(2))
    assert torch.allclose(out[:, 0], key, atol=1e-6)


def test_strong_augment_gate_probabilities():
    # 1×30 images: cheap, and the 30-px side still gets a 3-tap blur kernel.
    x = normalize(torch.randint(0, 256, (1, 3, 1, 30), dtype=torch.uint8, generator=_gen(0)))
    g = _gen(9)
    n = 400
    jit = sum(
        not torch.equal(strong_augment(x, StrongAugParams(0.2, 0.2, False), g), x) for _ in range(n)
    )
    blur = sum(
        not torch.equal(strong_augment(x, StrongAugParams(1.0, 0.2, True), g), x) for _ in range(n)
    )
    assert jit / n == pytest.approx(0.8, abs=0.07)  # ±3.5σ
    assert blur / n == pytest.approx(0.5, abs=0.09)


def test_strong_augment_per_image_draws_sigma_per_image():
    # Blur only, identical images: one σ per call → identical outputs; per_image → differ.
    img = normalize(torch.randint(0, 256, (1, 3, 30, 30), dtype=torch.uint8, generator=_gen(0)))
    x = img.expand(3, 3, 30, 30).clone()
    params = StrongAugParams(1.0, 0.2, True)
    for seed in range(20):
        shared = strong_augment(x, params, _gen(seed))
        if not torch.equal(shared, x):  # this seed's blur gate is open
            break
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[1], shared[2])
    per = strong_augment(x, params, _gen(seed), per_image=True)
    assert not torch.allclose(per[0], per[1])


# ----------------------------------------------------------------------------- blur


@pytest.mark.parametrize(
    "length,k", [(1024, 103), (512, 51), (2048, 205), (1280, 127), (720, 71), (256, 25), (10, 1)]
)
def test_blur_kernel_size(length, k):
    # k = floor(ceil(0.1 L) − 0.5 + ceil(0.1 L) mod 2), e.g. 1280: ceil(128) = 128 even → 127.
    assert blur_kernel_size(length) == k
    assert k % 2 == 1


def test_gaussian_kernel_by_hand():
    k = gaussian_kernel1d(3, 1.0, torch.float64)
    e = math.exp(-0.5)
    assert torch.allclose(k, torch.tensor([e, 1.0, e], dtype=torch.float64) / (1 + 2 * e))
    assert float(gaussian_kernel1d(103, 0.7).sum()) == pytest.approx(1.0, abs=1e-6)


def test_reflect_padding_is_reflect_101():
    # torch 'reflect' = numpy 'reflect' = OpenCV BORDER_REFLECT_101 (edge not repeated).
    a = np.arange(5, dtype=np.float32)
    t = F.pad(torch.from_numpy(a).view(1, 1, 5), (2, 2), mode="reflect").flatten().numpy()
    assert t.tolist() == np.pad(a, 2, mode="reflect").tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    cv = cv2.copyMakeBorder(a[None], 0, 0, 2, 2, cv2.BORDER_REFLECT_101)[0]
    assert t.tolist() == cv.tolist()


@pytest.mark.parametrize("pos", [(0, 0), (1, 2), (9, 13)])
def test_blur_matches_opencv_reflect_101(pos):
    img = np.zeros((20, 30), np.float32)
    img[pos] = 1.0
    sigma, ky, kx = 0.9, 5, 7
    ours = gaussian_blur(torch.from_numpy(img)[None, None], sigma, (ky, kx))[0, 0].numpy()
    ref = cv2.GaussianBlur(img, (kx, ky), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(ours - ref).max() < 1e-6
    if pos == (0, 0):  # near the border REFLECT (edge repeated) differs: the padding matters
        other = cv2.GaussianBlur(img, (kx, ky), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        assert np.abs(ours - other).max() > 1e-3
    if pos == (9, 13):  # interior delta: outer product of the 1-D kernels, mass preserved
        gy = np.exp(-((np.arange(ky) - 2) ** 2) / (2 * sigma**2))
        gx = np.exp(-((np.arange(kx) - 3) ** 2) / (2 * sigma**2))
        outer = np.outer(gy / gy.sum(), gx / gx.sum())
        assert np.abs(ours[7:12, 10:17] - outer).max() < 1e-6
        assert float(ours.sum()) == pytest.approx(1.0, abs=1e-6)


def test_blur_default_kernel_keeps_constants_and_shape():
    x = torch.full((2, 3, 64, 96), 0.37)
    out = gaussian_blur(x, 1.1)  # k = (7, 9)
    assert out.shape == x.shape and torch.allclose(out, x, atol=1e-6)
    noisy = torch.randn(1, 3, 64, 96, generator=_gen(0))
    assert float(gaussian_blur(noisy, 1.1).std()) < 0.8 * float(noisy.std())


# ----------------------------------------------------------------------------- MIC


def test_block_mask_cells_and_kept_fraction():
    m = block_mask((3, 256, 320), block=64, ratio=0.7, generator=_gen(0))
    assert m.shape == (3, 1, 256, 320) and m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    cells = m.view(3, 1, 4, 64, 5, 64)
    assert torch.equal(cells, cells[:, :, :, :1, :, :1].expand_as(cells))  # 64×64 constant
    many = block_mask((200, 64, 64), block=1, ratio=0.7, generator=_gen(1))
    assert float(many.mean()) == pytest.approx(0.3, abs=0.005)
    a = block_mask((2, 128, 128), generator=_gen(5))
    assert torch.equal(a, block_mask((2, 128, 128), generator=_gen(5)))
    assert not torch.equal(a[0], a[1]) or a[0].std() == 0  # one mask per image
    # Grid of round(H/64) × round(W/64): 100 → 2 cells, 90 → 1 cell (1.41 rounds to 1).
    assert block_mask((1, 100, 90), generator=_gen(0)).shape == (1, 1, 100, 90)


def test_mask_images_zeroes_masked_pixels_in_normalised_space():
    img = normalize(torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8, generator=_gen(0)))
    m = block_mask((2, 128, 128), block=64, ratio=0.7, generator=_gen(3))
    out = mask_images(img, m)
    keep = m.bool().expand_as(img)
    assert torch.equal(out[keep], img[keep])
    assert (out[~keep] == 0).all()
    mean01 = torch.tensor(MEAN).view(1, 3, 1, 1) / 255
    assert torch.allclose(denormalize(out)[~keep], mean01.expand_as(img)[~keep])
    clip = img[:, None].expand(2, 2, 3, 128, 128)
    assert torch.equal(mask_images(clip, m)[:, 1], out)


# ----------------------------------------------------------------------------- FD


def _fd_label() -> torch.Tensor:
    # 2×2 cells:  (0,0) 6×3 + 255×1 → ρ 0.75 → 6;  (0,1) 1×4 → 1;  (0,2) 7×2 + 8×2 → ρ 0.5 → 255;
    #             (1,0) 255×3 + 0×1 → extra class → 255;  (1,1) 2×3 + 3×1 → 2;  (1,2) 4×4 → 4.
    return torch.tensor(
        [
            [6, 6, 1, 1, 7, 7],
            [6, 255, 1, 1, 8, 8],
            [255, 255, 2, 3, 4, 4],
            [255, 0, 2, 2, 4, 4],
        ]
    )[None]


def _downscale_reference(label, s, min_ratio, n_classes=19):
    """One-hot + average pooling + max, as described in the spec."""
    lab = label.clone()
    lab[lab == 255] = n_classes
    onehot = F.one_hot(lab, n_classes + 1).permute(0, 3, 1, 2).float()
    ratio, cls = F.avg_pool2d(onehot, s).max(dim=1)
    cls[(cls == n_classes) | (ratio < min_ratio)] = 255
    return cls


def test_downscale_label_ratio_by_hand():
    lab = _fd_label()
    assert downscale_label_ratio(lab, 2).tolist() == [[[6, 1, 255], [255, 2, 4]]]
    assert downscale_label_ratio(lab, 2, min_ratio=0.8).tolist() == [[[255, 1, 255], [255, 255, 4]]]
    assert downscale_label_ratio(lab, 2, min_ratio=0.5).tolist() == [[[6, 1, 7], [255, 2, 4]]]
    assert torch.equal(downscale_label_ratio(lab, 1), lab)  # s = 1: identity, 255 kept


def test_downscale_label_ratio_matches_one_hot_reference():
    g = _gen(0)
    blocks = torch.randint(0, 4, (2, 8, 8), generator=g)  # few classes → many clear majorities
    lab = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)
    noise = torch.rand(lab.shape, generator=g) < 0.2
    lab = torch.where(noise, torch.randint(0, 20, lab.shape, generator=g), lab)
    lab[lab == 19] = 255
    for s, r in [(4, 0.75), (8, 0.75), (2, 0.6)]:
        assert torch.equal(downscale_label_ratio(lab, s, r), _downscale_reference(lab, s, r))


def test_feature_distance_by_hand_and_identical_features():
    lab = _fd_label()  # down-scaled: [[6, 1, 255], [255, 2, 4]]
    f_imnet = torch.zeros(1, 2, 2, 3)
    f_student = torch.zeros(1, 2, 2, 3)
    f_student[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # class 6 → ‖·‖ = 5
    f_student[0, :, 1, 1] = torch.tensor([0.0, 1.0])  # class 2 → 1
    f_student[0, :, 0, 1] = torch.tensor([10.0, 0.0])  # class 1: not an FD class
    f_student.requires_grad_(True)
    loss = feature_distance(f_student, f_imnet, lab, classes=(2, 6, 7))
    assert float(loss.detach()) == pytest.approx((5 + 1) / 2)
    loss.backward()
    assert float(f_student.grad[0, :, 0, 1].abs().sum()) == 0  # unselected location
    # classes=None: every location, (5 + 1 + 10 + 0 + 0 + 0) / 6.
    everywhere = feature_distance(f_student.detach(), f_imnet, lab, classes=None)
    assert float(everywhere) == pytest.approx(16 / 6)

    same = torch.randn(2, 4, 2, 3, generator=_gen(0), requires_grad=True)
    labels = torch.full((2, 4, 6), 6)
    d = feature_distance(same, same.detach().clone(), labels)
    assert float(d.detach()) == 0.0
    d.backward()
    assert torch.isfinite(same.grad).all() and float(same.grad.abs().sum()) == 0


def test_feature_distance_empty_mask_is_zero_without_nan():
    f = torch.randn(1, 4, 2, 3, generator=_gen(1), requires_grad=True)
    lab = torch.full((1, 4, 6), 255)  # nothing selected
    loss = feature_distance(f, torch.randn(1, 4, 2, 3, generator=_gen(2)), lab)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    (loss * 0.005).backward()
    assert torch.isfinite(f.grad).all() and float(f.grad.abs().sum()) == 0
    with pytest.raises(ValueError):  # label does not down-scale onto the feature grid
        feature_distance(f, f.detach(), torch.zeros(1, 6, 6, dtype=torch.long))


def test_fd_class_lists():
    assert FD_CLASSES_GTA_SYNTHIA == (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
    assert FDConfig().classes == list(FD_CLASSES_GTA_SYNTHIA)  # the config default (a copy)


def test_pseudo_label_quality_counts_confidence_equal_to_tau():
    # two classes with equal logits: softmax confidence exactly 0.5 everywhere
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, :, 0, :] = torch.tensor([3.0, 0.0])[:, None]  # row 0 confident
    _, weight, _ = pseudo_label(logits, threshold=0.5)
    assert torch.equal(weight, torch.ones_like(weight))  # every pixel has confidence >= 0.5
    _, weight, _ = pseudo_label(logits, threshold=0.6)
    assert torch.allclose(weight, torch.full_like(weight, 0.25))  # only row 0 reaches 0.6


def test_block_mask_grid_rounds_to_the_nearest_cell_count():
    # 96 / 64 = 1.5 rounds to 2 rows of cells (64 / 64 = 1 column): rows 0-47 and 48-95
    for seed in range(50):
        u = torch.rand((1, 1, 2, 1), generator=torch.Generator().manual_seed(seed))
        if (u[0, 0, 0, 0] > 0.5) != (u[0, 0, 1, 0] > 0.5):
            break
    m = block_mask((1, 96, 64), block=64, ratio=0.5, generator=torch.Generator().manual_seed(seed))
    top, bottom = float(u[0, 0, 0, 0] > 0.5), float(u[0, 0, 1, 0] > 0.5)
    assert top != bottom
    assert (m[0, 0, :48] == top).all() and (m[0, 0, 48:] == bottom).all()
