"""Every experiment config in configs/ validates and builds (``vidda train --dry-run``).

There are ~170 configs, and one dry run builds a full-size model on the meta device and its
method (~1 s each here). Configs that differ only in data, evaluation or hyper-parameter values
build the same modules, so every config is loaded and checked the way the dry run checks it
except for building the model (``test_every_config_is_valid``), and one config per distinct
model architecture and set of switched-on techniques is dry-run through the CLI
(``test_dry_run_one_config_per_model_and_method``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vidda.cli import main
from vidda.config import load_config, validate
from vidda.config.schema import Config
from vidda.data.build import build_transform
from vidda.uda.fd import FD_CLASSES_GTA_SYNTHIA

ROOT = Path(__file__).parents[1] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "_base_" not in p.parts and p.stem != "_base_")
SHIFTS = ("viper_csseq", "synthiaseq_csseq", "viper_bddvid", "synthiaseq_bddvid")
STRATEGIES = ("consis", "max_conf", "warp_frame", "oracle", "rare_class")
TABLE_4 = ("video_discrim", "video_discrim_consis", "accel_mixup", "accel_mixup_consis",
           "accel_mixup_warp_frame", "accel_mixup_discrim", "accel_mixup_discrim_consis",
           "accel_mixup_discrim_max_conf", "tps", "da_vsn", "uda_vss", "mom")  # fmt: skip


@pytest.fixture(scope="module")
def configs() -> dict[Path, Config]:
    return {p: load_config(p) for p in CONFIGS}


def build_key(cfg: Config) -> tuple:
    """What decides which modules a dry run builds: architecture and switched-on techniques."""
    m, model = cfg.method, cfg.model
    return (model.segmentor, model.accel.base, model.backbone, model.head, m.name,
            m.fd.enabled, m.mic.enabled, m.refine.enabled, m.discriminator.enabled)  # fmt: skip


def test_every_shift_and_backbone_has_the_table_2_and_3_rows():
    names = {str(p.relative_to(ROOT)) for p in CONFIGS}
    for shift in ("viper_csseq", "synthiaseq_csseq", "viper_bddvid", "synthiaseq_bddvid"):
        for row in ("hrda_mic", "hrda", "source_only"):
            for bb in ("mitb5", "dlv2"):
                assert f"{shift}/{row}_{bb}.yaml" in names
        for row in ("no_mrfusion", "no_mrfusion_no_rcs", "no_mrfusion_no_rcs_no_fd"):
            assert f"{shift}/hrda_dlv2_{row}.yaml" in names
    for target in ("csseq", "bddvid"):
        for bb in ("mitb5", "dlv2"):
            assert f"{target}/target_only_{bb}.yaml" in names


def test_every_shift_has_the_video_rows():
    names = {str(p.relative_to(ROOT)) for p in CONFIGS}
    for shift in SHIFTS:
        for x in STRATEGIES:
            for bb in ("mitb5", "dlv2"):
                assert f"{shift}/hrda_mic_{x}_{bb}.yaml" in names
                assert f"{shift}/hrda_{x}_{bb}.yaml" in names
        for row in TABLE_4:
            assert f"{shift}/{row}_dlv2.yaml" in names


def test_every_config_is_valid(configs: dict[Path, Config]):
    """Everything the dry run checks except building the model, and the paper section."""
    for path, cfg in configs.items():
        where = str(path.relative_to(ROOT))
        validate(cfg)
        for key in ("source", "target", "val"):
            build_transform(getattr(cfg.data, key), key != "val", cfg.compat)
        if path.parent.name != "demo":
            assert cfg.paper.tables and cfg.paper.row and cfg.paper.notes, where
            assert cfg.name == f"{path.parent.name}_{path.stem}", where


def test_dry_run_one_config_per_model_and_method(configs, capsys: pytest.CaptureFixture):
    chosen: dict[tuple, Path] = {}
    for path, cfg in configs.items():
        chosen.setdefault(build_key(cfg), path)
    assert len(chosen) >= 20  # every technique combination of the paper rows is covered
    for path in chosen.values():
        assert main(["train", str(path), "--dry-run"]) == 0, (path, capsys.readouterr().err)
        err = capsys.readouterr().err
        assert "is valid" in err and "parameters" in err, path


def test_video_rows_switch_on_what_they_say(configs):
    def cfg(name: str) -> Config:
        return configs[ROOT / name]

    c = cfg("viper_csseq/hrda_mic_consis_mitb5.yaml")
    r = c.method.refine
    assert r.enabled and r.strategies == ["consis"] and (r.l_warp, r.l_mix, r.begin) == (1, 0, 1500)
    assert r.fill == "bottom" and c.method.mic.enabled and c.method.mix == "class"
    assert c.data.target.offsets == [-1, 0] and c.data.target.flow_offsets == [0]
    assert c.data.source.offsets == [0] and c.model.segmentor == "hrda" and c.paper.tables == [5]
    c = cfg("synthiaseq_bddvid/hrda_rare_class_dlv2.yaml")
    assert c.method.refine.strategies == ["rare_class"] and not c.method.mic.enabled
    assert c.model.segmentor_kwargs["hr_crop"] == [360, 360] and c.paper.tables == [8]
    assert cfg("viper_csseq/hrda_consis_dlv2.yaml").paper.tables == [4, 8]
    assert cfg("viper_csseq/video_discrim_consis_dlv2.yaml").method.refine.begin == 0
    assert cfg("synthiaseq_csseq/video_discrim_consis_dlv2.yaml").method.refine.begin == 1500
    d = cfg("viper_bddvid/video_discrim_dlv2.yaml")
    assert d.method.discriminator.enabled and d.method.discriminator.weight == 0.1
    assert not d.method.refine.enabled and d.data.source.offsets == [-1, 0]
    tps = cfg("viper_csseq/tps_dlv2.yaml")
    assert tps.model.segmentor == "accel" and tps.model.accel.base == "hrda"
    assert tps.method.mix == "class" and tps.method.consistent_mix and not tps.method.mic.enabled
    assert tps.method.refine.strategies == ["warp_frame"] and not tps.method.discriminator.enabled
    assert tps.data.target.offsets == [-2, -1, 0] and tps.data.target.flow_offsets == [-1, 0]
    assert tps.data.val.offsets == [-1, 0] and tps.paper.row == "TPS"
    dv = cfg("viper_csseq/da_vsn_dlv2.yaml")
    assert dv.method.discriminator.enabled and dv.method.refine.strategies == ["max_conf"]
    assert dv.method.mix == "class" and dv.model.segmentor == "accel"
    vss = cfg("viper_csseq/uda_vss_dlv2.yaml")
    assert vss.model.segmentor == "accel" and vss.method.mix == "none"
    assert vss.method.discriminator.enabled and vss.method.refine.strategies == ["consis"]
    mom = cfg("viper_csseq/mom_dlv2.yaml")
    assert mom.method.mix == "class" and not mom.method.discriminator.enabled
    assert mom.method.refine.strategies == ["consis"] and mom.model.segmentor == "accel"
    for c in configs.values():  # the video rows run the fixed behaviour (compat switches off)
        m = c.method
        if m.refine.enabled or m.discriminator.enabled or c.model.segmentor == "accel":
            assert not any(vars(c.compat).values()), c.name


def test_rows_switch_on_what_they_say():
    mic = load_config(ROOT / "viper_csseq/hrda_mic_mitb5.yaml")
    assert mic.method.name == "dacs" and mic.method.mic.enabled and mic.method.fd.enabled
    assert mic.data.rcs.enabled and mic.model.segmentor == "hrda" and mic.eval.classes == "viper"
    assert mic.method.fd.classes == [c for c in FD_CLASSES_GTA_SYNTHIA if c != 12]  # no rider
    hrda = load_config(ROOT / "synthiaseq_csseq/hrda_dlv2.yaml")
    assert not hrda.method.mic.enabled and hrda.model.head == "dlv2"
    assert 12 in hrda.method.fd.classes and hrda.eval.classes == "synthia_seq"
    bdd = load_config(ROOT / "viper_bddvid/hrda_mic_dlv2.yaml")
    assert bdd.model.segmentor_kwargs["hr_crop"] == [360, 360] and bdd.eval.crop_size == [720, 720]
    assert not bdd.data.target.pl_margins and bdd.data.val.split == "val_orig_10k"
    t3 = load_config(ROOT / "viper_csseq/hrda_dlv2_no_mrfusion_no_rcs_no_fd.yaml")
    assert t3.model.segmentor == "encoder_decoder" and t3.data.batch_size == 1
    assert not t3.data.rcs.enabled and not t3.method.fd.enabled and not t3.method.mic.enabled
    so = load_config(ROOT / "viper_csseq/source_only_mitb5.yaml")
    assert so.method.name == "source_only" and so.schedule.iters == 40000 and so.seed == 1


def test_missing_pretrained_file_is_a_clear_error_before_training(tmp_path, capsys):
    cfg = ROOT / "viper_csseq/source_only_mitb5.yaml"
    rc = main(["train", str(cfg), f"model.pretrained={tmp_path}/mit_b5.pth",
               f"--workdir={tmp_path}/run"])  # fmt: skip
    assert rc == 2
    assert "backbone weights not found" in capsys.readouterr().err
