"""``eval.temporal``: temporal consistency beside mIoU in the evaluator and `vidda eval`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidda.cli import main
from vidda.config import load_config, merge_overrides
from vidda.config.load import ConfigError
from vidda.config.schema import DatasetConfig, EvalConfig
from vidda.config.validate import check_eval_data
from vidda.data.build import build_dataset
from vidda.data.datasets.synthetic import SynthConfig, generate
from vidda.engine.evaluator import evaluate
from vidda.engine.run import train

CONFIGS = Path(__file__).parents[1] / "configs" / "demo"
K = 19


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SynthConfig(height=32, width=64, clips={"train": 1, "val": 1}, frames_per_clip=4)
    return generate(tmp_path_factory.mktemp("synth"), seed=5, cfg=cfg)


def _val(synth: Path):
    cfg = DatasetConfig(type="synthetic", root=str(synth), domain="target", split="val",
                        offsets=[-1, 0], flow_offsets=[0])  # fmt: skip
    return build_dataset(cfg, train=False, key="data.val")


def _onehot(label: torch.Tensor) -> torch.Tensor:
    """[B, H, W] ints (255 → class 0) → [B, K, H, W] logits whose argmax is the label."""
    return torch.nn.functional.one_hot(label.long().clamp(max=K - 1) % K, K).permute(0, 3, 1, 2)


def test_constant_predictions_agree_everywhere_the_flow_is_valid(synth: Path) -> None:
    val = _val(synth)

    def predict(batch, offset=0):
        return _onehot(torch.full(batch["frames"].shape[:1] + batch["frames"].shape[-2:], 7))

    result = evaluate(predict, val, EvalConfig(temporal=True), progress=False, offsets=[-1, 0])
    tc = result["temporal"]
    assert tc["pixel_acc"] == pytest.approx(100.0) and tc["miou"] == pytest.approx(100.0)
    assert tc["pairs"] == len(val)
    # counted pixels = valid flow whose sample point lies inside frame t-1, by hand from the files
    expected = 0
    for i in range(len(val)):
        flow = val[i]["flows"][-1].numpy()  # [2, H, W] of the key frame
        valid = val[i]["flow_valid"][-1].numpy()
        h, w = valid.shape
        ys, xs = np.mgrid[0:h, 0:w]
        x, y = xs + flow[0], ys + flow[1]
        inside = (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
        expected += int((valid & inside).sum())
    assert tc["pixels"] == pytest.approx(expected, abs=len(val) * 4)  # border rounding only
    assert set(result) == {"standard", "uvda", "temporal", "label_free"}


def test_disagreeing_predictions_score_zero_and_offsets_are_honoured(synth: Path) -> None:
    val = _val(synth)
    seen: list[int] = []

    def predict(batch, offset=0):
        seen.append(offset)
        cls = 2 if offset == 0 else 8
        return _onehot(torch.full(batch["frames"].shape[:1] + batch["frames"].shape[-2:], cls))

    tc = evaluate(predict, val, EvalConfig(temporal=True), progress=False,
                  offsets=[-1, 0])["temporal"]  # fmt: skip
    assert tc["pixel_acc"] == 0.0 and tc["miou"] == 0.0 and tc["pixels"] > 0
    assert sorted(set(seen)) == [-1, 0]
    assert "temporal" not in evaluate(predict, val, EvalConfig(), progress=False)


def test_ground_truth_predictions_follow_the_exact_flow(synth: Path) -> None:
    """Predicting each frame's own label: the agreement is the data's warp consistency (>= 95 %)."""
    val = _val(synth)

    def label_file(name: str, back: int) -> torch.Tensor:
        clip, stem = name.split("/")
        frame = int(stem.rsplit("_", 1)[1]) - back
        path = synth / "target" / "val" / "labels" / clip / f"{clip}_{frame:06d}_labelTrainIds.png"
        return torch.from_numpy(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).long()[None]

    def predict(batch, offset=0):
        return _onehot(label_file(batch["name"][0], -offset))

    tc = evaluate(predict, val, EvalConfig(temporal=True), progress=False,
                  offsets=[-1, 0])["temporal"]  # fmt: skip
    assert tc["pixel_acc"] >= 95.0

    def still(batch, offset=0):  # frame t-1 predicted where frame t-2 was: motion is ignored
        return _onehot(label_file(batch["name"][0], 0 if offset == 0 else 2))

    worse = evaluate(still, val, EvalConfig(temporal=True), progress=False,
                     offsets=[-1, 0])["temporal"]  # fmt: skip
    assert worse["pixel_acc"] < tc["pixel_acc"]


def test_config_check_names_the_missing_frames(synth: Path) -> None:
    base = load_config(CONFIGS / "source_only.yaml", [f"data.val.root={synth}"])
    bad = [["eval.temporal=true"], ["eval.temporal=true", "data.val.offsets=[-1,0]"]]
    messages = [r"eval.temporal.*data.val.offsets", r"eval.temporal.*flow_offsets"]
    for overrides, message in zip(bad, messages, strict=True):
        with pytest.raises(ConfigError, match=message):
            check_eval_data(merge_overrides(base, overrides))
        with pytest.raises(ConfigError, match=message):  # loading refuses it too
            load_config(CONFIGS / "source_only.yaml", [f"data.val.root={synth}", *overrides])


def test_vidda_eval_prints_and_writes_the_temporal_consistency(synth, tmp_path, capsys) -> None:
    common = [f"data.{k}.root={synth}" for k in ("source", "target", "val")] + [
        "data.source.crop_size=[32,32]", "data.target.crop_size=[32,32]", "data.num_workers=0",
        "model.head_kwargs.embed_dim=32", "data.val.offsets=[-1,0]", "data.val.flow_offsets=[0]",
        "eval.temporal=true",
    ]  # fmt: skip
    cfg = load_config(CONFIGS / "source_only.yaml", [*common, "schedule.iters=2"])
    result = train(cfg, tmp_path / "run", progress=False)
    assert 0.0 <= result["eval"]["temporal"]["pixel_acc"] <= 100.0
    argv = ["eval", str(CONFIGS / "source_only.yaml"), str(tmp_path / "run" / "latest.pt"),
            *common, "--out", str(tmp_path / "ev"), "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "== temporal consistency" in capsys.readouterr().out
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert doc["results"]["temporal"]["pairs"] == len(_val(synth))
    bad = [a for a in argv if a != "data.val.flow_offsets=[0]"]
    assert main(bad) == 2
    assert "eval.temporal" in capsys.readouterr().err
