"""Segmentor mechanics (sliding windows, HRDA fusion and losses) on small stand-in networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from standins import Head, Stride4

from vidda.models.losses import seg_loss
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.hrda import HRDA
from vidda.models.segmentors.sliding import slide, window_starts


def test_window_starts_match_the_original_rule():
    assert window_starts(2048, 1024, 512) == [0, 512, 1024]
    assert window_starts(1024, 512, 256) == [0, 256, 512]
    assert window_starts(1000, 512, 256) == [0, 256, 488]  # last window clamped to the border
    assert window_starts(300, 512, 256) == [0]


def test_slide_equals_whole_when_one_window_covers_the_image():
    torch.manual_seed(0)
    model = EncoderDecoder(Stride4(), Head()).eval()
    x = torch.randn(2, 3, 64, 96)
    whole = model.predict(x)
    assert whole.shape == (2, 5, 64, 96)
    torch.testing.assert_close(model.predict(x, "slide", (64, 96), (32, 48)), whole)
    torch.testing.assert_close(model.predict(x, "slide", (128, 128), (64, 64)), whole)


def test_slide_averages_overlapping_windows():
    x = torch.arange(1 * 1 * 4 * 6, dtype=torch.float32).reshape(1, 1, 4, 6)
    # fn returns, per window, its own mean everywhere: the overlap columns average two windows.
    out = slide(lambda w: w.mean(dim=(2, 3), keepdim=True).expand_as(w), x, (4, 4), (4, 2))
    left, right = x[..., :4].mean(), x[..., 2:].mean()
    torch.testing.assert_close(out[0, 0, 0], torch.stack(
        [left, left, (left + right) / 2, (left + right) / 2, right, right]))  # fmt: skip


def test_seg_loss_is_a_mean_over_all_pixels_including_ignored():
    logits = torch.zeros(1, 2, 1, 4)
    label = torch.tensor([[[0, 1, 255, 255]]])
    # Each valid pixel costs ln 2; the two ignored pixels count as 0 in a mean over 4.
    assert seg_loss(logits, label).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)) / 4)
    w = torch.tensor([[[2.0, 0.0, 5.0, 5.0]]])
    assert seg_loss(logits, label, w).item() == pytest.approx(2 * 0.6931472 / 4)


def make_hrda(**kw) -> HRDA:
    torch.manual_seed(0)
    args = dict(hr_crop=(32, 32), attention_head=Head(), fixed_attention=None)
    args.update(kw)
    return HRDA(Stride4(), Head(), **args)


def test_hrda_detail_only_equals_the_high_resolution_branch():
    model = make_hrda(attention_head=None, fixed_attention=1.0, hr_crop=(64, 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x)
    assert out["box"] == (0, 64, 0, 64)
    torch.testing.assert_close(out["logits"], out["hr"])
    torch.testing.assert_close(out["logits"], model.logits(x))  # the HR branch is the plain forward
    torch.testing.assert_close(model.inference(x), F.interpolate(
        model.logits(x), (64, 64), mode="bilinear", align_corners=False))  # fmt: skip


def test_hrda_context_only_is_the_upsampled_low_resolution_branch():
    model = make_hrda(attention_head=None, fixed_attention=0.0).eval()
    x = torch.randn(1, 3, 64, 64)
    lr = model.logits(F.interpolate(x, (32, 32), mode="bilinear", align_corners=False))
    expected = F.interpolate(lr, (16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model.forward_train(x)["logits"], expected)


def test_hrda_training_fusion_follows_the_original_order_of_operations():
    model = make_hrda().eval()
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x, box=(16, 48, 8, 40))
    # By hand: LR logits and attention at 8×8, mask = crop / (os / lr_scale) = /8 → [2:6, 1:5].
    x_lr = F.interpolate(x, (32, 32), mode="bilinear", align_corners=False)
    feats = model.backbone(x_lr)
    s_lr, att = model.decode_head(feats), torch.sigmoid(model.scale_attention(feats))
    mask = torch.zeros_like(att)
    mask[:, :, 2:6, 1:5] = 1
    att = att * mask
    canvas = torch.zeros(2, 5, 16, 16)
    canvas[:, :, 4:12, 2:10] = model.logits(x[:, :, 16:48, 8:40])
    up = lambda t: F.interpolate(t, (16, 16), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(out["logits"], up(att) * canvas + up((1 - att) * s_lr))
    torch.testing.assert_close(out["attention"], att)


def test_hrda_loss_terms_are_weighted_0_9_and_0_1():
    model = make_hrda().eval()
    x = torch.randn(2, 3, 64, 64)
    label = torch.randint(0, 5, (2, 64, 64))
    out = model.forward_train(x, box=(0, 32, 32, 64))
    losses = model.loss(out, label)
    assert set(losses) == {"loss_seg", "loss_seg_hr"}
    torch.testing.assert_close(losses["loss_seg"], 0.9 * seg_loss(out["logits"], label))
    torch.testing.assert_close(losses["loss_seg_hr"],
                               0.1 * seg_loss(out["hr"], label[:, 0:32, 32:64]))  # fmt: skip


def test_hrda_crop_offsets_are_divisible_and_stop_short_of_the_border():
    model = make_hrda(hr_crop=(512, 512))
    g = torch.Generator().manual_seed(0)
    offsets = {model.draw_crop_box(1024, 1024, g)[0] for _ in range(2000)}
    assert all(o % 8 == 0 for o in offsets)
    assert max(offsets) == 504 and min(offsets) == 0  # the original's range: M = 512 → 0..504


def test_hrda_backward_reaches_every_parameter():
    model = make_hrda().train()
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    sum(model.loss(out, torch.randint(0, 5, (2, 64, 64))).values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_hrda_requires_one_attention_source():
    with pytest.raises(ValueError, match="exactly one"):
        HRDA(Stride4(), Head(), attention_head=None)


def test_hrda_detail_crop_box_has_the_crop_s_own_width_and_height():
    model = make_hrda(hr_crop=(16, 32))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y1, y2, x1, x2 = model.draw_crop_box(64, 96, g)
        assert (y2 - y1, x2 - x1) == (16, 32)
        assert y1 % 8 == 0 and x1 % 8 == 0 and y2 <= 64 and x2 <= 96
    assert model.draw_crop_box(8, 20) == (0, 8, 0, 20)  # crops larger than the image: the image
