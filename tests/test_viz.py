"""Flow colour coding against hand-computed points of the Middlebury colour wheel; mosaics."""

from __future__ import annotations

import numpy as np
import pytest

from vidda.viz import flow_to_color, flow_wheel, mosaic


def test_wheel_has_55_entries_starting_at_red():
    wheel = flow_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # after the 15 red→yellow steps
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])  # after 6 more yellow→green steps


def test_directions_and_magnitudes():
    flow = np.array([[[0, 0], [1, 0], [0, 1], [-1, 0], [0.5, 0], [2, 0]]], np.float32)
    rgb = flow_to_color(flow, max_norm=1.0)[0]
    assert tuple(rgb[0]) == (255, 255, 255)  # no motion: white
    assert tuple(rgb[1]) == (255, 0, 0)  # right, full magnitude: red
    # down: angle index 13.5 of 54 → between wheel[13] and wheel[14] on red→yellow
    assert tuple(rgb[2]) == (255, round(255 * 13.5 / 15), 0)
    # left: index 27, two steps into the 11-step cyan→blue segment
    assert tuple(rgb[3]) == (0, round(255 * (1 - 2 / 11)), 255)
    assert tuple(rgb[4]) == (255, 128, 128)  # half magnitude: half-way to white
    assert tuple(rgb[5]) == (191, 0, 0)  # beyond max_norm: darkened to 75 %


def test_invalid_pixels_are_black_and_default_scale_is_the_max():
    flow = np.array([[[3, 0], [100, 0]]], np.float32)
    rgb = flow_to_color(flow, valid=np.array([[True, False]]))
    assert tuple(rgb[0, 0]) == (255, 0, 0)  # the largest valid vector defines full saturation
    assert tuple(rgb[0, 1]) == (0, 0, 0)


def test_mosaic_places_tiles_and_rejects_mixed_sizes():
    a = np.zeros((2, 3, 3), np.uint8)
    b = np.full((2, 3, 3), 7, np.uint8)
    out = mosaic([[a, b]], pad=1)
    assert out.shape == (4, 9, 3)
    assert (out[1:3, 1:4] == 0).all() and (out[1:3, 5:8] == 7).all() and (out[0] == 255).all()
    with pytest.raises(ValueError, match="size"):
        mosaic([[a, np.zeros((3, 3, 3), np.uint8)]])
