"""Tests for ``vidda.uda.refine`` on small hand-made label maps."""

from __future__ import annotations

import pytest
import torch

from vidda.uda.refine import (
    COMMON_CLASSES,
    PL,
    RARE_CLASSES,
    STRATEGIES,
    STUFF_CLASSES,
    THING_CLASSES,
    RefineSchedule,
    class_restrict,
    consistency_confidence,
    consistency_filter,
    fill_holes,
    fill_region,
    fill_row_limit,
    max_confidence,
    oracle,
    rare_class_filter,
    refine,
    warp_frame,
    warp_pseudo_label,
)

IGN = 255


def lab(*rows: list[int]) -> torch.Tensor:
    """int64 [1, H, W] from rows."""
    return torch.tensor([list(r) for r in rows], dtype=torch.long)[None]


def probs_with_conf(label: torch.Tensor, conf: torch.Tensor, c: int = 19) -> torch.Tensor:
    """[B, C, H, W] whose argmax is ``label`` with max probability ``conf`` (rest spread evenly)."""
    rest = ((1 - conf) / (c - 1))[:, None].expand(-1, c, -1, -1).clone()
    return rest.scatter(1, label[:, None], conf[:, None])


# --------------------------------------------------------------------------- constants


def test_class_groups() -> None:
    assert set(RARE_CLASSES) == {3, 5, 12, 16, 18, 17, 7, 6, 15, 4, 11}
    assert set(RARE_CLASSES) | set(COMMON_CLASSES) == set(range(19))
    assert set(THING_CLASSES) == set(range(11, 19))
    assert set(STUFF_CLASSES) == set(range(11))
    order = ("consis", "max_conf", "warp_frame", "consis_conf", "rare_class", "oracle")
    assert STRATEGIES[:6] == order


# --------------------------------------------------------------------------- hole filling


def test_fill_row_limit() -> None:
    assert fill_row_limit(720) == 503  # int(720 * 0.7) in floating point
    assert fill_row_limit(1024) == 800
    assert fill_row_limit(1024, source_crop_height=1024) == 800
    assert fill_row_limit(720, source_crop_height=1024) == 800  # the *source* height decides
    assert fill_row_limit(512, source_crop_height=512) == 358


@pytest.mark.parametrize(("height", "source", "limit"), [(720, None, 503), (1024, 1024, 800)])
def test_fill_region_geometry(height: int, source: int | None, limit: int) -> None:
    region = fill_region(height, 300, source)
    assert region.shape == (height, 300)
    assert region[limit:].all()
    assert region[:limit, :100].all() and region[:limit, 200:].all()
    assert not region[:limit, 100:200].any()
    assert fill_region(4, 50).all()  # narrower than 2 · 100: entirely side band


def test_fill_holes_bottom_and_all() -> None:
    h, w = 10, 6  # row limit int(10 · 0.7) = 7; side bands of 1 column
    warped_label = torch.full((1, h, w), 2, dtype=torch.long)
    warped_weight = torch.full((1, h, w), 0.5)
    warped_label[0, 3, 3] = IGN  # an invalid warp in the middle: not in the band
    warped_weight[0, 3, 3] = 0.0
    warped_label[0, 8, 3] = IGN  # an invalid warp in the bottom band
    warped_weight[0, 8, 3] = 0.0
    warped_weight[0, 9, 2] = 0.0  # a valid warp with weight 0 in the band is also filled
    warped_weight[0, 4, 0] = 0.0  # left band
    cur_label = torch.full((1, h, w), 7, dtype=torch.long)
    cur_weight = torch.full((1, h, w), 0.9)
    label, weight = fill_holes(warped_label, warped_weight, cur_label, cur_weight, "bottom", side=1)
    filled = torch.zeros(1, h, w, dtype=torch.bool)
    filled[0, 8, 3] = filled[0, 9, 2] = filled[0, 4, 0] = True
    assert torch.equal(label == 7, filled) and torch.equal(weight == 0.9, filled)
    assert label[0, 3, 3] == IGN and weight[0, 3, 3] == 0
    assert warped_label[0, 8, 3] == IGN  # inputs untouched

    label, weight = fill_holes(warped_label, warped_weight, cur_label, cur_weight, "all")
    assert torch.equal(label == 7, warped_label == IGN)
    assert weight[0, 3, 3] == pytest.approx(0.9) and weight[0, 9, 2] == 0.0
    with pytest.raises(ValueError):
        fill_holes(warped_label, warped_weight, cur_label, cur_weight, "top")


# --------------------------------------------------------------------------- strategies


def test_consistency_filter_ignore_and_weight() -> None:
    label = lab([1, 2, IGN])
    weight = torch.tensor([[[0.3, 0.3, 0.0]]])
    cur = lab([1, 3, 4])
    out, w = consistency_filter(label, weight, cur)
    assert out.tolist() == [[[1, IGN, IGN]]]
    assert w.tolist() == [[[pytest.approx(0.3), 0.0, 0.0]]]  # kept pixel keeps the warped weight


def test_max_confidence_ties_go_to_warped() -> None:
    warped = lab([1, 1, 1, 1])
    cur = lab([2, 2, 2, 2])
    c_w = torch.tensor([[[0.5, 0.7, 0.6, 0.9]]])
    c_t = torch.tensor([[[0.5, 0.6, 0.7, 0.1]]])
    valid = torch.tensor([[[True, True, True, False]]])
    w_w, w_t = torch.full((1, 1, 4), 0.2), torch.full((1, 1, 4), 0.8)
    out, w = max_confidence(
        warped, w_w, probs_with_conf(warped, c_w), cur, w_t, probs_with_conf(cur, c_t), valid
    )
    # tie → warped; warped more confident → warped; current more confident → current;
    # invalid warped probabilities → current
    assert out.tolist() == [[[1, 1, 2, 2]]]
    assert w.tolist() == [[[pytest.approx(0.2)] * 2 + [pytest.approx(0.8)] * 2]]
    # the original's marker: invalid warped probabilities hold 255 in every channel
    marked = probs_with_conf(warped, c_w)
    marked[..., 3] = 255.0
    out2, _ = max_confidence(warped, w_w, marked, cur, w_t, probs_with_conf(cur, c_t))
    assert torch.equal(out, out2)


def test_warp_frame_threshold() -> None:
    label = lab([1, 2, 3])
    weight = torch.full((1, 1, 3), 0.5)
    probs = probs_with_conf(label, torch.tensor([[[0.3, 0.6, 0.2]]]))
    valid = torch.tensor([[[True, True, False]]])
    out, w = warp_frame(label, weight, probs, 0.0, valid)
    assert torch.equal(out, label) and torch.equal(w, weight)  # τ = 0 never fires
    out, w = warp_frame(label, weight, probs, 0.5, valid)
    assert out.tolist() == [[[IGN, 2, 3]]] and w.tolist() == [[[0.0, 0.5, 0.5]]]


def test_consistency_confidence() -> None:
    label = lab([1, 1, 2, 1])
    weight = torch.full((1, 1, 4), 0.5)
    cur = lab([1, 1, 1, 1])
    cur_probs = probs_with_conf(cur, torch.tensor([[[0.9, 0.4, 0.9, 0.7]]]))
    out, w = consistency_confidence(label, weight, cur, cur_probs, threshold=0.5)
    assert out.tolist() == [[[1, IGN, IGN, 1]]] and w.tolist() == [[[0.5, 0.0, 0.0, 0.5]]]


def test_rare_class_filter_rare_vs_common() -> None:
    pole, wall, road, building = 5, 3, 0, 2
    cur = lab([pole, road, pole, road, pole, road, wall])
    warped = lab([road, pole, wall, building, IGN, road, wall])
    out = rare_class_filter(cur, warped)
    # rare beats common either way; rare vs rare and common vs common disagree → IGN;
    # 255 counts as common; agreement keeps the label
    assert out.tolist() == [[[pole, pole, IGN, IGN, pole, road, wall]]]
    # the unit-test mode: the rarer label wins when it is rare (wall is rarer than pole)
    out = rare_class_filter(cur, warped, rare_common_compare=False)
    assert out.tolist() == [[[pole, pole, wall, IGN, pole, road, wall]]]


def test_oracle_uses_gt() -> None:
    label = lab([1, 2, 3, IGN])
    weight = torch.full((1, 1, 4), 0.5)
    gt = lab([1, 5, IGN, IGN])
    out, w = oracle(label, weight, gt)
    assert out.tolist() == [[[1, IGN, IGN, IGN]]] and w.tolist() == [[[0.5, 0, 0, 0]]]
    out4, _ = oracle(label, weight, gt[:, None])
    assert torch.equal(out, out4)


def test_class_restrict() -> None:
    label = lab([0, 11, 13, IGN, 10, 18])
    weight = torch.full((1, 1, 6), 0.5)
    out, w = class_restrict(label, weight, "thing")
    assert out.tolist() == [[[IGN, 11, 13, IGN, IGN, 18]]]
    assert w.tolist() == [[[0.0, 0.5, 0.5, 0.5, 0.0, 0.5]]]
    out, _ = class_restrict(label, weight, "stuff")
    assert out.tolist() == [[[0, IGN, IGN, IGN, 10, IGN]]]


# --------------------------------------------------------------------------- pipeline


def make_pair() -> tuple[PL, PL, torch.Tensor]:
    """Pixel 0: current more confident, warped label right; pixel 1: rare current vs invalid warp;
    pixel 2: agreement."""
    cur_label = lab([1, 5, 8])
    warped_label = lab([2, IGN, 8])
    cur = PL(
        cur_label,
        torch.full((1, 1, 3), 0.8),
        probs_with_conf(cur_label, torch.tensor([[[0.9, 0.9, 0.9]]])),
    )
    warped_probs = probs_with_conf(warped_label.clamp(max=18), torch.tensor([[[0.5, 0.5, 0.95]]]))
    valid = torch.tensor([[[True, False, True]]])
    warped = PL(warped_label, torch.tensor([[[0.3, 0.0, 0.3]]]), warped_probs, valid)
    gt = lab([2, 5, 8])
    return cur, warped, gt


def test_refine_fixed_order_regardless_of_list_order() -> None:
    cur, warped, gt = make_pair()
    # spec order: max_conf (pixel 0 → current 1, pixel 1 → current 5) then oracle (1 != gt 2)
    a = refine(cur, warped, ["oracle", "max_conf"], gt)
    b = refine(cur, warped, ["max_conf", "oracle"], gt)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].tolist() == [[[IGN, 5, 8]]]
    assert a[1].tolist() == [[[0.0, pytest.approx(0.8), pytest.approx(0.3)]]]
    # oracle alone keeps the warped pixel 0 (= gt) — so the order above mattered
    assert refine(cur, warped, ["oracle"], gt)[0].tolist() == [[[2, IGN, 8]]]


def test_refine_rare_class_weight_and_consis() -> None:
    cur, warped, _ = make_pair()
    label, weight = refine(cur, warped, ["rare_class"])
    # pixel 0: common vs common → IGN; pixel 1: rare current vs invalid warp → 5, but the weight
    # stays the warped 0; pixel 2: agreement
    assert label.tolist() == [[[IGN, 5, 8]]]
    assert weight.tolist() == [[[0.0, 0.0, pytest.approx(0.3)]]]
    label, weight = refine(cur, warped, ["consis"])
    assert label.tolist() == [[[IGN, IGN, 8]]] and weight.tolist()[0][0][:2] == [0.0, 0.0]
    label, _ = refine(cur, warped, [])  # "warp frame" without filtering: the warped label
    assert torch.equal(label, warped.label)


def test_refine_fill_then_consis() -> None:
    cur, warped, _ = make_pair()
    # fill "all": the invalid pixel 1 takes the current label 5 and weight 0.8, then consis
    label, weight = refine(cur, warped, ["consis"], fill="all")
    assert label.tolist() == [[[IGN, 5, 8]]]
    assert weight.tolist() == [[[0.0, pytest.approx(0.8), pytest.approx(0.3)]]]


def test_refine_errors() -> None:
    cur, warped, _ = make_pair()
    with pytest.raises(ValueError, match="unknown"):
        refine(cur, warped, ["consistency"])
    with pytest.raises(ValueError, match="ground truth"):
        refine(cur, warped, ["oracle"])
    with pytest.raises(ValueError, match="probabilities"):
        refine(PL(cur.label, cur.weight), warped, ["max_conf"])
    with pytest.raises(ValueError, match="exclusive"):
        refine(cur, warped, ["class_thing", "class_stuff"])


@pytest.mark.parametrize("original", [False, True])
def test_warp_pseudo_label(original: bool) -> None:
    h, w = 8, 10  # original bottom limit 5
    label = torch.arange(h * w).view(1, h, w) % 19
    weight = torch.full((1, h, w), 0.25)
    probs = probs_with_conf(label, torch.full((1, h, w), 0.6))
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0] = 1.0
    out = warp_pseudo_label(PL(label, weight, probs), flow, original=original)
    ok = out.valid
    assert ok is not None
    assert torch.equal(ok[0, :5, :9], torch.ones(5, 9, dtype=torch.bool))
    assert not ok[0, :, 9].any()
    assert torch.equal(out.label[0, :5, :9], label[0, :5, 1:])
    assert (out.label[~ok] == IGN).all() and (out.weight[~ok] == 0).all()
    assert (out.weight[ok] == 0.25).all()
    assert out.probs is not None
    torch.testing.assert_close(out.probs[0, :, :5, :9], probs[0, :, :5, 1:])
    if original:
        assert not ok[0, 5:].any()  # rows reading rows >= 5
        assert (out.probs[0, :, ~ok[0]] == 255).all()  # the original's marker
    else:
        assert ok[0, 5:, :9].all()


def test_refine_schedule() -> None:
    sched = RefineSchedule()
    assert (sched.l_warp_lambda, sched.l_mix_lambda, sched.begin) == (1.0, 0.0, 1500)
    assert not sched.active(1499) and sched.active(1500)
    assert sched.target_loss_weights(0) == (0.0, 0.0)  # no target loss before step 1500
    assert sched.target_loss_weights(1500) == (1.0, 0.0)
    assert not sched.mix_active()
    baseline = RefineSchedule(l_warp_lambda=0.0, l_mix_lambda=1.0)
    assert not baseline.active(10**6) and baseline.mix_active()
    with pytest.raises(ValueError):
        RefineSchedule(begin=-1)
