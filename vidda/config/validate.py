"""One pass over a loaded config that refuses settings which cannot work, before anything is built.

The schema (``vidda.config.schema``) declares keys and types and the loader checks them layer by
layer; :func:`validate` checks meaning: every ``Literal`` field holds one of its values, value
ranges, and combinations — the training method against the model, the video techniques against
the frames and flows every dataset provides, evaluation against ``data.val``, mixed precision
against the optimizer. Each problem is one ``ConfigError`` naming the keys involved.
:func:`vidda.config.load_config` calls it, so ``vidda train`` (and ``--dry-run``), ``vidda eval``
and ``vidda infer`` refuse the same configs with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from vidda.config.derived import (
    available_scores,
    best_by,
    dataset_given,
    has_labels,
    target_previous_offset,
)
from vidda.config.load import ConfigError, check_choices
from vidda.config.schema import Config, DatasetConfig, MixMode, RefineFill, strategy_problem

__all__ = ["FILL_MODES", "MIX_MODES", "Need", "check_eval_data", "data_needs", "validate"]

MIX_MODES: tuple[str, ...] = get_args(MixMode)
FILL_MODES: tuple[str, ...] = get_args(RefineFill)
MIN_DISCRIMINATOR_INPUT = 32  # five stride-2 convolutions need at least 32 pixels per side


@dataclass(frozen=True)
class Need:
    """Frames (canonical offsets) and stored flows (offsets of the frames whose backward flow is
    read) that a technique needs from the dataset ``data.<key>``."""

    why: str
    key: str
    frames: frozenset[int]
    flows: frozenset[int] = frozenset()


def _pair(why: str, key: str, at: int, k: int, prev: int | None = None) -> Need:
    """Frame ``at``, its earlier frame and the flow chain ``at → at − k``."""
    earlier = at - k if prev is None else prev
    return Need(why, key, frozenset({at, earlier, at - k}), frozenset(at - j for j in range(k)))


def data_needs(cfg: Config) -> list[Need]:
    """What the configured video techniques read from source, target and validation clips."""
    m, k = cfg.method, cfg.method.frame_distance
    accel = cfg.model.segmentor == "accel"
    needs: list[Need] = []
    if cfg.eval.temporal and dataset_given(cfg.data.val):  # prediction of frame t-k, flow t -> t-k
        needs.append(_pair("eval.temporal", "data.val", 0, k))
        if accel and not cfg.compat.accel_single_frame_eval:
            needs.append(_pair("eval.temporal with ACCEL's fused evaluation", "data.val", -k, k))
    if accel:
        why = "model.segmentor=accel"
        needs += [_pair(why, "data.source", 0, k), _pair(why, "data.target", 0, k)]
        if dataset_given(cfg.data.val) and not cfg.compat.accel_single_frame_eval:
            needs.append(_pair(f"{why} (fused evaluation)", "data.val", 0, k))
        if m.refine.enabled:
            needs.append(_pair(f"method.refine.enabled with {why}", "data.target", -k, k))
        if m.discriminator.enabled and m.discriminator.video:
            why = f"method.discriminator.video with {why}"
            needs += [_pair(why, "data.source", -k, k), _pair(why, "data.target", -k, k)]
        return needs
    prev = target_previous_offset(cfg, two_frame=False)
    if m.refine.enabled:
        needs.append(_pair("method.refine.enabled", "data.target", 0, k, prev))
    if m.discriminator.enabled and m.discriminator.video:
        why = "method.discriminator.video"
        needs.append(Need(why, "data.source", frozenset({0, -k})))
        needs.append(Need(why, "data.target", frozenset({0, prev})))
    return needs


def _flow_offsets(ds: DatasetConfig) -> set[int]:
    if ds.flow_roots:
        return {o for o, r in zip(ds.offsets, ds.flow_roots, strict=False) if r is not None}
    return set(ds.flow_offsets) & set(ds.offsets)


def _check_need(cfg: Config, need: Need) -> None:
    ds: DatasetConfig = getattr(cfg.data, need.key.split(".")[1])
    missing = sorted(need.frames - set(ds.offsets))
    if missing:
        raise ConfigError(
            f"{need.why} needs the frames at offsets {sorted(need.frames)} from {need.key}, but "
            f"{need.key}.offsets is {list(ds.offsets)} (missing {missing}); set {need.key}.offsets"
        )
    have = _flow_offsets(ds)
    missing = sorted(need.flows - have)
    if missing:
        where = f"{need.key}.flow_roots" if ds.flow_roots else f"{need.key}.flow_offsets"
        raise ConfigError(
            f"{need.why} needs the backward flow of the frames at offsets {sorted(need.flows)} "
            f"of {need.key}, but {where} provides flow only for {sorted(have)} "
            f"(missing {missing}); list them in {need.key}.flow_offsets"
        )


def _check_refine(cfg: Config) -> None:
    r = cfg.method.refine
    problem = strategy_problem(r.strategies)
    if problem:
        raise ConfigError(f"method.refine.strategies: {problem}")
    if r.l_warp < 0 or r.l_mix < 0:
        raise ConfigError(f"method.refine.l_warp and l_mix must be >= 0, got {r.l_warp}, "
                          f"{r.l_mix}")  # fmt: skip
    if r.begin < 0:
        raise ConfigError(f"method.refine.begin must be >= 0, got {r.begin}")
    if r.enabled and r.l_warp == 0 and r.l_mix == 0:
        raise ConfigError("method.refine.l_warp and l_mix are both 0: no target loss would "
                          "train; set l_warp (the refined label) and/or l_mix")  # fmt: skip
    for name in ("warp_frame_threshold", "consis_conf_threshold"):
        if not 0.0 <= getattr(r, name) <= 1.0:
            raise ConfigError(f"method.refine.{name} must be in [0, 1], got {getattr(r, name)}")


def _check_discriminator(cfg: Config) -> None:
    d = cfg.method.discriminator
    if d.weight < 0 or d.lambda_adv < 0:
        raise ConfigError(f"method.discriminator.weight and lambda_adv must be >= 0, got "
                          f"{d.weight}, {d.lambda_adv}")  # fmt: skip
    if d.lr <= 0 or d.min_lr < 0 or d.min_lr > d.lr:
        raise ConfigError(f"method.discriminator: need 0 <= min_lr <= lr and lr > 0, got lr "
                          f"{d.lr}, min_lr {d.min_lr}")  # fmt: skip
    if len(d.betas) != 2 or not all(0.0 <= b < 1.0 for b in d.betas):
        raise ConfigError(f"method.discriminator.betas must be two numbers in [0, 1), "
                          f"got {d.betas}")  # fmt: skip
    if not 0.0 < d.feature_scale <= 1.0:
        raise ConfigError(f"method.discriminator.feature_scale must be in (0, 1], "
                          f"got {d.feature_scale}")  # fmt: skip
    if d.width < 1:
        raise ConfigError(f"method.discriminator.width must be >= 1, got {d.width}")
    for key in ("source", "target") if d.enabled else ():
        crop = getattr(cfg.data, key).crop_size
        if crop and min(int(c * d.feature_scale) for c in crop) < MIN_DISCRIMINATOR_INPUT:
            raise ConfigError(
                f"method.discriminator: data.{key}.crop_size {list(crop)} × feature_scale "
                f"{d.feature_scale} is below the discriminator's minimum input of "
                f"{MIN_DISCRIMINATOR_INPUT} pixels per side"
            )


def validate(cfg: Config) -> None:
    """Raise ``ConfigError`` on the first setting of ``cfg`` that cannot work: a value outside its
    field's ``Literal``, or a combination of settings that cannot work together. Reads no data.
    """
    check_choices(cfg)
    _check_labels(cfg)
    for key in ("source", "target", "val"):
        ds = getattr(cfg.data, key)
        if ds.type == "video":
            _check_video(ds, f"data.{key}")
    _check_method(cfg)
    _check_eval(cfg)
    _check_train(cfg)


def _check_method(cfg: Config) -> None:
    m = cfg.method
    video = {
        "method.refine.enabled": m.refine.enabled,
        "method.discriminator.enabled": m.discriminator.enabled,
        "model.segmentor=accel": cfg.model.segmentor == "accel",
    }
    if m.name != "dacs":
        on = [k for k, v in video.items() if v]
        if on:
            raise ConfigError(f"{', '.join(on)} need method.name: dacs (got {m.name!r})")
    if m.frame_distance < 1:
        raise ConfigError(f"method.frame_distance must be >= 1, got {m.frame_distance}")
    _check_refine(cfg)  # also when off: a typo should not wait until it is switched on
    _check_discriminator(cfg)
    for need in data_needs(cfg):
        _check_need(cfg, need)
    if dataset_given(cfg.data.val):
        check_eval_data(cfg)


VIDEO_SPLITS = ("train", "val", "all")


def _check_labels(cfg: Config) -> None:
    """Refuse what needs ground truth from a dataset without it (the user's videos)."""
    m, data = cfg.method, cfg.data
    if m.name == "target_only" and not has_labels(data.target):
        raise ConfigError("method.name: target_only trains on data.target's labels, but "
                          "data.target is type video (no labels); use source_only or dacs")
    if m.name != "target_only" and not has_labels(data.source):
        raise ConfigError("data.source: type video has no labels, but the source domain trains "
                          "on labels; give a labelled dataset (the video is a target)")
    oracle = m.refine.enabled and "oracle" in m.refine.strategies
    if oracle and m.name == "dacs" and not has_labels(data.target):
        raise ConfigError("method.refine.strategies: 'oracle' reads the target's ground truth, "
                          "but data.target is type video (no labels); drop 'oracle'")


def _check_video(ds: DatasetConfig, key: str) -> None:
    if ds.split not in VIDEO_SPLITS:
        raise ConfigError(f"{key}.split: {ds.split!r} is not a split of a video dataset; "
                          f"expected one of {list(VIDEO_SPLITS)} (train/val: before/in the "
                          f"held-out stretch, {key}.holdout)")  # fmt: skip
    if not 0.0 <= ds.holdout < 1.0:
        raise ConfigError(f"{key}.holdout must be in [0, 1), got {ds.holdout}")
    if ds.split == "val" and ds.holdout == 0.0:
        raise ConfigError(f"{key}.split: val is the held-out end of each video, but "
                          f"{key}.holdout is 0; set it (e.g. 0.1) or use split: all")
    if ds.frame_rate <= 0:
        raise ConfigError(f"{key}.frame_rate must be > 0 frames per second, got {ds.frame_rate}")
    if ds.clip_stride < 0 or ds.frame_step < 0:
        raise ConfigError(f"{key}.clip_stride and frame_step must be >= 0 (0: derived), got "
                          f"{ds.clip_stride} and {ds.frame_step}")  # fmt: skip


def _check_eval(cfg: Config) -> None:
    e = cfg.eval
    if e.mode == "slide" and (len(e.crop_size) != 2 or len(e.stride) != 2):
        raise ConfigError(f"eval.mode: slide needs eval.crop_size and eval.stride as [H, W], got "
                          f"{list(e.crop_size)} and {list(e.stride)}")  # fmt: skip


def _check_train(cfg: Config) -> None:
    # the fp16 scaler would unscale the discriminator's gradients twice
    disc_in_main = cfg.compat.disc_in_main_optimizer and cfg.method.discriminator.enabled
    if disc_in_main and cfg.train.amp == "fp16":
        raise ConfigError("compat.disc_in_main_optimizer does not combine with "
                          "train.amp=fp16; use bf16 or off")  # fmt: skip


def check_eval_data(cfg: Config) -> None:
    """Raise ``ConfigError`` if ``data.val`` lacks frames or flows the evaluation reads, or if
    ``eval.best_by`` names a score the evaluation does not produce."""
    scores = available_scores(cfg)
    key = best_by(cfg)
    if key not in scores:
        why = ("data.val (type video) has no labels, so no protocol's mIoU"
               if not has_labels(cfg.data.val) and key in cfg.eval.protocols
               else "eval.protocols with labels, 'temporal' and 'label_free' with eval.temporal")
        raise ConfigError(f"eval.best_by: {key!r} is not one of the evaluation's scores "
                          f"{scores} ({why})")  # fmt: skip
    for need in data_needs(cfg):
        if need.key == "data.val":
            _check_need(cfg, need)
