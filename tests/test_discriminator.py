"""Video discriminator: architecture, input, losses, optimizer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidda.uda.discriminator import FCDiscriminator, VideoDiscriminator, discriminator_input

K = 3  # classes


def constant_discriminator(value: float) -> VideoDiscriminator:
    """A video discriminator whose output is ``value`` everywhere (zero weights, set bias)."""
    disc = VideoDiscriminator(K, width=4)
    with torch.no_grad():
        for p in disc.net.parameters():
            p.zero_()
        disc.net.classifier.bias.fill_(value)
    return disc


def test_fc_discriminator_architecture_and_output_shape():
    torch.manual_seed(0)
    d = FCDiscriminator(2 * K, width=4)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (6, 4), (4, 8), (8, 16), (16, 32), (32, 1)]  # fmt: skip
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
               for c in convs)  # fmt: skip
    assert d.act.negative_slope == 0.2
    assert FCDiscriminator(38).conv1.out_channels == 64  # the paper's width
    out = d(torch.randn(2, 2 * K, 64, 96))
    assert out.shape == (2, 1, 2, 3)  # h/32, w/32


def test_per_frame_softmax_makes_each_half_a_distribution():
    torch.manual_seed(0)
    z_t, z_tk = torch.randn(2, K, 16, 24), torch.randn(2, K, 16, 24) * 3
    d_in = discriminator_input(z_t, z_tk)
    assert d_in.shape == (2, 2 * K, 8, 12)  # default: half the logits' size
    ones = torch.ones(2, 8, 12)
    torch.testing.assert_close(d_in[:, :K].sum(1), ones)
    torch.testing.assert_close(d_in[:, K:].sum(1), ones)
    # no resize when the size is the logits' own: the halves are the plain softmaxes
    same = discriminator_input(z_t, z_tk, size=(16, 24))
    torch.testing.assert_close(same, torch.cat([z_t.softmax(1), z_tk.softmax(1)], 1))


def test_joint_softmax_is_one_distribution_over_both_frames():
    torch.manual_seed(0)
    z_t, z_tk = torch.randn(1, K, 8, 8), torch.randn(1, K, 8, 8) * 3
    d_in = discriminator_input(z_t, z_tk, joint_softmax=True, size=(8, 8))
    torch.testing.assert_close(d_in.sum(1), torch.ones(1, 8, 8))
    assert not torch.allclose(d_in[:, :K].sum(1), torch.ones(1, 8, 8))
    torch.testing.assert_close(d_in, torch.cat([z_t, z_tk], 1).softmax(1))
    # the discriminator's own setting is used by make_input
    disc = VideoDiscriminator(K, width=4, joint_softmax=True)
    torch.testing.assert_close(disc.make_input(z_t, z_tk, size=(8, 8)), d_in)


def test_input_is_resized_bilinearly_before_the_softmax():
    z = torch.randn(1, K, 8, 8)
    d_in = discriminator_input(z, z, size=(16, 16))
    up = nn.functional.interpolate(z, (16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(d_in[:, :K], up.softmax(1))


def test_least_squares_losses_by_hand():
    c = 0.3
    disc = constant_discriminator(c)
    x = torch.rand(2, 2 * K, 32, 32)
    assert disc(x).shape == (2, 1, 1, 1)
    # G: s·λ·(c − 0)² with s = 0.1, λ = 0.001
    assert disc.generator_loss(x).item() == pytest.approx(0.1 * 0.001 * c**2)
    # D: s·[0.5·(c − 0)² + 0.5·(c − 1)²]
    assert disc.discriminator_loss(x, x).item() == pytest.approx(
        0.1 * (0.5 * c**2 + 0.5 * (c - 1) ** 2))  # fmt: skip


def test_generator_loss_reaches_the_input_but_not_the_discriminator():
    torch.manual_seed(0)
    disc = VideoDiscriminator(K, width=4)
    d_in = torch.rand(1, 2 * K, 32, 32, requires_grad=True)
    disc.generator_loss(d_in).backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())  # D is not left frozen
    assert d_in.grad is not None and d_in.grad.abs().sum() > 0


def test_discriminator_loss_gives_no_gradient_to_the_segmentor():
    torch.manual_seed(0)
    seg = nn.Conv2d(3, K, 1)
    disc = VideoDiscriminator(K, width=4)
    z = [seg(torch.randn(1, 3, 64, 64)) for _ in range(4)]
    d_src, d_trg = disc.make_input(z[0], z[1]), disc.make_input(z[2], z[3])
    disc.discriminator_loss(d_src, d_trg).backward()
    assert all(p.grad is None for p in seg.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_discriminator_is_stepped_only_by_its_own_optimizer():
    torch.manual_seed(0)
    seg = nn.Conv2d(3, K, 1)
    disc = VideoDiscriminator(K, width=4)
    seg_opt = torch.optim.AdamW(seg.parameters(), lr=1e-2)
    d_opt = disc.build_optimizer()
    assert isinstance(d_opt, torch.optim.Adam) and disc.optimizer is d_opt
    assert d_opt.defaults["lr"] == 1e-4 and d_opt.defaults["betas"] == (0.9, 0.99)
    assert {id(p) for g in d_opt.param_groups for p in g["params"]} == {
        id(p) for p in disc.parameters()}  # fmt: skip

    z = [seg(torch.randn(1, 3, 64, 64)) for _ in range(4)]
    d_src, d_trg = disc.make_input(z[0], z[1]), disc.make_input(z[2], z[3])
    disc.generator_loss(d_trg).backward()
    disc.discriminator_loss(d_src, d_trg).backward()
    before_d = [p.detach().clone() for p in disc.parameters()]
    before_s = [p.detach().clone() for p in seg.parameters()]
    seg_opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before_d, disc.parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before_s, seg.parameters(), strict=True))
    d_opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before_d, disc.parameters(), strict=True))


def test_poly_learning_rate_by_hand():
    disc = VideoDiscriminator(K, width=4)
    with pytest.raises(RuntimeError, match="build_optimizer"):
        disc.set_lr(0, 10)
    opt = disc.build_optimizer()
    assert disc.set_lr(0, 40000) == pytest.approx(1e-4)
    assert disc.set_lr(20000, 40000) == pytest.approx(1e-4 * 0.5**0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5**0.9)
    assert disc.set_lr(30000, 40000) == pytest.approx(1e-4 * 0.25**0.9)
    assert disc.set_lr(40000, 40000) == 0.0
    floor = VideoDiscriminator(K, width=4, min_lr=1e-6)
    floor.build_optimizer()
    assert floor.set_lr(20000, 40000) == pytest.approx((1e-4 - 1e-6) * 0.5**0.9 + 1e-6)


def test_single_frame_discriminator_takes_c_channels():
    disc = VideoDiscriminator(K, width=4, video=False)
    z = torch.randn(1, K, 64, 64)
    d_in = disc.make_input(z)
    assert d_in.shape == (1, K, 32, 32)
    assert disc(d_in).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="t-k"):
        VideoDiscriminator(K, width=4).make_input(z)


def test_adversary_builds_d_as_configured():
    from vidda.config.schema import DiscriminatorConfig
    from vidda.uda.adversarial import Adversary

    cfg = DiscriminatorConfig(enabled=True, betas=[0.5, 0.95], lr=3e-4)
    video = Adversary(cfg, 5, joint_softmax=False, total_iters=10)
    single = Adversary(DiscriminatorConfig(enabled=True, video=False), 5, False, 10)
    assert video.disc.video and not single.disc.video
    group = video.optimizer.param_groups[0]
    assert tuple(group["betas"]) == (0.5, 0.95) and group["lr"] == pytest.approx(3e-4)
    # D sees 2C channels for a frame pair, C for one frame
    first = [m for m in video.disc.modules() if isinstance(m, torch.nn.Conv2d)][0]
    first_single = [m for m in single.disc.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert (first.in_channels, first_single.in_channels) == (10, 5)


def test_adversary_refuses_inputs_below_32_pixels():
    from vidda.config.schema import DiscriminatorConfig
    from vidda.uda.adversarial import Adversary

    adv = Adversary(DiscriminatorConfig(enabled=True, feature_scale=0.5), 5, False, 10)
    assert adv.input_size(64, 128) == (32, 64)
    for h, w in ((62, 128), (40, 128), (128, 34)):  # 31, 20 or 17 pixels on one side
        with pytest.raises(ValueError, match="below 32 pixels per side"):
            adv.input_size(h, w)
