"""`vidda demo`: the synthetic benchmark (cached), source-only vs adapted training, the summary.

The end-to-end ``--quick`` test runs in CI (about 2-3 minutes on 2 CPU cores); the default demo
for three seeds is marked slow.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidda.classes import PALETTE
from vidda.cli import main
from vidda.config.load import config_from_dict
from vidda.demo import contact_sheet, format_table, summary_line, synthetic_data

SUMMARY = re.compile(r"^demo: source_only=(\d+\.\d) adapted=(\d+\.\d) gain=(-?\d+\.\d)$")
MIN_GAIN = 5.0  # the default demo, every seed (slow test)
# --quick in CI: seeds 0, 1, 2 gained 7.0, 8.3 and 4.8 points here. Another CPU may take other
# kernels, and a few float differences send a short from-scratch training elsewhere, much like
# another seed; the CI run therefore checks for a clear gain, the slow test for the full one.
MIN_QUICK_GAIN = 2.0


def test_benchmark_is_cached_and_shown() -> None:
    root = synthetic_data(None, seed=0, shift=1.0)
    cache = Path(os.environ["VIDDA_CACHE"]) / "synthetic" / "seed0_shift1"
    assert root == cache
    meta = cache / "meta.json"
    stamp = meta.stat().st_mtime_ns
    assert synthetic_data(None, seed=0, shift=1.0) == cache  # reused, not regenerated
    assert meta.stat().st_mtime_ns == stamp

    sheet = contact_sheet(root)
    assert sheet.shape[0] > 6 * 128 and sheet.shape[1] > 3 * 256  # 6 rows of 3 panels
    colours = {tuple(c) for c in sheet.reshape(-1, 3)[::7]}
    assert {PALETTE[0], PALETTE[2], PALETTE[10], PALETTE[13]} <= colours  # labels drawn


def test_cache_of_an_older_generator_is_replaced(tmp_path: Path) -> None:
    root = synthetic_data(None, seed=0, shift=1.0)
    meta = json.loads((root / "meta.json").read_text())
    (root / "meta.json").write_text(json.dumps({**meta, "version": -1}))
    assert synthetic_data(None, seed=0, shift=1.0) == root
    assert json.loads((root / "meta.json").read_text())["version"] == meta["version"]
    # a folder the user names is never overwritten
    (root / "meta.json").write_text(json.dumps({**meta, "version": -1}))
    with pytest.raises(FileExistsError):
        synthetic_data(root, seed=0, shift=1.0)
    synthetic_data(None, seed=0, shift=1.0)


def test_table_and_summary_line() -> None:
    runs = {
        "source_only": {"miou": 41.23, "miou_uvda": 42.0, "iou": {"road": 0.9, "car": 0.2}},
        "adapted": {"miou": 55.68, "miou_uvda": 56.0, "iou": {"road": 0.95, "sky": 0.5}},
    }
    assert summary_line(runs) == "demo: source_only=41.2 adapted=55.7 gain=14.5"
    table = format_table(runs)
    assert "source_only" in table and "adapted" in table
    assert re.search(r"^car +20\.0 +-$", table, re.M)
    assert re.search(r"^mIoU +41\.2 +55\.7$", table, re.M)
    runs["refined"] = {"miou": 57.04, "miou_uvda": 57.0, "iou": {}}
    runs["accel"] = {"miou": 50.0, "miou_uvda": 50.0, "iou": {}}
    pl = {"pl_acc_raw": 0.8123, "pl_acc_refined": 0.9351, "pl_coverage_refined": 0.71}
    assert summary_line(runs, pl) == ("demo: source_only=41.2 adapted=55.7 gain=14.5 "
                                      "refined=57.0 accel=50.0 pl_acc_raw=81.2 "
                                      "pl_acc_refined=93.5 pl_coverage_refined=71.0")  # fmt: skip


def _run_demo(out: Path, capsys, *args: str) -> tuple[float, float, list[str]]:
    assert main(["demo", "--out", str(out), "--no-progress", *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    so, ad, gain = (float(g) for g in match.groups())
    assert abs(ad - so - gain) < 0.11
    return so, ad, lines


def test_quick_demo_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    so, ad, lines = _run_demo(out, capsys, "--quick")
    assert ad - so >= MIN_QUICK_GAIN, lines[-1]

    assert any(line.startswith("synthetic benchmark: ") for line in lines)
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 6 * 128
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 0 and results["quick"] is True
    assert round(results["runs"]["source_only"]["miou"], 1) == so
    assert round(results["runs"]["adapted"]["miou"], 1) == ad
    for name, method in (("source_only", "source_only"), ("adapted", "dacs")):
        state = torch.load(out / name / "latest.pt", map_location="cpu", weights_only=False)
        cfg = config_from_dict(state["config"])  # the resolved config travels with the weights
        assert cfg.method.name == method and cfg.seed == 0
        assert Path(cfg.data.val.root) == Path(results["data"])
        assert state["step"] == results["runs"][name]["iterations"]
        assert (out / name / "config.yaml").is_file()
    assert not np.isnan(results["runs"]["adapted"]["miou_uvda"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_demo_gain(tmp_path: Path, capsys, seed: int) -> None:
    so, ad, lines = _run_demo(tmp_path / "demo", capsys, "--seed", str(seed))
    assert ad - so >= MIN_GAIN, lines[-1]


@pytest.mark.slow
def test_video_demo_reports_refined_pseudo_labels(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--no-progress", "--quick", "--video"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.removeprefix("demo: ").split())
    assert {"source_only", "adapted", "gain", "refined", "accel", "pl_acc_raw",
            "pl_acc_refined", "pl_coverage_refined"} <= set(fields), last  # fmt: skip
    assert 0 < float(fields["pl_coverage_refined"]) < 100
    # the consistency filter keeps the pixels where frames t-1 and t agree: more of them right
    assert float(fields["pl_acc_refined"]) > float(fields["pl_acc_raw"]), last
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["video"] is True and set(results["runs"]) == {
        "source_only", "adapted", "refined", "accel"}  # fmt: skip
