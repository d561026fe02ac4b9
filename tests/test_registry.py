"""The name → component lookup every builder uses, and the error an unknown name gives."""

from __future__ import annotations

import pytest

from vidda.config import ConfigError
from vidda.config.registry import lookup
from vidda.data.layout import DatasetError
from vidda.errors import UserError

TABLE = {"beta": 2, "alpha": 1, "gamma": 3}


def test_known_name_returns_its_entry():
    assert lookup(TABLE, "alpha", "model.backbone") == 1
    assert lookup(TABLE, "gamma", "") == 3


def test_unknown_name_names_key_value_and_known_names_sorted():
    with pytest.raises(ConfigError) as err:
        lookup(TABLE, "delta", "model.backbone")
    assert str(err.value) == "model.backbone: unknown backbone 'delta'; known: alpha, beta, gamma"
    assert isinstance(err.value, UserError)


def test_kind_and_error_class_can_be_given():
    with pytest.raises(DatasetError, match=r"^data\.source\.type: unknown dataset type 'kitti'; "
                       r"known: alpha, beta, gamma$"):  # fmt: skip
        lookup(TABLE, "kitti", "data.source.type", "dataset type", DatasetError)
    with pytest.raises(ConfigError, match=r"^unknown head 'x'; known: alpha, beta, gamma$"):
        lookup(TABLE, "x", "", what="head")


def test_unknown_names_from_the_builders(tmp_path):
    from vidda.config.schema import DatasetConfig, ModelConfig
    from vidda.data.build import dataset_layout
    from vidda.models.backbones import UnknownModelError, build_backbone
    from vidda.models.build import build_segmentor
    from vidda.models.heads import build_head

    with pytest.raises(UnknownModelError, match=r"^unknown backbone 'mit_b9'; known: mit_b0, "):
        build_backbone("mit_b9")
    with pytest.raises(UnknownModelError, match=r"^unknown head 'fcn'; known: daformer, "):
        build_head("fcn", (8, 16))
    with pytest.raises(ConfigError, match=r"^model\.segmentor: unknown segmentor 'pspnet'; "
                       r"known: accel, encoder_decoder, hrda$"):  # fmt: skip
        build_segmentor(ModelConfig(segmentor="pspnet"), load_pretrained=False)
    known = "bddvid, cityscapes-seq, synthetic, synthia-seq, viper-seq"
    with pytest.raises(DatasetError, match=rf"^data\.val\.type: unknown dataset type 'kitti'; "
                       rf"known: {known}$"):  # fmt: skip
        dataset_layout(DatasetConfig(type="kitti", root=str(tmp_path)), "data.val")
