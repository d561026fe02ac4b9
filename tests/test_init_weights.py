"""``model.init_checkpoint``: a run starts from another run's student weights."""

from __future__ import annotations

import pytest
import torch

from vidda.config.load import merge_overrides
from vidda.config.schema import Config
from vidda.engine.checkpoint import CheckpointError, save_checkpoint
from vidda.engine.init_weights import init_from_checkpoint
from vidda.models.build import build_segmentor

TINY = ["model.backbone=mit_b0", "model.head=segformer", "model.head_kwargs={embed_dim: 16}",
        "model.backbone_kwargs={embed_dims: [8, 16, 32, 64], num_heads: [1, 1, 2, 4]}"]


def _model(*extra: str):
    cfg = merge_overrides(Config(), [*TINY, *extra])
    return build_segmentor(cfg.model, compat=cfg.compat)


def test_student_weights_are_loaded_and_accel_takes_them_for_its_shared_network(tmp_path):
    torch.manual_seed(0)
    trained = _model()
    path = tmp_path / "src.pt"
    save_checkpoint({"models": {"student": trained.state_dict()},
                     "config": {"model": {"backbone": "mit_b0"}}}, path)  # fmt: skip
    torch.manual_seed(1)
    fresh = _model()
    assert init_from_checkpoint(fresh, path) == "the student"
    for k, v in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    accel = _model("model.segmentor=accel", "model.accel.base=encoder_decoder")
    fusion = accel.fusion.weight.detach().clone()
    assert init_from_checkpoint(accel, path) == "ACCEL's shared network"
    for k, v in trained.state_dict().items():
        assert torch.equal(accel.segmentor.state_dict()[k], v), k
    assert torch.equal(accel.fusion.weight, fusion)


def test_a_checkpoint_of_another_model_names_keys_and_what_it_was(tmp_path):
    other = _model("model.num_classes=7")
    path = tmp_path / "other.pt"
    save_checkpoint({"models": {"student": other.state_dict()},
                     "config": {"model": {"backbone": "mit_b0", "head": "segformer",
                                          "segmentor": "encoder_decoder", "num_classes": 7},
                                "method": {"name": "source_only"}}}, path)  # fmt: skip
    with pytest.raises(CheckpointError) as err:
        init_from_checkpoint(_model(), path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "source_only with mit_b0+segformer (encoder_decoder, 7 classes)" in msg
    assert "shape (" in msg and "(7," in msg
    save_checkpoint({"models": {}}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="holds no student weights"):
        init_from_checkpoint(_model(), tmp_path / "empty.pt")
