"""Importing released mmseg (DAFormer/HRDA/MIC) checkpoints and backbone files via the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidda.cli import main
from vidda.config import load_config
from vidda.engine.checkpoint import load_checkpoint
from vidda.models.backbones import build_backbone
from vidda.models.build import build_segmentor

CONFIG = """
model:
  segmentor: hrda
  backbone: mit_b0
  head: daformer
  head_kwargs: {embed_dims: 32, channels: 32}
  segmentor_kwargs: {hr_crop: [32, 32]}
"""


def mmseg_layout(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A vidda HRDA state dict written with the original's names (written here, by hand)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("decode_head."):
            key = "decode_head.head." + key[len("decode_head.") :]
        elif key.startswith("scale_attention."):
            key = "decode_head.scale_attention." + key[len("scale_attention.") :]
        out[prefix + key] = value.clone()
    return out


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(CONFIG)
    return path


def test_uda_checkpoint_student_and_teacher_import(tmp_path: Path, cfg_file: Path):
    cfg = load_config(cfg_file)
    torch.manual_seed(0)
    student, teacher = build_segmentor(cfg.model), build_segmentor(cfg.model)
    state = {
        **mmseg_layout(student, "model."),
        **mmseg_layout(teacher, "ema_model."),
        **{f"imnet_model.{k}": v for k, v in student.backbone.state_dict().items()},
    }
    src = tmp_path / "iter_40000.pth"
    torch.save({"meta": {"iter": 40000}, "state_dict": state}, src)
    for network, reference in (("student", student), ("teacher", teacher)):
        dst = tmp_path / f"{network}.pt"
        assert main(["weights", "convert", str(src), str(dst), "--config", str(cfg_file),
                     "--network", network]) == 0  # fmt: skip
        ckpt = load_checkpoint(dst)
        assert ckpt["config"]["model"]["backbone"] == "mit_b0"
        model = build_segmentor(cfg.model)
        model.load_state_dict(ckpt["models"]["student"])
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(model.eval().inference(x), reference.eval().inference(x))


def test_missing_key_and_shape_mismatch_are_named(tmp_path: Path, cfg_file: Path, capsys):
    cfg = load_config(cfg_file)
    state = mmseg_layout(build_segmentor(cfg.model), "model.")
    del state["model.decode_head.scale_attention.conv_seg.weight"]
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    assert main(["weights", "convert", str(tmp_path / "bad.pth"), str(tmp_path / "o.pt"),
                 "--config", str(cfg_file)]) == 2  # fmt: skip
    assert "scale_attention.conv_seg.weight" in capsys.readouterr().err
    state = mmseg_layout(build_segmentor(cfg.model), "")
    state["backbone.patch_embed1.proj.weight"] = torch.zeros(1, 3, 7, 7)
    torch.save(state, tmp_path / "shape.pth")
    assert main(["weights", "convert", str(tmp_path / "shape.pth"), str(tmp_path / "o.pt"),
                 "--config", str(cfg_file)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "backbone.patch_embed1.proj.weight" in err and "(1, 3, 7, 7)" in err
    assert not (tmp_path / "o.pt").exists()
    assert main(["weights", "convert", str(tmp_path / "shape.pth"), str(tmp_path / "o.pt")]) == 2
    assert "give --config" in capsys.readouterr().err


def test_backbone_files_become_pretrained_weights(tmp_path: Path, capsys):
    torch.manual_seed(1)
    mit = build_backbone("mit_b1")
    official = {**mit.state_dict(), "head.weight": torch.zeros(1000, 512),
                "head.bias": torch.zeros(1000)}  # fmt: skip
    torch.save(official, tmp_path / "mit_b1.pth")
    assert main(["weights", "convert", str(tmp_path / "mit_b1.pth"), str(tmp_path / "b1.pt")]) == 0
    assert "mit_b1 backbone" in capsys.readouterr().out  # variant guessed from the tensors
    again = build_backbone("mit_b1")
    again.load_state_dict(torch.load(tmp_path / "b1.pt"))
    for key, value in mit.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    (tmp_path / "x.yaml").write_text(f"model: {{backbone: mit_b1, pretrained: {tmp_path}/b1.pt}}")
    model = build_segmentor(load_config(tmp_path / "x.yaml").model)
    assert torch.equal(model.backbone.block1[0].attn.q.weight, mit.block1[0].attn.q.weight)
