"""Tests for ``vidda.flow.warp``.

References are independent of the code under test: hand-computed values on analytic flows, a
pixel-by-pixel loop transcription of the original ``backpropFlow`` steps, and the synthetic
renderer's exact labels and flows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidda.flow.warp import (
    backward_warp,
    forward_backward_consistent,
    original_bottom_limit,
    original_warp,
    warp_labels,
    warp_probs,
)

IGN = 255


def const_flow(h: int, w: int, u: float, v: float, b: int = 1) -> torch.Tensor:
    flow = torch.empty(b, 2, h, w)
    flow[:, 0] = u
    flow[:, 1] = v
    return flow


def ramp(h: int, w: int) -> torch.Tensor:
    """[1, 1, H, W] with value 10·y + x (distinct, < 255 for 8 × 10)."""
    return (torch.arange(h)[:, None] * 10 + torch.arange(w)[None, :]).float().view(1, 1, h, w)


# --------------------------------------------------------------------------- fixed operator


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_integer_shift_is_exact(mode: str) -> None:
    h, w = 4, 6
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    out, valid = backward_warp(x, const_flow(h, w, 2, 1, b=2).double(), mode)
    # out(y, x) = X(y + 1, x + 2), valid where y + 1 <= H - 1 and x + 2 <= W - 1
    expected_valid = torch.zeros(2, h, w, dtype=torch.bool)
    expected_valid[:, : h - 1, : w - 2] = True
    assert torch.equal(valid, expected_valid)
    torch.testing.assert_close(out[..., : h - 1, : w - 2], x[..., 1:, 2:], rtol=0, atol=1e-12)
    assert (out[~expected_valid[:, None].expand_as(out)] == 0).all()


def test_subpixel_shift_bilinear_by_hand() -> None:
    h, w = 3, 5
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    x = (xs**2 + 10 * ys).view(1, 1, h, w)
    out, valid = warp_probs(x, const_flow(h, w, 0.25, 0.5))
    # bilinear along x: 0.75·x² + 0.25·(x+1)²; exact along y for the linear term: 10·(y + 0.5)
    expected = 0.75 * xs**2 + 0.25 * (xs + 1) ** 2 + 10 * (ys + 0.5)
    assert valid[0, : h - 1, : w - 1].all() and not valid[0, -1].any() and not valid[0, :, -1].any()
    torch.testing.assert_close(out[0, 0, :-1, :-1], expected[:-1, :-1], rtol=0, atol=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx(5.25, abs=1e-5)  # 0.25·1 + 10·0.5
    assert out[0, 0, 1, 2].item() == pytest.approx(0.75 * 4 + 0.25 * 9 + 15, abs=1e-5)


def test_out_of_bounds_is_invalid() -> None:
    h, w = 2, 5
    x = torch.rand(1, 1, h, w)
    _, valid = backward_warp(x, const_flow(h, w, -1.25, 0.0))
    # x - 1.25 >= 0 only from column 2 on (column 1 would read -0.25)
    assert valid[0].tolist() == [[False, False, True, True, True]] * h
    _, valid = backward_warp(x, const_flow(h, w, 0.0, 1.5))
    assert not valid.any()  # every row would read y + 1.5 > H - 1 = 1
    _, valid = backward_warp(x, const_flow(h, w, 0.0, 0.0))
    assert valid.all()  # zero flow is ordinary zero motion in the fixed operator


def test_invalid_input_flow_is_invalid_and_nan_safe() -> None:
    h, w = 3, 4
    x = torch.rand(1, 2, h, w)
    flow = const_flow(h, w, 0.0, 0.0)
    flow_valid = torch.ones(1, h, w, dtype=torch.bool)
    flow_valid[0, 1, 2] = False
    flow[0, :, 0, 0] = float("nan")
    out, valid = backward_warp(x, flow, valid=flow_valid)
    expected = torch.ones(1, h, w, dtype=torch.bool)
    expected[0, 1, 2] = False
    expected[0, 0, 0] = False
    assert torch.equal(valid, expected)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, :, 1, 1], x[:, :, 1, 1])


def test_warp_labels_nearest_and_ignore() -> None:
    labels = torch.tensor([[[0, 1, 2, 3], [4, 5, 6, IGN]]])
    out, valid = warp_labels(labels, const_flow(2, 4, 0.8, 0.0))  # rounds to +1; col 3 is outside
    assert out.dtype == torch.int64
    assert out.tolist() == [[[1, 2, 3, IGN], [5, 6, IGN, IGN]]]
    assert valid.tolist() == [[[True, True, True, False], [True, True, True, False]]]
    # a source ignore label passes through (valid geometry) and stays 255
    assert valid[0, 1, 2] and out[0, 1, 2] == IGN


def test_moving_object_occlusion_forward_backward() -> None:
    """Static background, an object moving 2 px right: frame t−k object at cols 2..4, frame t at
    cols 4..6. The background that was behind the object at t−k (frame t cols 2, 3) is
    disoccluded: its zero backward flow reads the object, whose forward flow is +2."""
    h, w = 2, 10
    flow_bwd = torch.zeros(1, 2, h, w)  # on frame t
    flow_bwd[0, 0, :, 4:7] = -2.0
    flow_fwd = torch.zeros(1, 2, h, w)  # on frame t−k
    flow_fwd[0, 0, :, 2:5] = 2.0
    labels_prev = torch.zeros(1, h, w, dtype=torch.long)
    labels_prev[:, :, 2:5] = 13  # car at t−k
    labels_cur = torch.zeros(1, h, w, dtype=torch.long)
    labels_cur[:, :, 4:7] = 13

    ok = forward_backward_consistent(flow_bwd, flow_fwd)
    expected = torch.ones(1, h, w, dtype=torch.bool)
    expected[:, :, 2:4] = False
    assert torch.equal(ok, expected)

    plain, plain_valid = warp_labels(labels_prev, flow_bwd)
    assert plain_valid.all()
    assert (plain != labels_cur).sum() == 2 * h  # the disoccluded pixels read the car
    out, valid = warp_labels(labels_prev, flow_bwd, fb_flow=flow_fwd)
    assert torch.equal(valid, expected)
    assert torch.equal(out[valid], labels_cur[valid])
    assert (out[~valid] == IGN).all()

    # an invalid forward flow where it is read also invalidates
    fb_valid = torch.ones(1, h, w, dtype=torch.bool)
    fb_valid[0, 0, 8] = False
    _, valid = backward_warp(
        labels_prev[:, None].float(), flow_bwd, fb_flow=flow_fwd, fb_valid=fb_valid
    )
    assert not valid[0, 0, 8] and valid[0, 1, 8]


def test_round_trip() -> None:
    h, w = 5, 7
    x = torch.rand(1, 3, h, w, dtype=torch.float64)
    # there(q) = x(q + (2, -1)), valid for q_x <= W - 3 and q_y >= 1
    there, ok1 = backward_warp(x, const_flow(h, w, 2, -1).double())
    # back(p) = there(p + (-2, 1)) = x(p), valid for p_x >= 2 and p_y <= H - 2
    back, ok2 = backward_warp(there, const_flow(h, w, -2, 1).double())
    keep = torch.zeros_like(ok2)
    keep[:, : h - 1, 2:] = ok2[:, : h - 1, 2:] & ok1[:, 1:, : w - 2]
    assert torch.equal(keep, ok2) and keep.sum() == (h - 1) * (w - 2)
    torch.testing.assert_close(back[:, :, keep[0]], x[:, :, keep[0]], rtol=0, atol=1e-12)
    labels = torch.randint(0, 19, (1, h, w))
    there_l, _ = warp_labels(labels, const_flow(h, w, 2, -1))
    back_l, _ = warp_labels(there_l, const_flow(h, w, -2, 1))
    assert torch.equal(back_l[keep], labels[keep])


def test_shape_errors() -> None:
    x = torch.rand(1, 1, 3, 4)
    with pytest.raises(ValueError, match="flow"):
        backward_warp(x, torch.zeros(1, 2, 3, 5))
    with pytest.raises(TypeError):
        backward_warp(x.long(), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="mode"):
        backward_warp(x, torch.zeros(1, 2, 3, 4), mode="bicubic")


def test_synthetic_clip_label_warp() -> None:
    from vidda.data.datasets.synthetic import SynthConfig, render_clip

    cfg = SynthConfig(height=64, width=128, frames_per_clip=3, clips={"train": 1})
    frames = render_clip(0, "source", cfg)
    for t in (1, 2):
        prev, cur = frames[t - 1], frames[t]
        flow = torch.from_numpy(cur.flow).permute(2, 0, 1)[None]
        flow_valid = torch.from_numpy(cur.flow_valid)[None]
        labels_prev = torch.from_numpy(prev.label.astype(np.int64))[None]
        out, valid = warp_labels(labels_prev, flow, flow_valid)
        assert valid.float().mean() > 0.5
        agree = out[valid] == torch.from_numpy(cur.label.astype(np.int64))[None][valid]
        assert agree.float().mean() >= 0.97


# --------------------------------------------------------------------------- original (compat)


def reference_backprop(flow: np.ndarray, im: np.ndarray) -> np.ndarray:
    """Pixel loop over the original ``backpropFlow``'s steps; flow [H, W, 2], im [H, W, C] → out
    [H, W, C]."""
    h, w, _ = flow.shape
    lim = 840 if h == 1024 else int(h * 0.7)
    f = flow.astype(np.float32).copy()
    for y in range(h):
        for x in range(w):
            ys, xs = np.float32(y) + f[y, x, 1], np.float32(x) + f[y, x, 0]
            if ys >= lim or ys < 0 or xs >= w or xs < 0:
                f[y, x] = 0
    src = {}
    for y in range(h):
        for x in range(w):
            src[y, x] = (int(np.float32(y) + f[y, x, 1]), int(np.float32(x) + f[y, x, 0]))
    readers: dict[tuple[int, int], int] = {}
    for s in src.values():
        readers[s] = readers.get(s, 0) + 1
    out = np.zeros_like(im)
    for (y, x), (sy, sx) in src.items():
        out[y, x] = im[sy, sx]
    for (sy, sx), n in readers.items():
        if n > 1:
            out[sy, sx] = 255
    out[(f == 0).all(axis=2)] = 255
    return out


def run_original(flow_hw2: torch.Tensor, x_hwc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, valid = original_warp(x_hwc.permute(2, 0, 1)[None], flow_hw2.permute(2, 0, 1)[None])
    return out[0].permute(1, 2, 0), valid[0]


def grid8x10(u: float, v: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    flow = torch.empty(8, 10, 2)
    flow[..., 0], flow[..., 1] = u, v
    x = ramp(8, 10)[0].permute(1, 2, 0)
    return flow, torch.cat([x, x + 100], dim=2)  # two channels, all values < 255


def test_original_bottom_limit() -> None:
    assert original_bottom_limit(1024) == 840
    assert original_bottom_limit(720) == 503  # 720 * 0.7 = 503.99999999999994
    assert original_bottom_limit(8) == 5
    assert original_bottom_limit(512) == 358


def test_original_u_plus_one() -> None:
    flow, x = grid8x10(1.0)
    out, valid = run_original(flow, x)
    top = slice(0, 5)  # H = 8 → limit 5: rows 5..7 read rows >= 5 and are invalid
    assert torch.equal(out[top, :9], x[top, 1:])
    assert (out[top, 9] == IGN).all() and (out[5:] == IGN).all()
    assert valid[top, :9].all() and not valid[top, 9].any() and not valid[5:].any()


def test_original_u_07_floor() -> None:
    flow, x = grid8x10(0.7)
    out, valid = run_original(flow, x)
    assert torch.equal(out[:5], x[:5])  # floor(x + 0.7) = x, no duplicate, no zero vector
    assert valid[:5].all() and not valid[5:].any()


def test_original_u_minus_03() -> None:
    flow, x = grid8x10(-0.3)
    out, valid = run_original(flow, x)
    assert torch.equal(out[:5, 1:], x[:5, :9])  # truncation of x - 0.3 → x - 1
    assert not valid[:, 0].any() and valid[:5, 1:].all()


def test_original_zero_flow_all_invalid() -> None:
    flow, x = grid8x10(0.0)
    out, valid = run_original(flow, x)
    assert not valid.any() and (out == IGN).all()


def test_original_bottom_limit_rows() -> None:
    flow, x = grid8x10(0.0, 1.0)  # rows y + 1 >= 5 (y >= 4) are zeroed → invalid
    out, valid = run_original(flow, x)
    assert torch.equal(out[:4], x[1:5])
    assert valid[:4].all() and not valid[4:].any()
    # the same at 720 rows: limit 503, so row 501 (reads 502) is the last valid one
    flow = torch.zeros(720, 2, 2)
    flow[..., 1] = 1.0
    x = torch.zeros(720, 2, 1)
    _, valid = run_original(flow, x)
    assert valid[:502].all() and not valid[502:].any()


def test_original_duplicate_marks_the_wrong_pixel() -> None:
    flow, x = grid8x10(1.0)
    flow[1, 3, 0] = 2.0  # (1, 3) and (1, 4) both read (1, 5)
    out, valid = run_original(flow, x)
    # the readers keep the value of the duplicated location ...
    assert torch.equal(out[1, 3], x[1, 5]) and torch.equal(out[1, 4], x[1, 5])
    assert valid[1, 3] and valid[1, 4]
    # ... while the output pixel *located at* (1, 5), which reads (1, 6), is marked
    assert not valid[1, 5] and (out[1, 5] == IGN).all()
    expected = torch.zeros(8, 10, dtype=torch.bool)
    expected[:5, :9] = True
    expected[1, 5] = False
    assert torch.equal(valid, expected)


def test_original_matches_loop_reference_on_random_flows() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        flow = (torch.randint(-12, 13, (8, 10, 2), generator=gen) / 4.0).float()
        flow[torch.rand(8, 10, generator=gen) < 0.15] = 0.0
        x = torch.randint(0, 200, (8, 10, 3), generator=gen).float()
        out, valid = run_original(flow, x)
        ref = reference_backprop(flow.numpy(), x.numpy())
        assert np.array_equal(out.numpy(), ref)
        assert np.array_equal(valid.numpy(), (ref != 255).all(axis=2))


def test_original_batched_flow_valid_and_dtype() -> None:
    flow_a, x = grid8x10(1.0)
    flow_b, _ = grid8x10(-0.3)
    flows = torch.stack([flow_a, flow_b]).permute(0, 3, 1, 2)
    xs = torch.stack([x, x + 1]).permute(0, 3, 1, 2).long()
    out, valid = original_warp(xs, flows)
    assert out.dtype == torch.int64
    for i, (f, xi) in enumerate(((flow_a, x), (flow_b, x + 1))):
        o, v = run_original(f, xi)
        assert torch.equal(out[i].permute(1, 2, 0).float(), o) and torch.equal(valid[i], v)
    # an invalid flow vector is zeroed like the original loader does → invalid
    flow_valid = torch.ones(2, 8, 10, dtype=torch.bool)
    flow_valid[0, 2, 2] = False
    _, valid2 = original_warp(xs, flows, flow_valid)
    assert not valid2[0, 2, 2] and valid[0, 2, 2]
    assert math.isclose(valid2.float().sum().item(), valid.float().sum().item() - 1)
