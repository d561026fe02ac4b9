"""The Cityscapes label tables against facts stated independently in the tests."""

from __future__ import annotations

import numpy as np
import pytest

from vidda import classes as C


def test_train_classes_and_palette():
    assert len(C.CLASSES) == C.NUM_CLASSES == 19
    assert C.CLASSES[0] == "road" and C.CLASSES[10] == "sky" and C.CLASSES[18] == "bicycle"
    assert C.PALETTE[0] == (128, 64, 128) and C.PALETTE[13] == (0, 0, 142)
    assert len(set(C.PALETTE)) == 19


def test_id_to_train_id_matches_the_official_mapping():
    # cityscapesScripts' labels.py, written out by hand.
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
    for label_id in range(256):
        assert C.ID_TO_TRAIN_ID[label_id] == expected.get(label_id, 255), label_id
    for label_id, train_id in expected.items():
        assert C.TRAIN_ID_TO_ID[train_id] == label_id


def test_benchmark_subsets():
    viper = {"road", "sidewalk", "building", "fence", "traffic light", "traffic sign", "vegetation",
             "terrain", "sky", "person", "car", "truck", "bus", "motorcycle",
             "bicycle"}  # fmt: skip
    synthia = {"road", "sidewalk", "building", "pole", "traffic light", "traffic sign",
               "vegetation", "sky", "person", "rider", "car"}  # fmt: skip
    assert {C.CLASSES[i] for i in C.class_subset("viper")} == viper
    assert {C.CLASSES[i] for i in C.class_subset("synthia_seq")} == synthia
    assert C.class_subset([13, 0]) == (0, 13)
    with pytest.raises(ValueError, match="unknown class subset 'gta'"):
        C.class_subset("gta")
    with pytest.raises(ValueError, match="19"):
        C.class_subset([0, 19])


def test_colorize_uses_palette_and_black_ignore():
    label = np.array([[0, 13], [255, 10]], dtype=np.uint8)
    rgb = C.colorize(label)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (128, 64, 128)
    assert tuple(rgb[0, 1]) == (0, 0, 142)
    assert tuple(rgb[1, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 1]) == (70, 130, 180)
