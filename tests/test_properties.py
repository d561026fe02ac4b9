"""Property tests: identities that hold whatever the input, where a pointwise reference is hard.

Each property is checked against a plain re-derivation written here (numpy loops, hand formulas)
and each has a counterpart showing that a plausible bug (wrong flow sign, swapped u/v, swapped
scale factors, a joint softmax, a gradient leaking into D) breaks it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidda.data.clips import RawClip
from vidda.data.datasets.synthetic import SynthConfig, render_clip
from vidda.data.transforms import ClipTransform, round_size
from vidda.flow.warp import BORDER_TOLERANCE, warp_labels, warp_probs
from vidda.uda import discriminator as disc_mod
from vidda.uda.clip_view import chain_flows
from vidda.uda.discriminator import VideoDiscriminator, discriminator_input
from vidda.uda.mix import masks_from_classes, mix

# --------------------------------------------------------------------------- 1. exact-flow warp


def _interior(prev_label: np.ndarray, label: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels p where neither frame can alias a label boundary.

    The 2 × 2 pixel block of frame t−1 around p + f(p) holds one class (so whichever centre the
    nearest warp picks carries it), and the 3 × 3 block of frame t around p holds one class (so p
    is not on a one-pixel-wide pole that one ray per pixel may miss in the other frame).
    """
    h, w = label.shape
    yy, xx = np.mgrid[:h, :w]
    x0 = np.clip(np.floor(xx + flow[..., 0]).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(yy + flow[..., 1]).astype(int), 0, h - 2)
    block = [prev_label[y0 + dy, x0 + dx] for dy in (0, 1) for dx in (0, 1)]
    source_uniform = np.all([b == block[0] for b in block], axis=0)
    padded = np.pad(label, 1, mode="edge")
    shifts = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
              for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # fmt: skip
    target_uniform = np.all([s == label for s in shifts], axis=0)
    return source_uniform & target_uniform


def _exact_flow_scores(sign: float) -> tuple[int, int, int, int]:
    """Warp every frame t−1 label of a few synthetic clips onto frame t with ``sign`` × the
    renderer's exact backward flow. Returns (interior pixels, interior mismatches, changed
    pixels, changed pixels recovered); "changed" = valid pixels whose label differs between
    t−1 and t at the same position (zero motion gets none of them right)."""
    interior = interior_bad = changed = changed_ok = 0
    for dynamic in (False, True):
        cfg = SynthConfig(height=64, width=128, frames_per_clip=3, clips={"train": 1},
                          dynamic=dynamic)  # fmt: skip
        for seed in range(3):
            frames = render_clip(seed, "source", cfg)
            for prev, cur in zip(frames[:-1], frames[1:], strict=True):
                flow = sign * cur.flow
                warped, ok = warp_labels(
                    torch.from_numpy(prev.label.astype(np.int64))[None],
                    torch.from_numpy(flow).permute(2, 0, 1)[None],
                    torch.from_numpy(cur.flow_valid)[None],
                )
                warped, ok = warped[0].numpy(), ok[0].numpy()
                inner = ok & _interior(prev.label, cur.label, flow)
                interior += int(inner.sum())
                interior_bad += int((warped[inner] != cur.label[inner]).sum())
                moved = ok & (prev.label != cur.label)
                changed += int(moved.sum())
                changed_ok += int((warped[moved] == cur.label[moved]).sum())
    return interior, interior_bad, changed, changed_ok


def test_exact_synthetic_flow_carries_labels_from_frame_t_minus_1_to_t():
    # Static scene (only the camera moves) and moving objects, 3 scenes × 2 pairs each. The
    # renderer casts one ray per pixel centre, so the warp is exact wherever a label boundary
    # cannot fall between the sample point and the pixel centre nearest to it: 100 % of the
    # interior pixels (80 % of the image here) must agree. Elsewhere nearest sampling and
    # sub-pixel poles make about 2 % of the valid pixels disagree (see test_warp).
    interior, bad, changed, changed_ok = _exact_flow_scores(1.0)
    assert interior > 0.7 * 12 * 64 * 128
    assert bad == 0
    # Pixels whose label changed between the frames: zero motion gets 0 % of them; the exact
    # flow gets 75 % (the rest sit on boundaries, where nearest sampling may pick a neighbour).
    assert changed > 3000
    assert changed_ok / changed > 0.7, changed_ok / changed


def test_negated_flow_does_not_carry_labels():
    interior, bad, changed, changed_ok = _exact_flow_scores(-1.0)
    assert bad > 0.005 * interior, bad / interior  # 3 % of its "interior" pixels are wrong
    assert changed_ok / changed < 0.35, changed_ok / changed  # 15 %


def _affine(h: int, w: int, a: float, bx: float, by: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    return a + bx * xx + by * yy


def test_bilinear_warp_of_an_affine_image_under_random_flow_is_the_image_at_p_plus_f():
    # Bilinear interpolation reproduces affine functions exactly, so out(p) = I(p + f(p)) for any
    # per-pixel flow; a coordinate normalisation by W instead of W − 1, align_corners=False or
    # swapped u/v would break it.
    rng = np.random.default_rng(0)
    h, w = 9, 13
    image = np.stack([_affine(h, w, 1.0, 0.7, -0.4), _affine(h, w, -2.0, -0.1, 1.3)])
    flow = rng.uniform(-4, 4, (2, h, w))
    out, ok = warp_probs(torch.from_numpy(image)[None], torch.from_numpy(flow)[None])
    yy, xx = np.mgrid[:h, :w]
    xs, ys = xx + flow[0], yy + flow[1]
    tol = BORDER_TOLERANCE
    inside = (xs >= -tol) & (xs <= w - 1 + tol) & (ys >= -tol) & (ys <= h - 1 + tol)
    np.testing.assert_array_equal(ok[0].numpy(), inside)
    want = np.stack([1.0 + 0.7 * xs - 0.4 * ys, -2.0 - 0.1 * xs + 1.3 * ys])
    np.testing.assert_allclose(out[0].numpy()[:, inside], want[:, inside], atol=1e-9)
    assert (out[0].numpy()[:, ~inside] == 0).all()


def test_nearest_label_warp_under_random_flow_is_a_plain_gather():
    rng = np.random.default_rng(1)
    h, w = 8, 11
    labels = rng.integers(0, 19, (2, h, w))
    flow = rng.uniform(-3, 3, (2, 2, h, w)).astype(np.float32)
    out, ok = warp_labels(torch.from_numpy(labels), torch.from_numpy(flow), ignore_index=99)
    for b in range(2):
        for y in range(h):
            for x in range(w):
                sx, sy = x + float(flow[b, 0, y, x]), y + float(flow[b, 1, y, x])
                inside = -1e-3 <= sx <= w - 1 + 1e-3 and -1e-3 <= sy <= h - 1 + 1e-3
                assert bool(ok[b, y, x]) == inside, (b, y, x)
                want = labels[b, round(sy), round(sx)] if inside else 99
                assert int(out[b, y, x]) == want, (b, y, x)


# --------------------------------------------------------------------------- 2. flip


def _random_clip(h: int = 12, w: int = 17, t: int = 3, seed: int = 0) -> RawClip:
    """Random frames, labels (with 255), random per-pixel flows and partly invalid flow masks."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(t)]
    label = rng.integers(0, 19, (h, w)).astype(np.uint8)
    label[rng.random((h, w)) < 0.1] = 255
    flows: list[np.ndarray | None] = [None]
    valid: list[np.ndarray | None] = [None]
    for _ in range(t - 1):
        f = rng.uniform(-5, 5, (h, w, 2)).astype(np.float32)
        ok = rng.random((h, w)) > 0.2
        f[~ok] = 0.0
        flows.append(f)
        valid.append(ok)
    return RawClip("clip", frames, label, flows, valid)


def _as_raw(sample: dict) -> RawClip:
    """A transformed sample turned back into a clip (channels last, frame 0 without flow)."""
    frames = [f.permute(1, 2, 0).numpy() for f in sample["frames"]]
    flows, valid = [], []
    for f, ok in zip(sample["flows"], sample["flow_valid"], strict=True):
        has = bool(ok.any())  # every flow of _random_clip is valid somewhere
        flows.append(f.permute(1, 2, 0).numpy().copy() if has else None)
        valid.append(ok.numpy().copy() if has else None)
    return RawClip("clip", frames, sample["label"].numpy(), flows, valid)


MAPS = ("frames", "label", "flows", "flow_valid")


def test_flipping_a_clip_twice_is_the_identity():
    clip = _random_clip()
    plain = ClipTransform()(clip)
    flip = ClipTransform(flip_prob=1.0)
    once = flip(clip, np.random.default_rng(0))
    twice = flip(_as_raw(once), np.random.default_rng(0))
    assert once["flip"] and twice["flip"]
    for key in MAPS:
        assert torch.equal(twice[key], plain[key]), key
        assert not torch.equal(once[key], plain[key]), key  # the flip did something


def test_one_flip_mirrors_columns_negates_u_and_keeps_v():
    margins = (0, 0, 3, 0)  # pseudo-label margin on the left only, so its mirror is visible
    clip = _random_clip(seed=1)
    plain = ClipTransform(pl_margins=margins)(clip)
    out = ClipTransform(flip_prob=1.0, pl_margins=margins)(clip, np.random.default_rng(0))
    w = clip.label.shape[1]
    for x in range(w):  # column x of the flipped clip is column W − 1 − x of the original
        m = w - 1 - x
        assert torch.equal(out["frames"][..., x], plain["frames"][..., m])
        assert torch.equal(out["label"][:, x], plain["label"][:, m])
        assert torch.equal(out["flow_valid"][..., x], plain["flow_valid"][..., m])
        assert torch.equal(out["pl_valid"][:, x], plain["pl_valid"][:, m])
        assert torch.equal(out["flows"][:, 0, :, x], -plain["flows"][:, 0, :, m])  # u
        assert torch.equal(out["flows"][:, 1, :, x], plain["flows"][:, 1, :, m])  # v
    assert not out["pl_valid"][:, -3:].any() and out["pl_valid"][:, :-3].all()


def test_flip_commutes_with_the_backward_warp():
    # Geometric check of the flip's flow rule, independent of a hand-written expectation:
    # warping the flipped frame t−1 with the flipped flow is the flipped warp of the original.
    clip = _random_clip(seed=2)
    plain = ClipTransform()(clip)
    out = ClipTransform(flip_prob=1.0)(clip, np.random.default_rng(0))

    def warp(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
        prev = sample["frames"][1:2].double()
        return warp_probs(prev, sample["flows"][2:3].double(), sample["flow_valid"][2:3])

    got, got_ok = warp(out)
    want, want_ok = warp(plain)
    assert torch.equal(got_ok, want_ok.flip(-1)) and got_ok.float().mean() > 0.3
    torch.testing.assert_close(got, want.flip(-1), rtol=0, atol=1e-9)
    # a flip that negated v instead of u would not commute
    wrong = dict(out, flows=out["flows"] * torch.tensor([-1.0, -1.0]).view(1, 2, 1, 1))
    bad, _ = warp(wrong)
    assert not torch.allclose(bad, want.flip(-1), atol=1e-3)


# --------------------------------------------------------------------------- 3. resize


def _affine_flow_clip(h: int, w: int) -> RawClip:
    """Uniform frames, a label, and the affine backward flow u = 2 + 0.1 x − 0.05 y,
    v = −1 + 0.03 x + 0.08 y for frames 1 and 2 (all valid)."""
    flow = np.stack([_affine(h, w, 2.0, 0.1, -0.05), _affine(h, w, -1.0, 0.03, 0.08)], -1)
    flow = flow.astype(np.float32)
    frames = [np.full((h, w, 3), 100, np.uint8)] * 3
    ok = np.ones((h, w), bool)
    label = np.zeros((h, w), np.uint8)
    return RawClip("clip", frames, label, [None, flow, flow.copy()], [None, ok, ok])


def test_resize_scales_u_by_the_x_factor_and_v_by_the_y_factor():
    # keep-ratio ×1.5 of a 25 × 40 frame rounds to 38 × 60: x factor 1.5, y factor 1.52
    h0, w0 = 25, 40
    clip = _affine_flow_clip(h0, w0)
    for f in clip.flows[1:]:
        f[...] = (10.0, 10.0)  # constant flow: the resampling cannot change it
    out = ClipTransform(resize=(60, 60))(clip)
    h, w = out["label"].shape
    assert (h, w) == (round_size(h0, 1.5), round_size(w0, 1.5)) == (38, 60)
    sx, sy = w / w0, h / h0
    assert sx == 1.5 and sy == pytest.approx(1.52)
    torch.testing.assert_close(out["flows"][1:, 0], torch.full((2, h, w), 10.0 * sx))
    torch.testing.assert_close(out["flows"][1:, 1], torch.full((2, h, w), 10.0 * sy))
    assert out["flow_valid"][1:].all()


def test_resize_by_s_then_by_one_over_s_keeps_the_flow():
    # An affine flow field survives bilinear resampling exactly away from the border (where
    # OpenCV clamps the source coordinate); the anisotropic rounding (1.5, 1.52) → (1/1.5, 25/38)
    # must bring every vector back in pixels of the original grid.
    h0, w0 = 25, 40
    clip = _affine_flow_clip(h0, w0)
    up = ClipTransform(resize=(60, 60))(clip)
    assert tuple(up["label"].shape) == (38, 60)
    back = ClipTransform(resize=(40, 40))(_as_raw(up))
    assert tuple(back["label"].shape) == (h0, w0)
    want = torch.from_numpy(clip.flows[1]).permute(2, 0, 1)
    for t in (1, 2):
        got = back["flows"][t]
        torch.testing.assert_close(got[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], rtol=0, atol=1e-4)
        # the border pixels differ by a fraction of the field's gradient, never more
        assert (got - want).abs().max() < 0.1
        assert back["flow_valid"][t].all()
    # compat: unscaled vectors are off by the scale after the round trip's first half
    compat = ClipTransform(resize=(60, 60), scale_flow=False)(clip)
    assert not torch.allclose(compat["flows"][1], up["flows"][1], atol=0.5)


# --------------------------------------------------------------------------- 4. discriminator

K = 3


def _disc(seed: int = 0) -> VideoDiscriminator:
    torch.manual_seed(seed)
    return VideoDiscriminator(K, width=4).double()


def _pairs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = discriminator_input(torch.randn(2, K, 64, 64, generator=g, dtype=torch.float64),
                            torch.randn(2, K, 64, 64, generator=g, dtype=torch.float64))
    b = discriminator_input(torch.randn(2, K, 64, 64, generator=g, dtype=torch.float64) * 3,
                            torch.randn(2, K, 64, 64, generator=g, dtype=torch.float64))
    return a, b  # fmt: skip


def _d_grads(disc: VideoDiscriminator, loss: torch.Tensor) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, list(disc.parameters()), allow_unused=True))


def test_discriminator_loss_is_symmetric_under_swapping_domains_and_labels(monkeypatch):
    disc = _disc()
    src, trg = _pairs()
    loss = disc.discriminator_loss(src, trg)
    grads = _d_grads(disc, loss)
    # plain re-derivation: s · [0.5 · mean(D(src) − 0)² + 0.5 · mean(D(trg) − 1)²]
    plain = 0.1 * (0.5 * disc(src).square().mean() + 0.5 * (disc(trg) - 1).square().mean())
    torch.testing.assert_close(loss, plain, rtol=1e-12, atol=0)
    monkeypatch.setattr(disc_mod, "SOURCE_LABEL", 1.0)
    monkeypatch.setattr(disc_mod, "TARGET_LABEL", 0.0)
    swapped = disc.discriminator_loss(trg, src)
    torch.testing.assert_close(swapped, loss, rtol=1e-12, atol=0)
    for g, h in zip(_d_grads(disc, swapped), grads, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-15)
    # swapping the labels alone is a different loss (the check above is not vacuous)
    relabelled = disc.discriminator_loss(src, trg).item()
    assert abs(relabelled - loss.item()) > 1e-4 * loss.item()


def test_generator_loss_has_zero_gradient_for_the_discriminator():
    disc = _disc(2)
    src, trg = _pairs(3)
    trg = trg.clone().requires_grad_(True)
    gen = disc.generator_loss(trg)
    assert all(g is None for g in _d_grads(disc, gen))
    # summed with D's own loss, D's gradient is exactly D's loss gradient
    both = _d_grads(disc, disc.generator_loss(trg) + disc.discriminator_loss(src, trg))
    alone = _d_grads(disc, disc.discriminator_loss(src, trg))
    for g, h in zip(both, alone, strict=True):
        assert torch.equal(g, h)
    # ... while the segmentor side gets the plain s · λ · mean(D(x)²) gradient
    (grad_in,) = torch.autograd.grad(gen, trg)
    (plain_in,) = torch.autograd.grad(0.1 * 0.001 * disc(trg).square().mean(), trg)
    torch.testing.assert_close(grad_in, plain_in, rtol=1e-10, atol=1e-18)
    assert grad_in.abs().sum() > 0


@pytest.mark.parametrize("size", [None, (16, 16)])
def test_per_frame_softmax_ignores_a_constant_added_to_one_frames_logits(size):
    g = torch.Generator().manual_seed(4)
    z_t = torch.randn(2, K, 16, 16, generator=g, dtype=torch.float64)
    z_tk = torch.randn(2, K, 16, 16, generator=g, dtype=torch.float64)
    # a different constant per frame and per pixel, the same over the C channels
    c_t = torch.randn(2, 1, 16, 16, generator=g, dtype=torch.float64) * 5
    c_tk = torch.randn(2, 1, 1, 1, generator=g, dtype=torch.float64) * 5 + 10
    base = discriminator_input(z_t, z_tk, size=size)
    shifted = discriminator_input(z_t + c_t, z_tk + c_tk, size=size)
    torch.testing.assert_close(shifted, base, rtol=0, atol=1e-12)
    # the joint softmax compares the two frames' logits: one frame's constant changes it ...
    joint = discriminator_input(z_t, z_tk, joint_softmax=True, size=size)
    joint_shifted = discriminator_input(z_t + c_t, z_tk + c_tk, joint_softmax=True, size=size)
    assert (joint_shifted - joint).abs().max() > 0.1
    # ... but not one constant added to both frames
    same = discriminator_input(z_t + c_t, z_tk + c_t, joint_softmax=True, size=size)
    torch.testing.assert_close(same, joint, rtol=0, atol=1e-12)


def test_discriminator_input_rejects_frames_of_different_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        discriminator_input(torch.zeros(1, K, 8, 8), torch.zeros(1, K, 8, 6))
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        discriminator_input(torch.zeros(K, 8, 8), None)


# --------------------------------------------------------------------------- 5. chained flows

H5, W5 = 7, 10


def _constant(b_uv: list[tuple[float, float]]) -> torch.Tensor:
    """[B, 2, H, W] flow, batch element i translating by b_uv[i]."""
    return torch.tensor(b_uv, dtype=torch.float32).view(-1, 2, 1, 1).expand(-1, 2, H5, W5).clone()


def _chain_validity(t1: tuple[float, float], t2: tuple[float, float], valid2: np.ndarray):
    """Plain loop: p + t1 inside, every bilinear neighbour of p + t1 with weight > 0 valid in
    link 2, and p + t1 + t2 inside (pixel-centre hull)."""

    def inside(x: float, y: float) -> bool:
        return 0 <= x <= W5 - 1 and 0 <= y <= H5 - 1

    out = np.zeros((H5, W5), bool)
    for y in range(H5):
        for x in range(W5):
            qx, qy = x + t1[0], y + t1[1]
            if not (inside(qx, qy) and inside(qx + t2[0], qy + t2[1])):
                continue
            cols = {int(np.floor(qx)), int(np.ceil(qx))}
            rows = {int(np.floor(qy)), int(np.ceil(qy))}
            out[y, x] = all(valid2[r, c] for r in rows for c in cols)
    return out


@pytest.mark.parametrize(
    "t1,t2",
    [((1.0, 2.0), (-3.0, 1.0)), ((1.25, -0.5), (-3.5, 2.75)), ((-2.0, 0.0), (0.0, -1.5)),
     ((0.0, 0.0), (0.0, 0.0))],
)  # fmt: skip
def test_chaining_two_constant_translations_is_their_sum(t1, t2):
    valid2 = np.ones((H5, W5), bool)
    valid2[3, 4:6] = False  # a hole in the second link
    f1, f2 = _constant([t1, t2]), _constant([t2, t1])  # batch 1 chains them the other way round
    v1 = torch.ones(2, H5, W5, dtype=torch.bool)
    v2 = torch.from_numpy(np.stack([valid2, valid2]))
    flow, valid = chain_flows([f1, f2], [v1, v2])
    expected = [_chain_validity(t1, t2, valid2), _chain_validity(t2, t1, valid2)]
    np.testing.assert_array_equal(valid.numpy(), np.stack(expected))
    total = torch.tensor([t1[0] + t2[0], t1[1] + t2[1]]).view(2, 1)
    for b in range(2):
        torch.testing.assert_close(flow[b][:, valid[b]], total.expand(2, int(valid[b].sum())),
                                   rtol=0, atol=1e-5)  # fmt: skip


def test_chaining_samples_the_next_link_where_the_chain_has_arrived():
    # f = f1(p) + f2(p + f1(p)); with an affine second link bilinear sampling is exact, so the
    # plain formula is the reference (constant links cannot tell where the link is sampled).
    g = torch.Generator().manual_seed(8)
    f1 = (torch.rand(1, 2, H5, W5, generator=g, dtype=torch.float64) * 4 - 2).float()
    f2 = torch.from_numpy(np.stack([_affine(H5, W5, 0.5, 0.3, -0.2),
                                    _affine(H5, W5, -1.0, 0.1, 0.4)]))[None].float()  # fmt: skip
    ones = torch.ones(1, H5, W5, dtype=torch.bool)
    flow, valid = chain_flows([f1, f2], [ones, ones])
    xs = torch.arange(W5).view(1, W5) + f1[0, 0].double()
    ys = torch.arange(H5).view(H5, 1) + f1[0, 1].double()
    u = f1[0, 0] + 0.5 + 0.3 * xs - 0.2 * ys
    v = f1[0, 1] - 1.0 + 0.1 * xs + 0.4 * ys
    ends_inside = (xs + u - f1[0, 0] >= 0) & (xs + u - f1[0, 0] <= W5 - 1)
    ends_inside &= (ys + v - f1[0, 1] >= 0) & (ys + v - f1[0, 1] <= H5 - 1)
    inside = (xs >= 0) & (xs <= W5 - 1) & (ys >= 0) & (ys <= H5 - 1) & ends_inside
    assert torch.equal(valid[0], inside) and inside.float().mean() > 0.3
    torch.testing.assert_close(flow[0, 0][inside], u[inside].float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(flow[0, 1][inside], v[inside].float(), rtol=0, atol=1e-5)


def test_chaining_with_a_zero_flow_is_the_identity():
    g = torch.Generator().manual_seed(5)
    f = torch.rand(2, 2, H5, W5, generator=g) * 6 - 3
    v = torch.rand(2, H5, W5, generator=g) > 0.2
    zero, ones = torch.zeros_like(f), torch.ones_like(v)
    xs = torch.arange(W5).view(1, 1, W5) + f[:, 0]
    ys = torch.arange(H5).view(1, H5, 1) + f[:, 1]
    inside = (xs >= 0) & (xs <= W5 - 1) & (ys >= 0) & (ys <= H5 - 1)
    for flows, valids in (([f, zero], [v, ones]), ([zero, f], [ones, v])):
        out, ok = chain_flows(flows, valids)
        assert torch.equal(ok, v & inside)
        torch.testing.assert_close(out, f, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        chain_flows([f, zero], [v])


# --------------------------------------------------------------------------- 6. ClassMix


@pytest.mark.parametrize(
    "shape,dtype",
    [((2, 5, 6), torch.int64), ((2, 3, 5, 6), torch.float32), ((2, 4, 5, 6), torch.bool),
     ((2, 3, 2, 5, 6), torch.float64)],
)  # fmt: skip
def test_mix_with_a_mask_and_its_complement_reconstructs_both_inputs(shape, dtype):
    g = torch.Generator().manual_seed(6)
    a, b = (torch.rand(shape, generator=g) for _ in range(2))
    if dtype == torch.bool:
        a, b = a > 0.5, b > 0.5
    else:
        a, b = (a * 100).to(dtype), (b * 100 - 50).to(dtype)
    mask = torch.rand(shape[0], *shape[-2:], generator=g) > 0.5
    x, y = mix(mask, a, b), mix(~mask, a, b)
    assert x.dtype == dtype and x.shape == a.shape
    m = mask.view(shape[0], *(1,) * (len(shape) - 3), *shape[-2:]).expand(shape)
    assert torch.equal(x[m], a[m]) and torch.equal(x[~m], b[~m])  # source where the mask is 1
    assert torch.equal(mix(mask, x, y), a) and torch.equal(mix(mask, y, x), b)
    assert torch.equal(mix(mask.long(), a, b), x)  # a 0/1 mask means the same
    assert not torch.equal(x, a) and not torch.equal(x, b)


def test_class_masks_match_a_per_pixel_loop():
    g = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 19, (3, 6, 9), generator=g)
    labels[0, 0, :4] = 255
    drawn = [torch.tensor([255, 3, 7, 18]), torch.tensor([], dtype=torch.long),
             torch.tensor([5, 99])]  # fmt: skip  # ignore incl., nothing drawn, absent class
    masks = masks_from_classes(labels, drawn)
    assert masks.dtype == torch.bool and masks.shape == labels.shape
    for i in range(3):
        chosen = set(drawn[i].tolist())
        for y in range(6):
            for x in range(9):
                assert bool(masks[i, y, x]) == (int(labels[i, y, x]) in chosen), (i, y, x)
    assert masks[0, 0, :4].all() and not masks[1].any()
    with pytest.raises(ValueError, match="2 class sets for a batch of 3"):
        masks_from_classes(labels, drawn[:2])
    with pytest.raises(ValueError, match="does not fit"):
        mix(masks, labels[:, :, :8], labels[:, :, :8])


def test_mix_rejects_bad_masks_and_arguments():
    a = torch.zeros(2, 5, 6)
    with pytest.raises(ValueError, match=r"mask must be \[B, H, W\]"):
        mix(torch.ones(2, 2, 5, 6, dtype=torch.bool), a, a)
    with pytest.raises(TypeError, match="at least one"):
        mix(torch.ones(2, 5, 6, dtype=torch.bool), 1.0, 0.0)
    with pytest.raises(ValueError, match="differ"):
        mix(torch.ones(2, 5, 6, dtype=torch.bool), a, torch.zeros(2, 1, 5, 6))

