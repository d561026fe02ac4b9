"""Label-free selection scores against hand-computed values, and the config rules for
unlabelled (video) targets."""

from __future__ import annotations

import math

import pytest
import torch

from vidda.config.derived import best_by
from vidda.config.load import ConfigError, merge_overrides
from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.engine.selection import selection_scores
from vidda.label_free import LabelFreeScores


def _logits(probs: list[list[float]]) -> torch.Tensor:
    """[1, C, 1, N] logits whose softmax is ``probs`` (one row per pixel)."""
    p = torch.tensor(probs, dtype=torch.float64)  # [N, C]
    return p.log().T[None, :, None, :]


def test_scores_match_a_hand_computation():
    probs = [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]
    s = LabelFreeScores(num_classes=2, threshold=0.8)
    s.update(_logits(probs[:2]))
    s.update(_logits(probs[2:]))
    out = s.compute()

    def h(p):
        return -sum(x * math.log(x) for x in p)

    assert out["pixels"] == 3
    assert out["confidence"] == pytest.approx(100 * (0.9 + 0.5 + 0.8) / 3)
    assert out["confident"] == pytest.approx(100 * 2 / 3)  # 0.9 and 0.8 reach τ = 0.8
    mean_h = (h(probs[0]) + h(probs[1]) + h(probs[2])) / 3
    assert out["entropy"] == pytest.approx(100 * mean_h / math.log(2))
    marginal = h([(0.9 + 0.5 + 0.2) / 3, (0.1 + 0.5 + 0.8) / 3])
    assert out["im"] == pytest.approx(100 * (marginal - mean_h) / math.log(2))


def test_a_collapsed_model_scores_low_im_although_certain():
    collapsed = LabelFreeScores(2, 0.9)
    collapsed.update(_logits([[0.99, 0.01]] * 4))
    diverse = LabelFreeScores(2, 0.9)
    diverse.update(_logits([[0.99, 0.01], [0.01, 0.99]] * 2))
    c, d = collapsed.compute(), diverse.compute()
    assert c["confidence"] == pytest.approx(d["confidence"])
    assert c["im"] < 1.0 < 50.0 < d["im"]


def test_valid_mask_leaves_pixels_out_and_empty_is_nan():
    s = LabelFreeScores(2, 0.5)
    s.update(_logits([[0.9, 0.1], [0.6, 0.4]]), valid=torch.tensor([[[True, False]]]))
    assert s.compute()["confidence"] == pytest.approx(90.0) and s.compute()["pixels"] == 1
    assert math.isnan(LabelFreeScores(2, 0.5).compute()["im"])
    with pytest.raises(ValueError, match=r"logits must be \[B, 3, H, W\]"):
        LabelFreeScores(3, 0.5).update(torch.zeros(1, 2, 1, 1))


def test_selection_scores_are_larger_is_better():
    result = {"standard": {"miou": 40.0}, "temporal": {"miou": 80.0},
              "label_free": {"confidence": 90.0, "confident": 70.0, "entropy": 12.0, "im": 30.0}}
    scores = selection_scores(result)
    assert scores["standard"] == 40.0 and scores["entropy"] == -12.0
    assert scores["label_free"] == pytest.approx(0.5 * 80.0 + 0.5 * 30.0)
    assert "uvda" not in scores


VIDEO = ("type=video", "videos=[a.mp4]")


def _cfg(*overrides: str) -> Config:
    return merge_overrides(Config(), ["data.source.root=/src", *overrides])


def test_best_by_auto_follows_the_labels():
    assert best_by(_cfg("data.val.root=/v")) == "standard"
    video_val = _cfg(*(f"data.val.{x}" for x in VIDEO), "data.val.split=all", "eval.temporal=true")
    assert best_by(video_val) == "label_free"
    validate(video_val)
    bad = merge_overrides(video_val, ["eval.best_by=standard"])
    with pytest.raises(ConfigError, match=r"data.val \(type video\) has no labels"):
        validate(bad)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("method.name=dacs", "method.refine.enabled=true", "method.refine.strategies=[oracle]",
          "data.target.offsets=[-1,0]", *(f"data.target.{x}" for x in VIDEO)),
         r"'oracle' reads the target's ground truth"),
        (("method.name=target_only", *(f"data.target.{x}" for x in VIDEO)),
         r"target_only trains on data.target's labels"),
        (tuple(f"data.source.{x}" for x in VIDEO), r"data.source: type video has no labels"),
        (("data.target.type=video", "data.target.videos=[a.mp4]", "data.target.holdout=1.0"),
         r"data.target.holdout must be in \[0, 1\)"),
        (("data.target.type=video", "data.target.videos=[a.mp4]", "data.target.split=test"),
         r"data.target.split: 'test' is not a split of a video dataset"),
        (("data.target.type=video", "data.target.videos=[a.mp4]", "data.target.split=val"),
         r"data.target.holdout is 0"),
    ],
)
def test_unlabelled_targets_refuse_what_needs_labels(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(_cfg(*overrides))
