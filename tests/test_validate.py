"""``vidda.config.validate``: ``Literal`` fields checked at load time, and the one pass of
cross-field rules that ``vidda train`` (and ``--dry-run``), ``vidda eval`` and ``vidda infer``
all apply to their final config."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vidda.cli import main
from vidda.config import Config, ConfigError, load_config, merge_overrides, schema, validate
from vidda.config.load import check_choices, choice_fields, choices, config_from_dict

CHOICES = choice_fields()
BAD = "not_a_choice"


def bad_override(key: str) -> str:
    is_list = typing.get_origin(CHOICES[key]) is list
    return f"{key}=[{BAD}]" if is_list else f"{key}={BAD}"


def message(key: str, value: object = BAD) -> str:
    return re.escape(f"{key}: {value!r} is not one of {choices(CHOICES[key])!r}")


# --------------------------------------------------------------------------- Literal fields


def test_the_schema_declares_its_fixed_option_sets_as_literals():
    for key in ("train.amp", "method.name", "method.mix", "method.refine.strategies",
                "method.refine.fill", "model.segmentor", "model.accel.base",
                "model.accel.invalid_fill", "eval.mode", "eval.protocols", "eval.classes",
                "data.source.type", "data.target.type", "data.val.type", "optim.type"):  # fmt: skip
        assert key in CHOICES, key
    amp = ("off", "bf16", "fp16")
    assert choices(CHOICES["train.amp"]) == typing.get_args(schema.AmpMode) == amp


def test_the_strategy_literal_is_the_refinement_s_order():
    from vidda.uda.refine import STRATEGIES

    assert typing.get_args(schema.RefineStrategy) == STRATEGIES


def test_the_literals_match_the_names_the_code_knows():
    from vidda.classes import CLASS_SUBSETS
    from vidda.data.build import LAYOUTS
    from vidda.metrics import PROTOCOLS
    from vidda.models.build import BUILDERS, SINGLE_FRAME
    from vidda.models.segmentors.accel import INVALID_FILLS
    from vidda.uda.methods import METHODS

    args = typing.get_args
    assert set(args(schema.DatasetType)) == set(LAYOUTS) | {"video"}  # video: decoded, no layout
    assert set(args(schema.ClassSubset)) == set(CLASS_SUBSETS)
    assert args(schema.EvalProtocol) == PROTOCOLS
    assert set(args(schema.SegmentorName)) == set(BUILDERS)
    assert args(schema.AccelBase) == SINGLE_FRAME
    assert args(schema.AccelInvalidFill) == INVALID_FILLS
    assert set(args(schema.MethodName)) == set(METHODS)


def test_every_default_is_one_of_its_choices():
    check_choices(Config())
    validate(Config())


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_a_bad_value_is_refused_with_key_and_choices(key: str):
    with pytest.raises(ConfigError, match=message(key) + r" \(from the command line\)"):
        merge_overrides(Config(), [bad_override(key)])


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_a_bad_value_in_a_file_names_the_file(key: str, tmp_path: Path):
    path = tmp_path / "bad.yaml"
    *parents, leaf = key.split(".")
    value = f"[{BAD}]" if typing.get_origin(CHOICES[key]) is list else BAD
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
    path.write_text(text + f"{'  ' * len(parents)}{leaf}: {value}\n")
    with pytest.raises(ConfigError, match=message(key) + re.escape(f" (from {path})")):
        load_config(path)


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_allowed_value_is_accepted(key: str):
    is_list = typing.get_origin(CHOICES[key]) is list
    for value in choices(CHOICES[key]):
        override = f"{key}=['{value}']" if is_list else f"{key}='{value}'"
        cfg = merge_overrides(Config(), [override])
        got = cfg
        for part in key.split("."):
            got = getattr(got, part)
        assert got == ([value] if is_list else value)
        check_choices(cfg)


def test_non_strings_and_bad_list_items_are_refused():
    with pytest.raises(ConfigError, match=message("train.amp", False)):
        merge_overrides(Config(), ["train.amp=off"])  # YAML reads an unquoted off as false
    with pytest.raises(ConfigError, match=message("data.val.type", 3)):
        config_from_dict({"data": {"val": {"type": 3}}})
    with pytest.raises(ConfigError, match=message("method.refine.strategies", "maxconf")):
        merge_overrides(Config(), ["method.refine.strategies=[consis, maxconf]"])
    assert merge_overrides(Config(), ["train.amp='off'"]).train.amp == "off"


def test_a_config_built_in_code_is_checked_too():
    cfg = Config()
    cfg.method.mix = "klass"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=message("method.mix", "klass")):
        validate(cfg)
    cfg = Config()
    cfg.eval.protocols = ["standard", "cityscapes"]  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=message("eval.protocols", "cityscapes")):
        validate(cfg)


# --------------------------------------------------------------------------- cross-field rules

DACS = "method.name=dacs"
REFINE = (DACS, "method.refine.enabled=true")
DISC = (DACS, "method.discriminator.enabled=true")
RULES = {
    "video_needs_dacs": (("method.refine.enabled=true",),
                         r"method.refine.enabled need method.name: dacs \(got 'source_only'\)"),
    "accel_needs_dacs": (("model.segmentor=accel",), r"model.segmentor=accel need method.name"),
    "frames": ((*REFINE, "data.target.offsets=[0]"),
               r"method.refine.enabled needs the frames at offsets \[-1, 0\] from data.target"),
    "flows": ((*REFINE, "data.target.flow_offsets=[-1]"),
              r"method.refine.enabled needs the backward flow of the frames at offsets \[0\]"),
    "bddvid_t_minus_2k": ((*REFINE, "compat.bdd_prev_frame_t4=true", "data.target.type=bddvid",
                           "data.target.offsets=[-1, 0]"),
                          r"needs the frames at offsets \[-2, -1, 0\] from data.target"),
    "refine_target_loss": ((*REFINE, "method.refine.l_warp=0"),
                           r"l_warp and l_mix are both 0: no target loss would train"),
    "refine_exclusive": (("method.refine.strategies=[class_thing, class_stuff]",),
                         r"class_thing and class_stuff are exclusive"),
    "refine_threshold": (("method.refine.warp_frame_threshold=2",),
                         r"method.refine.warp_frame_threshold must be in \[0, 1\]"),
    "frame_distance": (("method.frame_distance=0",), r"method.frame_distance must be >= 1"),
    "disc_betas": (("method.discriminator.betas=[0.9]",), r"method.discriminator.betas must be"),
    "disc_crop": ((*DISC, "data.source.crop_size=[48, 48]"),
                  r"data.source.crop_size \[48, 48\] × feature_scale 0.5 is below"),
    "fp16_disc_in_main_optimizer": ((*DISC, "compat.disc_in_main_optimizer=true",
                                     "train.amp=fp16"),
                                    r"compat.disc_in_main_optimizer does not combine with "
                                    r"train.amp=fp16; use bf16 or off"),
    "best_by": (("data.val.root=/data", "eval.best_by=temporal"),
                r"eval.best_by: 'temporal' is not one of the evaluation's scores"),
    "eval_temporal_flow": (("data.val.root=/data", "eval.temporal=true",
                            "data.val.flow_offsets=[]"),
                           r"eval.temporal needs the backward flow .* of data.val"),
    "slide_window": (("eval.mode=slide",),
                     r"eval.mode: slide needs eval.crop_size and eval.stride"),
}  # fmt: skip


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text("model: {backbone: mit_b0, head: segformer, head_kwargs: {channels: 16}}\n")
    return path


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_broken_rule_is_refused_by_validate_and_by_the_loader(rule: str, config_file: Path):
    overrides, msg = RULES[rule]
    cfg = merge_overrides(Config(), list(overrides))  # keys, types and choices are fine
    with pytest.raises(ConfigError, match=msg):
        validate(cfg)
    with pytest.raises(ConfigError, match=msg):
        validate(cfg)  # what build_method (trainer, dry run) calls
    with pytest.raises(ConfigError, match=msg):
        load_config(config_file, list(overrides))


def test_the_rules_accept_their_fixed_configs(config_file: Path):
    fixed = [
        (*REFINE,),
        (*REFINE, "compat.bdd_prev_frame_t4=true", "data.target.type=bddvid"),
        (*REFINE, "data.target.type=bddvid", "data.target.offsets=[-1, 0]"),
        (*DISC, "compat.disc_in_main_optimizer=true", "train.amp=bf16"),
        (*DISC, "train.amp=fp16"),
        ("data.val.root=/data", "eval.temporal=true", "eval.best_by=temporal"),
        ("eval.mode=slide", "eval.crop_size=[64, 64]", "eval.stride=[32, 32]"),
    ]
    for overrides in fixed:
        validate(load_config(config_file, list(overrides)))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_train_dry_run_and_eval_refuse_the_same_configs(rule, config_file, tmp_path, capsys):
    overrides, msg = RULES[rule]
    assert main(["train", str(config_file), *overrides, "--dry-run"]) == 2
    assert re.search(msg, capsys.readouterr().err)
    assert main(["train", str(config_file), *overrides, "--workdir", str(tmp_path / "w")]) == 2
    assert re.search(msg, capsys.readouterr().err)
    assert not (tmp_path / "w").exists()
    ckpt = tmp_path / "missing.pt"  # the config is refused before the checkpoint is read
    assert main(["eval", str(config_file), str(ckpt), *overrides]) == 2
    assert re.search(msg, capsys.readouterr().err)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    return path


@pytest.mark.parametrize("rule", ["video_needs_dacs", "fp16_disc_in_main_optimizer", "best_by"])
def test_infer_refuses_the_same_configs(rule, config_file, image, tmp_path, capsys, monkeypatch):
    overrides, msg = RULES[rule]
    ckpt = tmp_path / "model.pt"
    torch.save({"step": 0}, ckpt)
    out = str(tmp_path / "out")
    args = ["infer", str(ckpt), str(image), "--out", out, "--device", "cpu"]
    assert main([*args, "--config", str(config_file), *overrides]) == 2  # a config file
    assert re.search(msg, capsys.readouterr().err)

    # the config stored in a checkpoint (with overrides): checked once the model is loaded
    import vidda.infer.command as command

    bad = merge_overrides(Config(), list(overrides))
    monkeypatch.setattr(command, "load_model", lambda *a, **k: SimpleNamespace(cfg=bad))
    assert main(args) == 2
    assert re.search(msg, capsys.readouterr().err)


def test_dry_run_and_train_functions_validate_a_config_made_in_code(tmp_path: Path):
    from vidda.engine.eval_cli import run_eval
    from vidda.engine.run import dry_run, train

    overrides, msg = RULES["slide_window"]
    cfg = merge_overrides(Config(), list(overrides))
    with pytest.raises(ConfigError, match=msg):
        dry_run(cfg)
    with pytest.raises(ConfigError, match=msg):
        train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=msg):
        run_eval(cfg, tmp_path / "missing.pt", progress=False)
    assert not (tmp_path / "run").exists()

# Every config under configs/ loading and validating: tests/test_configs.py (load_config
# validates; test_every_config_is_valid also calls validate).


def test_slide_needs_both_window_sizes_and_one_exclusive_strategy_alone_is_fine():
    base = Config()
    with pytest.raises(ConfigError, match="eval.mode: slide needs eval.crop_size and eval.stride"):
        validate(merge_overrides(base, ["eval.mode=slide", "eval.crop_size=[64, 64]"]))
    validate(merge_overrides(base, ["method.name=dacs", "method.refine.strategies=[class_thing]"]))
    with pytest.raises(ConfigError, match="class_thing and class_stuff are exclusive"):
        validate(merge_overrides(base, ["method.refine.strategies=[class_thing, class_stuff]"]))
