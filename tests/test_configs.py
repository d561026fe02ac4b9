"""Every experiment config in configs/ validates and builds (``vidda train --dry-run``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidda.cli import main
from vidda.config import load_config

ROOT = Path(__file__).parents[1] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "_base_" not in p.parts and p.stem != "_base_")


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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_dry_run(path: Path, capsys: pytest.CaptureFixture):
    assert main(["train", str(path), "--dry-run"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "is valid" in err and "parameters" in err


def test_rows_switch_on_what_they_say():
    mic = load_config(ROOT / "viper_csseq/hrda_mic_mitb5.yaml")
    assert mic.method.name == "dacs" and mic.method.mic.enabled and mic.method.fd.enabled
    assert mic.data.rcs.enabled and mic.model.segmentor == "hrda" and mic.eval.classes == "viper"
    assert mic.method.fd.classes == [6, 7, 11, 13, 14, 15, 16, 17, 18]  # VIPER: no rider
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
