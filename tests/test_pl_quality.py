"""Pseudo-label quality of a trained run's teacher on target train (``vidda demo --video``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vidda.config import load_config
from vidda.data.datasets.synthetic import SynthConfig, generate
from vidda.engine.checkpoint import load_checkpoint
from vidda.engine.pl_quality import PLQualityError, measure_pl_quality
from vidda.engine.run import train
from vidda.models.build import build_segmentor
from vidda.models.normalize import normalize
from vidda.uda.teacher import pseudo_mode

CONFIGS = Path(__file__).parents[1] / "configs" / "demo"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    root = generate(tmp_path_factory.mktemp("synth"), seed=3,
                    cfg=SynthConfig(height=32, width=64, clips={"train": 2, "val": 1},
                                    frames_per_clip=4))  # fmt: skip
    overrides = [f"data.{k}.root={root}" for k in ("source", "target", "val")] + [
        "data.source.crop_size=[32,32]", "data.target.crop_size=[32,32]", "data.num_workers=0",
        "schedule.iters=3", "schedule.warmup_iters=1", "method.refine.begin=1",
        "model.head_kwargs.embed_dim=32",
    ]  # fmt: skip
    cfg = load_config(CONFIGS / "dacs_mic_consis.yaml", overrides)
    out = tmp_path_factory.mktemp("run")
    train(cfg, out, progress=False)
    return cfg, load_checkpoint(out / "latest.pt")


def test_raw_accuracy_matches_the_teacher_argmax(run) -> None:
    cfg, state = run
    result = measure_pl_quality(cfg, state, max_clips=1)
    # independent reference: the teacher's argmax on the first clip's key frame, by hand
    from vidda.data.build import build_dataset

    teacher = build_segmentor(cfg.model, load_pretrained=False)
    teacher.load_state_dict(state["models"]["teacher"])
    teacher.eval()
    ds_cfg = dataclasses.replace(cfg.data.target, crop_size=[], flip=False)
    clip = build_dataset(ds_cfg, train=False)[0]
    with torch.no_grad(), pseudo_mode(teacher):  # the teacher predicts as in training
        pred = teacher.inference(normalize(clip["frames"][-1:])).argmax(1)[0]
    gt = torch.as_tensor(clip["label"]).long()
    labelled = gt != 255
    expected = ((pred == gt) & labelled).sum().item() / labelled.sum().item()
    assert result["pixels"] == labelled.sum().item()
    assert result["pl_acc_raw"] == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= result["pl_coverage_refined"] <= 1.0


def test_oracle_refinement_is_always_right(run) -> None:
    cfg, state = run
    cfg.method.refine.strategies = ["oracle"]
    try:
        result = measure_pl_quality(cfg, state)
    finally:
        cfg.method.refine.strategies = ["consis"]
    assert result["pl_acc_refined"] == 1.0
    assert result["pl_coverage_refined"] < 1.0  # the teacher is wrong somewhere after 3 steps


def test_runs_without_refinement_or_teacher_are_refused(run) -> None:
    cfg, state = run
    cfg.method.refine.enabled = False
    try:
        with pytest.raises(PLQualityError, match="method.refine is not enabled"):
            measure_pl_quality(cfg, state)
    finally:
        cfg.method.refine.enabled = True
    with pytest.raises(PLQualityError, match="no teacher"):
        measure_pl_quality(cfg, {"models": {"student": state["models"]["student"]}})
