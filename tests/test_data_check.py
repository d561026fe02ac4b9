"""`vidda data check` reports every bad file by kind and path; exit 0 only when clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datatrees import bddvid, cityscapes_seq, write_label

from vidda.cli import main
from vidda.flow.io import write_flow


def test_clean_dataset_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = cityscapes_seq(tmp_path / "cs")
    assert main(["data", "check", "--dataset", "cityscapes-seq", str(root), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 entries, 2 clean — ok" in out and "1 entries, 1 clean — ok" in out
    assert "2 of 2 dataset splits clean" in out


def test_every_kind_of_problem_is_reported_by_path(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = cityscapes_seq(tmp_path / "cs")
    seq = root / "leftImg8bit_sequence/train"
    missing = seq / "aachen/aachen_000000_000017_leftImg8bit.png"
    missing.unlink()
    truncated = seq / "bochum/bochum_000000_000312_leftImg8bit.png"
    truncated.write_bytes(truncated.read_bytes()[:50])
    write_label(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelTrainIds.png", (0, 77))
    small_flow = root / "flow/backward_k1/train/bochum/bochum_000000_000313_leftImg8bit.png"
    write_flow(small_flow, np.zeros((4, 4, 2), np.float32))
    gone_flow = root / "flow/backward_k1/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    gone_flow.unlink()
    rc = main(["data", "check", "--dataset", "cityscapes-seq", str(root), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"1 × missing frame\n    {missing}" in out
    assert f"1 × unreadable image\n    {truncated}" in out
    assert "label values outside the class table" in out and "[77]" in out
    assert f"flow size differs from its frame\n    {small_flow}: 4x4 vs frame 40x24" in out
    assert f"1 × missing flow\n    {gone_flow}" in out
    assert "0 of 2 dataset splits clean" in out


def test_config_form_checks_source_target_val_and_rcs_stats(tmp_path: Path, capsys):
    cs = cityscapes_seq(tmp_path / "cs")
    bdd = bddvid(tmp_path / "bdd")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"data:\n  source:\n    type: bddvid\n    root: {bdd}\n"
        f"  target:\n    type: cityscapes-seq\n    root: {cs}\n"
        f"  val:\n    type: cityscapes-seq\n    root: {cs}\n    split: val\n"
        "    flow_offsets: [0]\n  rcs:\n    enabled: true\n"
    )
    assert main(["data", "check", str(cfg), "--workers", "0"]) == 1
    out = capsys.readouterr().out
    assert "missing class statistics" in out and str(bdd / "sample_class_stats.json") in out
    assert main(["data", "check", str(cfg), "data.rcs.enabled=false", "--workers", "0"]) == 0


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["data", "check"]) == 2
    assert "either a CONFIG or --dataset" in capsys.readouterr().err
    assert main(["data", "check", "--dataset", "kitti", str(tmp_path)]) == 2
    assert "unknown dataset 'kitti'" in capsys.readouterr().err
    assert main(["data", "check", "--dataset", "viper-seq", str(tmp_path / "none")]) == 1
    assert "root folder not found" in capsys.readouterr().out
