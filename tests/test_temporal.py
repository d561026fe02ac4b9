"""Temporal consistency (``vidda.temporal``) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidda.temporal import TemporalConsistency


def const_flow(h: int, w: int, u: float, v: float, batch: int | None = None) -> torch.Tensor:
    flow = torch.zeros(2, h, w)
    flow[0], flow[1] = u, v
    return flow if batch is None else flow.expand(batch, 2, h, w).clone()


def test_identical_static_predictions_agree_fully():
    pred = torch.randint(0, 19, (2, 12, 16), generator=torch.Generator().manual_seed(0))
    tc = TemporalConsistency()
    tc.update(pred, pred.clone(), const_flow(12, 16, 0, 0, batch=2))
    r = tc.compute()
    assert r["pixel_acc"] == 100.0 and r["miou"] == 100.0
    assert r["pixels"] == 2 * 12 * 16 and r["coverage"] == 1.0 and r["pairs"] == 2


def test_one_pixel_shift_hand_computed():
    # Frame t−1: [0 0 1 1]; the scene moves one pixel to the right, so frame t is [0 0 0 1]
    # (its first pixel is new and happens to be 0). Pixel x of t shows x − 1 of t−1: u = −1.
    prev = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 0, 1]])

    right = TemporalConsistency()
    right.update(pred, prev, const_flow(1, 4, -1, 0))
    r = right.compute()
    assert r["pixel_acc"] == 100.0 and r["miou"] == 100.0
    assert r["pixels"] == 3 and r["coverage"] == pytest.approx(3 / 4)  # x = 0 comes from outside

    zero = TemporalConsistency()
    zero.update(pred, prev, const_flow(1, 4, 0, 0))
    z = zero.compute()
    # warped = [0 0 1 1] vs pred [0 0 0 1]: 3 of 4 agree; IoU(0) = 2/3, IoU(1) = 1/2
    assert z["pixel_acc"] == pytest.approx(75.0)
    assert z["miou"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert z["pixels"] == 4
    assert z["iou"][0] == pytest.approx(2 / 3) and z["iou"][1] == pytest.approx(0.5)
    assert math.isnan(z["iou"][2])


def test_two_dimensional_shift_needs_the_right_flow():
    rng = np.random.default_rng(1)
    prev = rng.integers(0, 5, (20, 24))
    # content moves by (dx, dy) = (3, 2): frame t at (y, x) shows frame t−1 at (y − 2, x − 3)
    pred = np.roll(prev, (2, 3), axis=(0, 1))
    good, bad = TemporalConsistency(num_classes=5), TemporalConsistency(num_classes=5)
    good.update(pred, prev, const_flow(20, 24, -3, -2))
    bad.update(pred, prev, const_flow(20, 24, 0, 0))
    assert good.compute()["pixel_acc"] == 100.0
    assert good.compute()["pixels"] == (20 - 2) * (24 - 3)
    assert bad.compute()["pixel_acc"] < 50.0


def test_invalid_flow_and_ignore_pixels_are_excluded():
    prev = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 0, 1]])
    valid = torch.tensor([[True, True, False, True]])  # the one disagreeing pixel
    tc = TemporalConsistency()
    counted = tc.update(pred, prev, const_flow(1, 4, 0, 0), valid)
    assert tc.compute()["pixel_acc"] == 100.0 and tc.compute()["pixels"] == 3
    assert counted.tolist() == [[[True, True, False, True]]]

    ignored = TemporalConsistency()
    ignored.update(torch.tensor([[0, 0, 255, 1]]), prev, const_flow(1, 4, 0, 0))
    assert ignored.compute()["pixel_acc"] == 100.0 and ignored.compute()["pixels"] == 3


def test_batch_equals_separate_updates_and_numpy_inputs():
    g = torch.Generator().manual_seed(2)
    pred, prev = torch.randint(0, 19, (3, 8, 10), generator=g), torch.randint(0, 19, (3, 8, 10),
                                                                              generator=g)
    flow = torch.randn(3, 2, 8, 10, generator=g) * 2
    batched = TemporalConsistency()
    batched.update(pred, prev, flow)
    single = TemporalConsistency()
    for i in range(3):
        single.update(pred[i].numpy(), prev[i].numpy(), flow[i].numpy())
    assert np.array_equal(batched.matrix.matrix, single.matrix.matrix)
    assert batched.compute()["pairs"] == single.compute()["pairs"] == 3
    merged = TemporalConsistency().merge(batched).merge(single)
    assert merged.compute()["pixels"] == 2 * batched.compute()["pixels"]


def test_empty_and_bad_shapes():
    assert math.isnan(TemporalConsistency().compute()["pixel_acc"])
    with pytest.raises(ValueError, match="differ"):
        TemporalConsistency().update(torch.zeros(4, 4, dtype=torch.long),
                                     torch.zeros(4, 5, dtype=torch.long), const_flow(4, 4, 0, 0))


def test_class_subset_drops_pixels_predicted_outside_it():
    """VIPER's subset excludes train (16): pixels where either map says train are left out."""
    prev = torch.zeros(4, 4, dtype=torch.long)  # road everywhere at t-1
    pred = prev.clone()
    pred[0] = 16  # first row predicted "train" at t (disagreement on 4 pixels)
    pred[1, :2] = 13  # two car pixels (disagreement inside the subset)
    tc = TemporalConsistency()
    tc.update(pred, prev, torch.zeros(2, 4, 4))
    full = tc.compute()
    assert full["pixels"] == 16 and full["pixel_acc"] == pytest.approx(100 * 10 / 16)
    viper = tc.compute("viper")
    assert viper["pixels"] == 12 and viper["pixel_acc"] == pytest.approx(100 * 10 / 12)
    # road IoU 10 / 12, car IoU 0 / 2 → mIoU over the classes present
    assert viper["miou"] == pytest.approx(100 * (10 / 12 + 0) / 2)
