"""The config of an adaptation run: the trained model's config, its target swapped for the
user's videos, a method preset, label-free checkpoint selection.

What changes (everything else, the source dataset included, stays as trained):

* ``data.target``: ``type: video`` over the videos, ``split: train`` (all but the held-out end
  of each video), the trained target's resize/crop/flip pipeline; ``data.val``: the held-out
  ends, frames t−k and t with the flow between, for the temporal-consistency score;
* ``model.init_checkpoint``: the checkpoint (when one is given);
* ``method``: the preset (:data:`PRESETS`, DACS + MIC by default);
* ``eval``: temporal consistency on, ``best_by: auto`` (the label-free default);
  ``train.eval_every`` / ``checkpoint_every``: a tenth of the schedule.

``KEY=VALUE`` overrides apply last.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vidda.classes import CLASS_SUBSETS
from vidda.config.derived import dataset_given
from vidda.config.load import ConfigError, merge_overrides
from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.data.build import dataset_layout
from vidda.errors import UserError

__all__ = ["DEFAULT_HOLDOUT", "DEFAULT_PRESET", "PRESETS", "adapt_config", "check_source"]

DEFAULT_HOLDOUT = 0.2
"""Share at the end of each video kept out of training: selection scores and the overlay."""

EVALUATIONS = 10
"""Evaluations (candidate checkpoints) over the schedule."""

PRESETS: dict[str, tuple[str, ...]] = {
    "dacs": ("method.name=dacs", "method.mic.enabled=false"),
    "dacs_mic": ("method.name=dacs", "method.mic.enabled=true"),
    "dacs_mic_consis": ("method.name=dacs", "method.mic.enabled=true",
                        "method.refine.enabled=true", "method.refine.strategies=[consis]"),
    "accel_mic": ("method.name=dacs", "method.mic.enabled=true", "model.segmentor=accel"),
}  # fmt: skip
"""``--method`` → the overrides it applies (refinement starts after a tenth of the schedule)."""

DEFAULT_PRESET = "dacs_mic"


def adapt_config(
    base: Config,
    videos: Sequence[str],
    out_dir: Path,
    checkpoint: Path | None = None,
    preset: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
) -> Config:
    """``base`` (a trained model's config) adapted to ``videos``; validated.

    Raises:
        UserError / ConfigError: an unknown preset, no source dataset, bad overrides.
    """
    if preset not in PRESETS:
        raise UserError(f"--method {preset!r} is not a preset; choose one of {list(PRESETS)}")
    if not videos:
        raise UserError("give at least one video (a file, a folder of frames or a quoted glob)")
    k = base.method.frame_distance
    accel = preset.startswith("accel") or base.model.segmentor == "accel"
    refine = "method.refine.enabled=true" in PRESETS[preset] or base.method.refine.enabled
    pair = accel or refine  # training reads frame t-k and the flow t -> t-k
    cfg = copy.deepcopy(base)
    video = {"type": "video", "videos": [str(v) for v in videos], "holdout": DEFAULT_HOLDOUT,
             "cache_dir": str(out_dir / "video_cache"), "root": "", "split_file": "",
             "domain": "", "flow_root": "", "flow_roots": [], "frame_step": 0,
             "pl_margins": [], "on_missing": "error"}  # fmt: skip
    chain = [-j for j in range(k - 1, -1, -1)]  # frames whose flow the chain t -> t-k reads
    cfg.data.target = replace(base.data.target, **video, split="train",
                              offsets=[-k, 0] if pair else [0],
                              flow_offsets=chain if pair else [])  # fmt: skip
    resize = base.data.val.resize or base.data.target.resize
    cfg.data.val = replace(base.data.target, **video, split="val", offsets=[-k, 0],
                           flow_offsets=chain, resize=list(resize), crop_size=[],
                           ratio_range=[], flip=False, photometric=False)  # fmt: skip
    if accel and base.model.segmentor != "accel":
        cfg.model.accel.base = base.model.segmentor
    if checkpoint is not None:
        cfg.model.init_checkpoint = str(checkpoint)
    cfg.eval.temporal, cfg.eval.best_by = True, "auto"
    cfg.workdir, cfg.name = str(out_dir.parent), out_dir.name
    cfg = merge_overrides(cfg, PRESETS[preset])
    if checkpoint is not None and not cfg.method.fd.enabled:
        cfg.model.pretrained = None  # the checkpoint's weights replace it; FD would need it
    cfg = merge_overrides(cfg, overrides)
    given = {o.split("=", 1)[0] for o in overrides}
    every = max(1, cfg.schedule.iters // EVALUATIONS)
    for key, value in (("train.eval_every", every), ("train.checkpoint_every", every),
                       ("method.refine.begin", every)):  # fmt: skip
        if key not in given:
            section, name = key.rsplit(".", 1)
            setattr(_node(cfg, section), name, value)
    validate(cfg)
    return cfg


def _node(cfg: Config, dotted: str) -> object:
    node: object = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def check_source(cfg: Config, origin: str) -> None:
    """Refuse a run whose source dataset is missing or holds other classes than the model.

    ``origin`` names where the model and its config came from (the checkpoint) in messages.
    """
    src = cfg.data.source
    if not dataset_given(src):
        raise ConfigError(f"{origin} names no source dataset (data.source.root is empty); "
                          "adaptation trains on labelled source clips too: pass "
                          "data.source.type=... data.source.root=PATH")  # fmt: skip
    layout = dataset_layout(src, "data.source")
    values = set(layout.label_values) - {255}
    n = cfg.model.num_classes
    outside = sorted(v for v in values if v >= n)
    if outside:
        raise ConfigError(f"{origin}: the model predicts {n} classes (model.num_classes) but "
                          f"data.source ({src.type}, {layout.root}) holds classes {outside}; "
                          "use the source dataset the model was trained with")  # fmt: skip
    subset = cfg.eval.classes
    if subset != "all" and set(CLASS_SUBSETS[subset]) != values:
        raise ConfigError(f"{origin}: the model was trained on the {subset!r} class set "
                          f"(eval.classes) but data.source ({src.type}) holds classes "
                          f"{sorted(values)}; use the source dataset the model was trained "
                          "with, or set eval.classes")  # fmt: skip
