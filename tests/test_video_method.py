"""The video techniques inside DACS and the trainer.

Method-level contracts run on the stand-in networks of ``standins.py`` with hand-made clip batches;
end-to-end runs train a tiny MiT-b0 for a few iterations on the synthetic benchmark (exact flow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from standins import Head, Stride4
from torch import nn

from vidda.config.load import ConfigError, config_from_dict, merge_overrides
from vidda.config.schema import Config, RefineConfig
from vidda.data.datasets.synthetic import SynthConfig, generate, render_clip
from vidda.engine.checkpoint import load_checkpoint
from vidda.engine.evaluator import segmentor_predictor
from vidda.engine.optim import build_optimizer
from vidda.engine.run import train
from vidda.models.build import build_segmentor
from vidda.models.normalize import normalize
from vidda.models.segmentors.accel import ACCEL
from vidda.models.segmentors.encoder_decoder import EncoderDecoder
from vidda.models.segmentors.inputs import Pair
from vidda.uda.clip_view import ClipView, chain_flows
from vidda.uda.dacs import DACS
from vidda.uda.method import StepContext
from vidda.uda.methods import build_method
from vidda.uda.refine import PL
from vidda.uda.video_pl import PLRefiner, pl_accuracy

K = 5  # classes of the stand-in head
H = W = 64


# --------------------------------------------------------------------------- configs and batches


def base_dict(root: str = "") -> dict[str, Any]:
    """A tiny DACS config on the synthetic benchmark (frames t-2, t-1, t with their flows)."""

    def ds(domain: str, split: str, offsets: list[int], flows: list[int], crop: bool = True):
        d = {"type": "synthetic", "root": root, "domain": domain, "split": split,
             "offsets": offsets, "flow_offsets": flows}  # fmt: skip
        return {**d, "crop_size": [H, W]} if crop else d

    return {
        "seed": 0,
        "deterministic": True,
        "data": {"source": ds("source", "train", [-2, -1, 0], [-1, 0]),
                 "target": ds("target", "train", [-2, -1, 0], [-1, 0]),
                 "val": ds("target", "val", [-1, 0], [0], crop=False),
                 "batch_size": 2, "num_workers": 0},  # fmt: skip
        "model": {"segmentor": "hrda", "backbone": "mit_b0", "head": "segformer",
                  "backbone_kwargs": {"embed_dims": [8, 16, 32, 64], "num_heads": [1, 1, 2, 4],
                                      "drop_path_rate": 0.0},
                  "head_kwargs": {"embed_dim": 16}, "segmentor_kwargs": {"hr_crop": [32, 32]}},
        "method": {"name": "dacs", "pseudo_threshold": 0.5},
        "optim": {"lr": 1e-3},
        "schedule": {"iters": 3, "warmup_iters": 1},
        "train": {"eval_every": 0, "checkpoint_every": 0, "log_every": 1, "device": "cpu"},
    }  # fmt: skip


def make_cfg(*overrides: str, root: str = "") -> Config:
    return merge_overrides(config_from_dict(base_dict(root)), list(overrides))


def clip(values: tuple[int, ...], flow_u: float, label: int | None = None) -> dict[str, Any]:
    """A hand-made clip batch (B = 2): frame i is the constant ``values[i]``; every flow is the
    constant (flow_u, 0); the label holds classes 0..K-1 in vertical stripes (or ``label``)."""
    t = len(values)
    frames = torch.stack([torch.full((3, H, W), v, dtype=torch.uint8) for v in values])
    stripes = (torch.arange(W) * K // W).expand(H, W)
    lab = torch.full((H, W), label) if label is not None else stripes
    return {
        "frames": frames[None].repeat(2, 1, 1, 1, 1),
        "label": lab[None].repeat(2, 1, 1).to(torch.uint8),
        "flows": torch.zeros(2, t, 2, H, W).index_fill_(2, torch.tensor([0]), flow_u),
        "flow_valid": torch.ones(2, t, H, W, dtype=torch.bool),
        "pl_valid": torch.ones(2, H, W, dtype=torch.bool),
    }


def accel_student() -> ACCEL:
    torch.manual_seed(0)
    return ACCEL(EncoderDecoder(Stride4(), Head(K)), K)


def single_student() -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(Stride4(), Head(K))


class Recorder(nn.Module):
    """The student's training forward that remembers its inputs."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.calls: list[dict[str, Any]] = []

    def forward(self, inputs: Pair, **kw: Any) -> dict[str, Any]:
        seen = {"x": inputs.x, "x_tk": inputs.prev, "flow": inputs.flow, "flow_valid": inputs.valid}
        self.calls.append({k: v.detach().clone() for k, v in seen.items() if v is not None})
        return self.student.forward_train(inputs, **kw)


def method_for(student: nn.Module, *overrides: str) -> tuple[DACS, Recorder]:
    cfg = make_cfg("model.num_classes=5", "method.color_jitter_p=1.0", "method.blur=false",
                   *overrides)  # fmt: skip
    rec = Recorder(student)
    method = build_method(cfg, student, rec)
    assert isinstance(method, DACS)
    return method, rec


def step_ctx(step: int = 0, seed: int = 0) -> StepContext:
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    return StepContext(step, torch.Generator().manual_seed(seed), np.random.default_rng(seed),
                       backward)  # fmt: skip


def video_batch(flow_src: float = 1.0, flow_tgt: float = -1.0) -> dict[str, Any]:
    return {"source": clip((5, 10, 20), flow_src), "target": clip((190, 200, 210), flow_tgt, 0)}


def near(x: torch.Tensor, value: int) -> torch.Tensor:
    """Pixels of a normalised ``[B, 3, H, W]`` image equal to the 0–255 constant ``value``."""
    return (x - normalize(torch.full((1, 3, 1, 1), float(value)))).abs().amax(1) < 1e-4


# --------------------------------------------------------------------------- consistent mixup


@pytest.mark.parametrize("consistent", [True, False])
def test_consistent_mixup_shares_the_classmix_mask_between_frames_and_flow(consistent: bool):
    method, rec = method_for(accel_student(), "model.segmentor=accel",
                             f"method.consistent_mix={str(consistent).lower()}")  # fmt: skip
    method.before_step(0)
    method.train_step(video_batch(), step_ctx())
    assert len(rec.calls) == 2  # source pair, mixed pair
    src, mixed = rec.calls
    assert near(src["x"], 20).all() and near(src["x_tk"], 10).all()
    assert (src["flow"][:, 0] == 1.0).all() and (src["flow"][:, 1] == 0.0).all()
    mask = near(mixed["x"], 20)  # source pixels pasted into frame t
    assert 0 < mask.float().mean() < 1 and (mask | near(mixed["x"], 210)).all()
    if consistent:  # frame t−k and the flow are mixed with exactly the same mask
        assert torch.equal(near(mixed["x_tk"], 10), mask)
        assert torch.equal(near(mixed["x_tk"], 200), ~mask)
        assert torch.equal(mixed["flow"][:, 0], torch.where(mask, 1.0, -1.0))
    else:  # only frame t is mixed; frame t−k and the flow stay the target's
        assert near(mixed["x_tk"], 200).all() and (mixed["flow"][:, 0] == -1.0).all()
    assert (mixed["flow"][:, 1] == 0).all() and mixed["flow_valid"].all()


@pytest.mark.parametrize("per_frame", [False, True])
def test_mixup_augmentation_is_drawn_once_per_clip_unless_compat(per_frame: bool):
    method, rec = method_for(accel_student(), "model.segmentor=accel", "method.blur=true",
                             "method.color_jitter_p=0.0",
                             f"compat.mixup_aug_per_frame={str(per_frame).lower()}")  # fmt: skip
    batch = {"source": clip((50, 50, 50), 1.0), "target": clip((150, 150, 150), -1.0, 0)}
    for d in ("source", "target"):  # identical frames t and t−k in both domains
        batch[d]["frames"][:, :2] = batch[d]["frames"][:, 2:3]
    method.before_step(0)
    method.train_step(batch, step_ctx(seed=3))
    mixed = rec.calls[1]
    same = torch.allclose(mixed["x"], mixed["x_tk"])
    assert same != per_frame  # one draw: equal frames stay equal; per frame (original): not


# --------------------------------------------------------------------------- ACCEL in DACS


def test_accel_fusion_starts_as_identity_and_learns_through_the_method():
    student = accel_student()
    k = torch.eye(K)
    assert torch.equal(student.fusion.weight[:, :, 0, 0], torch.cat((k, torch.zeros(K, K)), 1))
    method, _ = method_for(student, "model.segmentor=accel")
    calls: list[tuple] = []
    teacher = method.teacher.model
    inference = teacher.inference

    def spy(inputs: Pair) -> torch.Tensor:
        calls.append((inputs.x, inputs.prev, inputs.flow, inputs.valid))
        return inference(inputs)

    teacher.inference = spy  # type: ignore[method-assign]
    batch = video_batch()
    method.before_step(0)
    method.train_step(batch, step_ctx())
    grad = student.fusion.weight.grad
    assert grad is not None and grad[:, :K].abs().sum() > 0 and grad[:, K:].abs().sum() > 0
    # the teacher is ACCEL too: it fuses frame t with frame t−k through the target's flow
    x, prev, flow, valid = calls[0]
    assert near(x, 210).all() and near(prev, 200).all() and (flow[:, 0] == -1).all()
    assert isinstance(teacher, ACCEL) and not teacher.compat_unwarped


def test_fd_and_mic_work_with_an_accel_student():
    student = ACCEL(EncoderDecoder(Stride4(), Head(K)), K)
    method, rec = method_for(student, "model.segmentor=accel", "method.mic.enabled=true",
                             "method.mic.block_size=16", "method.fd.enabled=true",
                             "method.fd.classes=[1,2]")  # fmt: skip
    method.before_step(0)
    logs, _ = method.train_step(video_batch(), step_ctx())
    assert {"loss_fd", "loss_seg_mic", "loss_seg_mix"} <= set(logs)
    masked = rec.calls[-1]  # MIC: both frames masked with one block mask
    assert torch.equal(masked["x"] == 0, masked["x_tk"] == 0)
    assert (masked["x"] == 0).any() and all(torch.isfinite(v) for v in logs.values())


# --------------------------------------------------------------------------- refinement in DACS


def test_refined_pseudo_label_training_starts_at_the_configured_iteration():
    method, rec = method_for(
        single_student(), "method.refine.enabled=true", "method.refine.strategies=[consis]",
        "method.refine.begin=2", "data.source.offsets=[0]", "data.source.flow_offsets=[]",
        "data.target.offsets=[-1,0]", "data.target.flow_offsets=[0]",
    )  # fmt: skip
    batch = {"source": clip((10,), 0.0), "target": clip((190, 200), 0.0, 0)}
    seen = []
    for step in range(4):
        method.before_step(step)
        logs, _ = method.train_step(batch, step_ctx(step))
        seen.append({k for k in logs if k.startswith(("loss_seg_warp", "loss_seg_mix"))})
        assert "pl_acc_raw" in logs
        assert ("pl_acc_refined" in logs) == (step >= 2)
    # l_mix = 0: no target loss at all before `begin` (the original's behaviour), then L_warp
    assert seen == [set(), set(), {"loss_seg_warp"}, {"loss_seg_warp"}]
    assert len(rec.calls) == 1 + 1 + 2 + 2  # the target forward joins from step 2 on


def test_bdd_prev_frame_alias_reads_frame_t_minus_2k():
    overrides = ("method.refine.enabled=true", "method.refine.strategies=[consis]",
                 "data.target.type=bddvid")  # fmt: skip
    tgt = clip((100, 150, 200), -1.0, 0)
    fixed, _ = method_for(single_student(), *overrides)
    alias, _ = method_for(single_student(), *overrides, "compat.bdd_prev_frame_t4=true")
    assert near(fixed._prev_inputs(tgt, fixed.clips.target, fixed.clips.target_prev).x, 150).all()
    assert near(alias._prev_inputs(tgt, alias.clips.target, alias.clips.target_prev).x, 100).all()
    with pytest.raises(ConfigError, match=r"offsets \[-2, -1, 0\].*data.target.offsets is \[-1, 0"):
        method_for(single_student(), *overrides, "compat.bdd_prev_frame_t4=true",
                   "data.target.offsets=[-1,0]", "data.target.flow_offsets=[0]")  # fmt: skip


# --------------------------------------------------------------------------- discriminator


def test_discriminator_and_segmentor_optimizers_step_separately():
    student = single_student()
    method, _ = method_for(student, "method.discriminator.enabled=true",
                           "method.discriminator.width=4")  # fmt: skip
    d_opt = method.optimizers()["discriminator"]
    main_opt = build_optimizer(student, make_cfg().optim)  # what the trainer builds
    d_params = {id(p) for p in method.adversary.disc.parameters()}
    assert d_params == {id(p) for g in d_opt.param_groups for p in g["params"]}
    assert not d_params & {id(p) for g in main_opt.param_groups for p in g["params"]}
    method.before_step(0)
    logs, _ = method.train_step(video_batch(), step_ctx())
    assert logs["loss_adv"] > 0 and logs["loss_disc"] > 0
    assert float(logs["lr_disc"]) == pytest.approx(1e-4)
    assert all(p.grad is not None for p in method.adversary.disc.parameters())

    def snapshot(module: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    d0, s0 = snapshot(method.adversary.disc), snapshot(student)
    main_opt.step()  # the segmentor's step leaves D alone ...
    d1, s1 = snapshot(method.adversary.disc), snapshot(student)
    assert all(torch.equal(a, b) for a, b in zip(d0, d1, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(s0, s1, strict=True))
    d_opt.step()  # ... and D's own Adam leaves the segmentor alone
    assert all(torch.equal(a, b) for a, b in zip(s1, snapshot(student), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d1, snapshot(method.adversary.disc),
                                                     strict=True))  # fmt: skip
    method.before_step(1)  # poly decay over schedule.iters = 3
    assert d_opt.param_groups[0]["lr"] == pytest.approx(1e-4 * (1 - 1 / 3) ** 0.9)


@pytest.mark.parametrize("original", [False, True])
def test_disc_in_main_optimizer_switch(tmp_path, original: bool):
    """The original's AdamW held D's parameters too: one extra group at base lr."""
    from vidda.engine.trainer import RunOptions, Trainer

    flag = f"compat.disc_in_main_optimizer={str(original).lower()}"
    cfg = make_cfg("method.discriminator.enabled=true", "method.discriminator.width=4", flag)
    trainer = Trainer(cfg, RunOptions(run_dir=tmp_path, progress=False))
    d_ids = {id(p) for p in trainer.method.adversary.disc.parameters()}
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    main_ids = {id(p) for g in groups.values() for p in g["params"]}
    assert (d_ids <= main_ids) is original and bool(d_ids & main_ids) is original
    assert ("discriminator" in groups) is original
    if original:
        g = groups["discriminator"]
        assert (g["lr"], g["weight_decay"]) == (cfg.optim.lr, cfg.optim.weight_decay)
        fp16 = make_cfg("method.discriminator.enabled=true", flag, "train.amp=fp16")
        message = "disc_in_main_optimizer does not combine with train.amp=fp16"
        with pytest.raises(ConfigError, match=message):
            Trainer(fp16, RunOptions(run_dir=tmp_path / "fp16", progress=False))


@pytest.mark.parametrize("joint", [False, True])
def test_joint_softmax_switch_reaches_the_discriminator(joint: bool):
    method, _ = method_for(single_student(), "method.discriminator.enabled=true",
                           f"compat.joint_softmax={str(joint).lower()}")  # fmt: skip
    d_in = method.adversary.disc.make_input(torch.randn(1, K, 8, 8), torch.randn(1, K, 8, 8))
    sums = d_in[:, :K].sum(1)
    assert torch.allclose(sums, torch.ones_like(sums)) != joint  # per frame: each half sums to 1
    torch.testing.assert_close(d_in.sum(1), torch.full_like(sums, 1.0 if joint else 2.0))


# --------------------------------------------------------------------------- compat switches


def tiny_accel_model(**compat: bool) -> nn.Module:
    cfg = make_cfg("model.segmentor=accel", *(f"compat.{k}={str(v).lower()}"
                                              for k, v in compat.items()))  # fmt: skip
    torch.manual_seed(0)
    model = build_segmentor(cfg.model, load_pretrained=False, compat=cfg.compat).eval()
    nc = model.num_classes
    with torch.no_grad():  # a fusion that also uses the warped half
        model.fusion.weight[:, nc:, 0, 0] = 0.5 * torch.eye(nc)
    return model


def val_batch(shift: float = 2.5) -> dict[str, Any]:
    b = clip((60, 120), shift)
    g = torch.Generator().manual_seed(4)
    b["frames"] = torch.randint(0, 255, b["frames"].shape, generator=g, dtype=torch.uint8)
    return {k: v[:1] for k, v in b.items()}


@pytest.mark.parametrize("switch", ["accel_single_frame_eval", "accel_unwarped_fusion",
                                    "accel_invalid_255", "original_warp"])  # fmt: skip
def test_accel_compat_switches_change_the_evaluated_prediction(switch: str):
    default, quirk = tiny_accel_model(), tiny_accel_model(**{switch: True})
    quirk.load_state_dict(default.state_dict())
    cfg = make_cfg().eval
    batch = val_batch()
    with torch.no_grad():
        a = segmentor_predictor(default, cfg, [-1, 0])(batch)
        b = segmentor_predictor(quirk, cfg, [-1, 0])(batch)
    assert a.shape == b.shape == (1, 19, H, W) and not torch.allclose(a, b)
    if switch == "accel_single_frame_eval":
        x_t = normalize(batch["frames"][:, 1])
        torch.testing.assert_close(b, default.segmentor.predict(x_t))


def test_accel_hr_fusion_switch_fuses_the_crop_logits():
    x = torch.randn(1, 3, H, W)
    flow = torch.full((1, 2, H, W), 1.0)
    for on, size in ((False, (8, 8)), (True, (H, W))):
        model = tiny_accel_model(accel_hr_fusion=on).train()
        g = torch.Generator().manual_seed(0)
        out = model.forward_train(Pair(x, x.flip(-1), flow), generator=g)
        assert tuple(out["hr"].shape[-2:]) == size  # fused outputs are at full size


def test_original_warp_switch_changes_the_refined_label():
    cur = PL(torch.zeros(1, 16, 16, dtype=torch.long), torch.ones(1, 16, 16))
    lab = (torch.arange(16) % 3).expand(16, 16)[None]
    prev = PL(lab, torch.ones(1, 16, 16))
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 0.7  # sub-pixel: nearest sampling reads x + 1, the original's floor reads x
    r = RefineConfig(enabled=True, strategies=["warp_frame"], fill="none")
    fixed, _ = PLRefiner(r)(cur, prev, flow)
    orig, _ = PLRefiner(r, original_warp=True)(cur, prev, flow)
    assert torch.equal(fixed[0, :, :-1], lab[0, :, 1:]) and (fixed[0, :, -1] == 255).all()
    # the original: unshifted above its bottom limit int(0.7 · 16) = 11, invalid below it
    assert torch.equal(orig[0, :11], lab[0, :11]) and (orig[0, 11:] == 255).all()


# --------------------------------------------------------------------------- pseudo-label accuracy


def test_consistency_filter_raises_pl_accuracy_on_the_synthetic_clip(capsys):
    """Exact synthetic flow; a teacher stand-in that errs in random 8x8 blocks (25 %) of each
    frame independently. Kept pixels of the consistency-filtered label are more accurate."""
    frames = render_clip(11, "target", SynthConfig(height=96, width=160, frames_per_clip=3))
    gt_tk, gt_t = (torch.from_numpy(f.label.astype(np.int64))[None] for f in frames[1:])
    flow = torch.from_numpy(frames[2].flow).permute(2, 0, 1)[None]
    valid = torch.from_numpy(frames[2].flow_valid)[None]
    rng = torch.Generator().manual_seed(0)

    def noisy(gt: torch.Tensor) -> torch.Tensor:
        blocks = torch.rand(1, 1, 96 // 8, 160 // 8, generator=rng) < 0.25
        wrong = torch.nn.functional.interpolate(blocks.float(), scale_factor=8)[:, 0] > 0
        return torch.where(wrong, torch.randint(0, 19, gt.shape, generator=rng), gt)

    cur, prev = PL(noisy(gt_t), torch.ones(1, 96, 160)), PL(noisy(gt_tk), torch.ones(1, 96, 160))
    label, weight = PLRefiner(RefineConfig(enabled=True, strategies=["consis"]))(
        cur, prev, flow, valid)  # fmt: skip
    raw, _ = pl_accuracy(cur.label, gt_t)
    refined, coverage = pl_accuracy(label, gt_t)
    warped_only, _ = pl_accuracy(PLRefiner(RefineConfig(fill="none"))(cur, prev, flow, valid)[0],
                                 gt_t)  # fmt: skip
    with capsys.disabled():
        print(f"\n  synthetic clip, exact flow: pl_acc_raw={raw:.4f} "
              f"pl_acc_refined(consis)={refined:.4f} pl_coverage_refined={coverage:.4f} "
              f"(warped frame t-1 alone: {warped_only:.4f})")
    assert refined > raw + 0.1 and coverage > 0.5
    assert (weight[label == 255] == 0).all()


def test_pl_accuracy_by_hand_and_nan_without_labels():
    label = torch.tensor([[[1, 2, 255, 3]]])
    gt = torch.tensor([[[1, 0, 2, 255]]], dtype=torch.uint8)
    acc, cov = pl_accuracy(label, gt)  # labelled: 3 pixels; kept: 2; correct: 1
    assert float(acc) == pytest.approx(0.5) and float(cov) == pytest.approx(2 / 3)
    acc, cov = pl_accuracy(label, torch.full_like(gt, 255))
    assert torch.isnan(acc) and torch.isnan(cov)


# --------------------------------------------------------------------------- flows of a clip


def test_clip_view_chains_flows_and_checks_sizes():
    b = clip((0, 0, 0), 0.0)
    b["flows"][:, 2, 0] = 1.0  # frame 0 → -1: one pixel right
    b["flows"][:, 1, 1] = 2.0  # frame -1 → -2: two pixels down
    view = ClipView([-2, -1, 0], "data.x")
    flow, valid = view.flow(b, 0, 2)
    assert valid[:, :-2, :-1].all() and not valid[:, -2:].any() and not valid[..., -1].any()
    assert (flow[:, 0][valid] == 1).all() and (flow[:, 1][valid] == 2).all()
    f2, v2 = chain_flows([b["flows"][:, 2]], [b["flow_valid"][:, 2]])
    assert torch.equal(f2, b["flows"][:, 2]) and v2.all()
    with pytest.raises(ValueError, match=r"data.x.offsets \[-2, -1, 0\] has no frame at offset -3"):
        view.flow(b, -1, 2)
    b["flows"] = b["flows"][..., :32]
    with pytest.raises(ValueError, match="flows .* do not match frames"):
        view.flow(b, 0, 1)


# --------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("method.refine.enabled=true", "data.target.offsets=[0]"),
         r"method.refine.enabled needs the frames at offsets \[-1, 0\] from data.target, but "
         r"data.target.offsets is \[0\]"),
        (("method.refine.enabled=true", "data.target.flow_offsets=[-1]"),
         r"backward flow of the frames at offsets \[0\] of data.target, but "
         r"data.target.flow_offsets provides flow only for \[-1\]"),
        (("model.segmentor=accel", "data.source.flow_offsets=[]"),
         r"model.segmentor=accel needs the backward flow .* data.source"),
        (("model.segmentor=accel", "data.val.root=/data", "data.val.flow_offsets=[]"),
         r"fused evaluation\) needs the backward flow .* data.val"),
        (("model.segmentor=accel", "method.discriminator.enabled=true",
          "data.target.offsets=[-1,0]", "data.target.flow_offsets=[0]"),
         r"method.discriminator.video with model.segmentor=accel needs the frames at offsets "
         r"\[-2, -1\]"),
        (("method.discriminator.enabled=true", "data.source.offsets=[0]",
          "data.source.flow_offsets=[]"), r"method.discriminator.video needs .* data.source"),
        (("method.refine.strategies=[consis,maxconf]",),
         r"method.refine.strategies: 'maxconf' is not one of \('consis', 'max_conf', "),
        (("method.refine.fill=top",), r"method.refine.fill: 'top' is not one of"),
        (("method.mix=cut",), r"method.mix: 'cut' is not one of \('class', 'none'\)"),
        (("method.refine.begin=-1",), r"method.refine.begin must be >= 0"),
        (("method.frame_distance=0",), r"method.frame_distance must be >= 1"),
        (("method.name=source_only", "model.segmentor=accel"),
         r"model.segmentor=accel need method.name: dacs"),
        (("method.discriminator.enabled=true", "data.source.crop_size=[48,48]"),
         r"data.source.crop_size \[48, 48\] × feature_scale 0.5 is below"),
        (("method.discriminator.betas=[0.9]",), r"method.discriminator.betas must be two"),
        (("model.segmentor=accel", "model.accel.base=accel"),
         r"model.accel.base: 'accel' is not one of \('encoder_decoder', 'hrda'\)"),
        (("model.segmentor=accel", "model.accel.invalid_fill=nan"), r"model.accel.invalid_fill"),
        (("method.refine.enabled=true", "method.refine.l_warp=0"),
         r"l_warp and l_mix are both 0: no target loss would train"),
        (("data.val.root=/data", "eval.best_by=temporal"),
         r"eval.best_by: 'temporal' is not one of the evaluation's scores \['standard', 'uvda', "
         r"'confidence'"),
    ],
)
def test_bad_video_configs_are_clear_errors_before_training(overrides, message):
    # a value outside its Literal is refused when the config is made, the rest by build_method
    with pytest.raises(ConfigError, match=message), torch.device("meta"):
        cfg = make_cfg(*overrides)
        build_method(cfg, build_segmentor(cfg.model, False, cfg.compat), None)


def test_a_video_row_without_flow_fails_the_dry_run(capsys):
    from vidda.cli import main

    cfg = Path(__file__).parents[1] / "configs" / "viper_csseq" / "hrda_consis_dlv2.yaml"
    assert main(["train", str(cfg), "data.target.flow_offsets=[]", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "method.refine.enabled needs the backward flow" in err
    assert "data.target.flow_offsets" in err


def test_a_flow_size_mismatch_in_a_batch_is_a_clear_error():
    method, _ = method_for(accel_student(), "model.segmentor=accel")
    batch = video_batch()
    batch["target"]["flows"] = batch["target"]["flows"][..., : W // 2]
    method.before_step(0)
    with pytest.raises(ValueError, match=r"data.target: flows \(2, 3, 2, 64, 32\) do not match"):
        method.train_step(batch, step_ctx())


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(height=64, width=96, clips={"train": 2, "val": 1}, frames_per_clip=4)
    return generate(root, seed=1, cfg=cfg)


ROWS = {
    "refine_consis": ("method.refine.enabled=true", "method.refine.strategies=[consis,oracle]",
                      "method.refine.begin=1", "method.mic.enabled=true",
                      "method.mic.block_size=16"),
    "video_discrim": ("method.discriminator.enabled=true",),
    "accel_mixup": ("model.segmentor=accel", "method.fd.enabled=true"),
    "da_vsn": ("model.segmentor=accel", "method.discriminator.enabled=true",
               "method.refine.enabled=true", "method.refine.strategies=[max_conf]",
               "method.refine.begin=0"),
    "uda_vss": ("model.segmentor=accel", "method.mix=none", "method.discriminator.enabled=true",
                "method.refine.enabled=true", "method.refine.strategies=[consis]",
                "method.refine.begin=0", "method.frame_distance=1"),
}  # fmt: skip
EXPECTED = {
    "refine_consis": {"loss_seg_warp", "loss_seg_mic", "pl_acc_refined", "pl_coverage_refined"},
    "video_discrim": {"loss_seg_mix", "loss_adv", "loss_disc", "lr_disc"},
    "accel_mixup": {"loss_seg_mix", "loss_fd"},
    "da_vsn": {"loss_seg_warp", "loss_adv", "loss_disc", "pl_acc_refined"},
    "uda_vss": {"loss_seg_warp", "loss_adv", "loss_disc"},
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_video_method_trains_a_few_iterations(synth: Path, tmp_path: Path, row: str):
    cfg = make_cfg(*ROWS[row], root=str(synth))  # evaluated at the end (ACCEL: fused pairs)
    result = train(cfg, tmp_path, progress=False)
    assert result["step"] == 3 and set(result["eval"]) == {"standard", "uvda", "label_free"}
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_logs = [x["train"] for x in lines if "train" in x]
    assert len(train_logs) == 3
    last = train_logs[-1]
    assert EXPECTED[row] | {"loss_seg_src", "pl_acc_raw"} <= set(last), set(last)
    for logs in train_logs:
        assert all(np.isfinite(v) for k, v in logs.items() if k.startswith("loss")), logs
    assert 0.0 <= last["pl_acc_raw"] <= 1.0


def test_stop_and_resume_with_the_discriminator_ends_with_identical_state(synth, tmp_path):
    cfg = make_cfg("method.discriminator.enabled=true", "method.refine.enabled=true",
                   "method.refine.strategies=[consis]", "method.refine.begin=1",
                   "schedule.iters=4", "data.val.root=", root=str(synth))  # fmt: skip
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", stop_after=2, progress=False)
    assert load_checkpoint(tmp_path / "split" / "latest.pt")["step"] == 2
    train(cfg, tmp_path / "split", resume="auto", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "latest.pt")
    b = load_checkpoint(tmp_path / "split" / "latest.pt")
    assert a["step"] == b["step"] == 4 and set(a["models"]) == {"student", "teacher",
                                                                 "discriminator"}  # fmt: skip
    for name in a["models"]:
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key}"
    da, db = a["method_optimizers"]["discriminator"], b["method_optimizers"]["discriminator"]
    assert da["param_groups"][0]["lr"] == db["param_groups"][0]["lr"] > 0
    assert da["state"].keys() == db["state"].keys() and da["state"]
    for k in da["state"]:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(da["state"][k][field], db["state"][k][field]), (k, field)
    for k, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
