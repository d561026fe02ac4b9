"""``vidda table``: hand-written run folders give hand-computed tables (markdown and CSV)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from vidda.cli import main

SYNTHIA = (0, 1, 2, 5, 6, 7, 8, 10, 11, 12, 13)  # road ... car, written out by hand
VIPER = (0, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 17, 18)
CONFIG = """\
name: {name}
seed: {seed}
model: {{backbone: {backbone}, head: {head}}}
method: {{name: {method}}}
data:
  source: {{type: synthia-seq}}
  target: {{type: cityscapes-seq}}
  val: {{type: cityscapes-seq}}
schedule: {{iters: 40}}
paper: {{tables: [2], row: "{row}"}}
"""


def result(protocol: str, classes, iou: dict[int, float], miou: float, confusion=None) -> dict:
    """A result in ``vidda.metrics.to_json`` layout: 19 IoU fractions, None outside ``classes``."""
    ious = [iou.get(c) if c in classes else None for c in range(19)]
    out = {"protocol": protocol, "classes": list(classes), "iou": ious, "miou": miou}
    if confusion is not None:
        out["confusion"] = confusion
    return out


def make_run(run_dir: Path, results: dict | None, *, name="synthiaseq_csseq_hrda_mitb5", seed=1,
             row="HRDA", method="dacs", backbone="mit_b5", head="daformer",
             metrics: list[dict] | None = None) -> Path:  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(CONFIG.format(name=name, seed=seed, row=row,
                                                       method=method, backbone=backbone,
                                                       head=head))  # fmt: skip
    if results is not None:
        doc = {"config": name, "checkpoint": "latest.pt", "results": results}
        (run_dir / "eval.json").write_text(json.dumps(doc))
    if metrics is not None:
        lines = [json.dumps(m) for m in metrics]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9, "tra')  # torn
    return run_dir


def seeds_tree(root: Path) -> Path:
    """Two seeds of one config (11 SYNTHIA-Seq classes) and one run of a second config."""
    # seed 1: road 0.90, the other ten 0.40 -> mIoU (90 + 10 * 40) / 11 = 44.545454...
    s1 = {c: 0.40 for c in SYNTHIA} | {0: 0.90}
    # seed 2: road 0.80, the other ten 0.50 -> mIoU (80 + 10 * 50) / 11 = 52.727272...
    s2 = {c: 0.50 for c in SYNTHIA} | {0: 0.80}
    make_run(root / "synthiaseq_csseq/hrda_mitb5/seed1",
             {"standard": result("standard", SYNTHIA, s1, 490 / 11)})  # fmt: skip
    make_run(root / "synthiaseq_csseq/hrda_mitb5/seed2", {"standard": result(
        "standard", SYNTHIA, s2, 580 / 11)}, seed=2)  # fmt: skip
    so = {c: 0.25 for c in SYNTHIA}
    so_dir = root / "synthiaseq_csseq/source_only_dlv2/seed1"
    so_res = {"standard": result("standard", SYNTHIA, so, 25.0)}
    dlv2 = {"backbone": "resnet101_v1c", "head": "dlv2"}
    make_run(so_dir, so_res, name="so_dlv2", row="Source-only", method="source_only", **dlv2)
    return root


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def md_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]  # fmt: skip


def test_markdown_runs_and_seed_mean_std(tmp_path: Path, capsys):
    rc, out, _ = cli(["table", str(seeds_tree(tmp_path)), "--protocol", "standard"], capsys)
    assert rc == 0
    assert "### csseq: synthia_seq classes (11), standard protocol" in out
    header, *rows = md_rows(out)
    assert header == ["method", "backbone", "seed", "road", "sidewalk", "building", "pole",
                      "traffic light", "traffic sign", "vegetation", "sky", "person", "rider",
                      "car", "mIoU"]  # fmt: skip
    assert rows[0] == ["HRDA", "mitb5", "1", "90.0", *["40.0"] * 10, "44.5"]
    assert rows[1] == ["HRDA", "mitb5", "2", "80.0", *["50.0"] * 10, "52.7"]
    # mean of (90, 80) = 85, of (40, 50) = 45; sample std of two values a, b = |a - b| / sqrt 2:
    # 10 / 1.41421 = 7.07; mIoU: mean 48.636, std (580 - 490) / 11 / sqrt 2 = 5.785
    assert rows[2] == ["HRDA", "mitb5", "mean ± std (2)", "85.0 ± 7.1", *["45.0 ± 7.1"] * 10,
                       "48.6 ± 5.8"]  # fmt: skip
    assert rows[3] == ["Source-only", "dlv2", "1", *["25.0"] * 11, "25.0"]
    assert len(rows) == 4


def test_csv_parses_back_to_the_hand_computed_numbers(tmp_path: Path, capsys):
    argv = ["table", str(seeds_tree(tmp_path)), "--format", "csv", "--protocol", "standard"]
    rc, out, _ = cli(argv, capsys)
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5  # 3 runs, mean and std
    by = {(r["config"], r["stat"], r["seed"]): r for r in rows}
    assert float(by["synthiaseq_csseq_hrda_mitb5", "run", "1"]["road"]) == pytest.approx(90.0)
    assert float(by["synthiaseq_csseq_hrda_mitb5", "run", "2"]["mIoU"]) == pytest.approx(52.7273)
    mean, sd = by["synthiaseq_csseq_hrda_mitb5", "mean", ""], by["synthiaseq_csseq_hrda_mitb5",
                                                                "std", ""]  # fmt: skip
    assert float(mean["road"]) == pytest.approx(85.0) and float(mean["car"]) == pytest.approx(45.0)
    assert float(sd["road"]) == pytest.approx(10 / math.sqrt(2), abs=1e-4)
    assert float(mean["mIoU"]) == pytest.approx(535 / 11, abs=1e-4)
    assert float(sd["mIoU"]) == pytest.approx(90 / 11 / math.sqrt(2), abs=1e-4)
    assert mean["n"] == "2" and mean["run_dir"] == ""
    assert by["so_dlv2", "run", "1"]["backbone"] == "dlv2"
    assert "wall" not in rows[0]  # only the 11 SYNTHIA-Seq classes are columns


def test_uvda_columns_need_a_uvda_result_or_a_confusion_matrix(tmp_path: Path, capsys):
    rc, _, err = cli(["table", str(seeds_tree(tmp_path)), "--protocol", "uvda"], capsys)
    assert rc == 2 and "cannot score the uvda protocol" in err and "eval.json" in err


def confusion() -> list[list[int]]:
    """GT road: 8 road, 2 pole; GT car: 6 car, 2 road; GT pole: 3 pole (19 x 19, rows = GT)."""
    m = [[0] * 19 for _ in range(19)]
    m[0][0], m[0][5], m[13][13], m[13][0], m[5][5] = 8, 2, 6, 2, 3
    return m


def test_viper_columns_recomputed_from_an_all_class_confusion_matrix(tmp_path: Path, capsys):
    stored = {"standard": result("standard", range(19), {0: 0.5}, 50.0, confusion())}
    make_run(tmp_path / "csseq/target_only_mitb5/seed1", stored, name="csseq_target_only_mitb5",
             row="Target-only", method="target_only")  # fmt: skip
    rc, out, _ = cli(["table", str(tmp_path), "--classes", "viper", "--format", "csv"], capsys)
    assert rc == 0
    rows = {r["protocol"]: r for r in csv.DictReader(io.StringIO(out))}
    std, uvda = rows["standard"], rows["uvda"]
    assert std["classes"] == "viper classes (15)" and "pole" not in std
    # standard (GT in the subset): road I 8, GT 10, predicted 8 + 2 -> U 12; car I 6, U 8
    assert float(std["road"]) == pytest.approx(800 / 12, abs=1e-4)
    assert float(std["car"]) == pytest.approx(75.0)
    assert float(std["mIoU"]) == pytest.approx((800 / 12 + 75) / 2, abs=1e-4)
    # uvda (GT and prediction in the subset): the 2 road->pole pixels are dropped: road 8 / 10
    assert float(uvda["road"]) == pytest.approx(80.0) and float(uvda["car"]) == pytest.approx(75.0)
    assert float(uvda["mIoU"]) == pytest.approx(77.5)
    assert std["sidewalk"] == "" and std["target"] == "csseq"  # no pixels: undefined


def test_a_subset_cannot_be_widened(tmp_path: Path, capsys):
    s = {c: 0.5 for c in SYNTHIA}
    make_run(tmp_path / "r", {"standard": result("standard", SYNTHIA, s, 50.0, confusion())})
    rc, _, err = cli(["table", str(tmp_path / "r"), "--classes", "viper"], capsys)
    assert rc == 2 and "cannot score" in err


def test_last_evaluation_of_metrics_jsonl_without_eval_json(tmp_path: Path, capsys):
    early = {"step": 20, "eval_full": {"result": {"standard": result("standard", SYNTHIA,
             {c: 0.1 for c in SYNTHIA}, 10.0)}}}  # fmt: skip
    late = {"step": 30, "eval_full": {"result": {"standard": result("standard", SYNTHIA,
            {c: 0.3 for c in SYNTHIA}, 30.0)}}}  # fmt: skip
    train = {"step": 25, "train": {"loss": 1.0}}
    make_run(tmp_path / "r", None, metrics=[early, train, late, train])
    rc, out, err = cli(["table", str(tmp_path / "r"), "--protocol", "standard"], capsys)
    assert rc == 0
    assert md_rows(out)[1] == ["HRDA", "mitb5", "1", *["30.0"] * 11, "30.0"]
    assert "iteration 30 of 40" in err  # the schedule has 40 iterations: flagged as unfinished


def test_eval_json_is_preferred_over_metrics_jsonl(tmp_path: Path, capsys):
    log = {"step": 40, "eval_full": {"result": {"standard": result("standard", SYNTHIA,
           {c: 0.1 for c in SYNTHIA}, 10.0)}}}  # fmt: skip
    make_run(tmp_path / "r", {"standard": result("standard", SYNTHIA, {c: 0.6 for c in SYNTHIA},
             60.0)}, metrics=[log])  # fmt: skip
    rc, out, err = cli(["table", str(tmp_path / "r"), "--protocol", "standard"], capsys)
    assert rc == 0 and md_rows(out)[1][-1] == "60.0" and err == ""


def test_missing_results_name_the_run_folder(tmp_path: Path, capsys):
    seeds_tree(tmp_path)
    empty = make_run(tmp_path / "synthiaseq_csseq/hrda_mic_mitb5/seed1", None, name="x",
                     metrics=[{"step": 5, "train": {"loss": 2.0}}])  # fmt: skip
    rc, out, err = cli(["table", str(tmp_path)], capsys)
    assert rc == 2 and out == "" and str(empty) in err and "no evaluation results" in err
    rc, out, err = cli(["table", str(tmp_path), "--skip-missing", "--protocol", "standard"],
                       capsys)  # fmt: skip
    assert rc == 0 and "warning: skipped" in err and str(empty) in err
    assert len(md_rows(out)) == 5  # header + the 4 rows of the other runs


def test_paths_without_runs_are_errors(tmp_path: Path, capsys):
    rc, _, err = cli(["table", str(tmp_path / "nowhere")], capsys)
    assert rc == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(["table", str(tmp_path / "empty")], capsys)
    assert rc == 2 and "no run folder" in err
