"""``vidda experiments``: configs found by their paper block, launch lines, SLURM array scripts."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from vidda.cli import build_parser, main
from vidda.experiments import LAUNCHERS, discover, format_markdown

REPO = Path(__file__).parents[1]
CONFIGS = REPO / "configs"
DOC = REPO / "docs" / "results.md"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configs tree with two shifts, a target-only folder, a _base_ and a demo folder."""
    root = tmp_path / "configs"
    write(root / "_base_/common.yaml", "seed: 7\nmodel: {backbone: mit_b5, head: daformer}\n"
          "paper: {tables: [9], row: base row}\n")  # fmt: skip
    write(root / "_base_/dlv2.yaml", "model: {backbone: resnet101_v1c, head: dlv2}\n")
    write(root / "demo/toy.yaml", "paper: {tables: [5], row: Demo}\n")
    write(root / "src_tgt/alpha_mitb5.yaml", "_base_: [../_base_/common.yaml]\n"
          "paper: {tables: [5], row: Alpha}\n")  # fmt: skip
    write(root / "src_tgt/beta_dlv2.yaml", "_base_: [../_base_/common.yaml, ../_base_/dlv2.yaml]\n"
          "paper:\n  tables: [2, 5]\n  row: Beta\n")  # fmt: skip
    write(root / "tgt/target_only_dlv2.yaml", "_base_: [../_base_/dlv2.yaml]\n"
          "paper: {tables: [2], row: Target-only}\n")  # fmt: skip
    write(root / "other_tgt/gamma_mitb5.yaml", "paper: {tables: [2], row: Gamma}\n")
    monkeypatch.chdir(tmp_path)
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_discovery_reads_paper_blocks_and_skips_base_and_demo(tree: Path):
    found = {e.path.relative_to(tree).as_posix(): e for e in discover(tree)}
    assert sorted(found) == [
        "other_tgt/gamma_mitb5.yaml",
        "src_tgt/alpha_mitb5.yaml",
        "src_tgt/beta_dlv2.yaml",
        "tgt/target_only_dlv2.yaml",
    ]
    beta = found["src_tgt/beta_dlv2.yaml"]
    assert (beta.tables, beta.row, beta.shift, beta.backbone, beta.seed) == (
        (2, 5), "Beta", "src_tgt", "dlv2", 7)  # fmt: skip
    assert found["src_tgt/alpha_mitb5.yaml"].backbone == "mitb5"
    assert found["other_tgt/gamma_mitb5.yaml"].seed == 0  # the schema's default


def test_listing_groups_by_table_then_shift(tree: Path, capsys):
    rc, out, _ = run(["experiments", "--configs", str(tree)], capsys)
    assert rc == 0
    lines = out.splitlines()
    t2, t5 = lines.index("Table 2: Image-DA methods on the video-DA benchmarks"), next(
        i for i, line in enumerate(lines) if line.startswith("Table 5:"))  # fmt: skip
    assert t2 < t5
    table2 = [line.split() for line in lines[t2 + 1 : t5]]
    assert table2 == [
        ["other_tgt"], ["Gamma", "mitb5", "configs/other_tgt/gamma_mitb5.yaml"],
        ["src_tgt"], ["Beta", "dlv2", "configs/src_tgt/beta_dlv2.yaml"],
        ["tgt"], ["Target-only", "dlv2", "configs/tgt/target_only_dlv2.yaml"],
    ]  # fmt: skip
    table5 = [line.split() for line in lines[t5 + 1 : -1]]
    assert table5 == [
        ["src_tgt"],
        ["Alpha", "mitb5", "configs/src_tgt/alpha_mitb5.yaml"],
        ["Beta", "dlv2", "configs/src_tgt/beta_dlv2.yaml"],
    ]
    assert "Demo" not in out and "base row" not in out and lines[-1].startswith("4 experiment")


def test_new_config_with_a_paper_block_is_picked_up(tree: Path, capsys):
    write(tree / "src_tgt/delta_mitb5.yaml", "paper: {tables: [7], row: Delta}\n")
    rc, out, _ = run(["experiments", "--configs", str(tree), "--table", "7"], capsys)
    assert rc == 0 and "Table 7:" in out and "configs/src_tgt/delta_mitb5.yaml" in out


def test_rows_an_earlier_table_reports_come_first_within_a_backbone(tree: Path, capsys):
    write(tree / "src_tgt/aaa_dlv2.yaml", "_base_: [../_base_/dlv2.yaml]\n"
          "paper: {tables: [5], row: Aaa}\n")  # fmt: skip
    rc, out, _ = run(["experiments", "--configs", str(tree), "--table", "5"], capsys)
    assert rc == 0
    # Alpha: MiT-b5 first; Beta (also in Table 2, a reference row) before Aaa (Table 5 only)
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == ["Alpha", "Beta", "Aaa"]


def test_local_lines_per_config_and_seed_with_run_folders(tree: Path, capsys):
    argv = ["experiments", "--configs", str(tree), "--table", "2", "--shift", "src_tgt",
            "--launcher", "local", "--seeds", "1", "3", "--workdir", "wd"]  # fmt: skip
    rc, out, _ = run(argv, capsys)
    assert rc == 0
    # the shift src_tgt also brings the target-only configs of its target (folder tgt)
    assert out.splitlines() == [
        "vidda train configs/src_tgt/beta_dlv2.yaml --workdir wd/src_tgt/beta_dlv2/seed1 "
        "--seed 1 --resume auto",
        "vidda train configs/src_tgt/beta_dlv2.yaml --workdir wd/src_tgt/beta_dlv2/seed3 "
        "--seed 3 --resume auto",
        "vidda train configs/tgt/target_only_dlv2.yaml --workdir "
        "wd/tgt/target_only_dlv2/seed1 --seed 1 --resume auto",
        "vidda train configs/tgt/target_only_dlv2.yaml --workdir "
        "wd/tgt/target_only_dlv2/seed3 --seed 3 --resume auto",
    ]


def test_torchrun_lines_use_each_configs_seed_and_pass_extra_arguments(tree: Path, capsys):
    argv = ["experiments", "--configs", str(tree), "--table", "5", "--backbone", "dlv2",
            "--launcher", "torchrun", "--gpus", "4",
            "--", "optim.lr=1e-4", "--iters", "10"]  # fmt: skip
    rc, out, _ = run(argv, capsys)
    assert rc == 0
    assert out == (
        "torchrun --standalone --nproc_per_node=4 -m vidda train configs/src_tgt/beta_dlv2.yaml "
        "--workdir work_dirs/src_tgt/beta_dlv2/seed7 --seed 7 --resume auto optim.lr=1e-4 "
        "--iters 10\n"
    )


def test_slurm_array_script_runs_the_selected_task(tree: Path, tmp_path: Path, capsys):
    script = tmp_path / "t5.sh"
    argv = ["experiments", "--configs", str(tree), "--table", "5", "--launcher", "slurm",
            "--gpus", "2", "--seeds", "1", "2", "--out", str(script),
            "--sbatch=--partition=gpu", "--sbatch=--cpus-per-task=16"]  # fmt: skip
    rc, out, err = run(argv, capsys)
    assert rc == 0 and out == "" and str(script) in err
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    sbatch = re.findall(r"^#SBATCH (\S+)$", text, flags=re.M)
    assert "--array=0-3" in sbatch  # 2 configs x 2 seeds
    assert "--gres=gpu:2" in sbatch and "--partition=gpu" in sbatch
    assert [o for o in sbatch if o.startswith("--cpus-per-task")] == ["--cpus-per-task=16"]
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # Run task 2 with a stand-in srun that records its arguments.
    bin_dir = write(tmp_path / "bin/srun", '#!/bin/sh\necho "$@" > "$SRUN_LOG"\n').parent
    os.chmod(bin_dir / "srun", 0o755)
    log = tmp_path / "srun.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "2",
           "SRUN_LOG": str(log)}  # fmt: skip
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == [
        "torchrun", "--standalone", "--nproc_per_node=2", "-m", "vidda", "train",
        "configs/src_tgt/beta_dlv2.yaml", "--workdir", "work_dirs/src_tgt/beta_dlv2/seed1",
        "--seed", "1", "--resume", "auto",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--table", "4"], "tables: 2, 5"),
        (["--shift", "nope"], "shifts: other_tgt, src_tgt, tgt"),
        (["--launcher", "local", "--gpus", "2"], "--gpus"),
    ],
)
def test_bad_selections_are_one_line_errors(tree: Path, capsys, argv, message):
    rc, out, err = run(["experiments", "--configs", str(tree), *argv], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("vidda: error:") and message in err and err.count("\n") == 1


def test_missing_configs_folder_is_an_error(tmp_path: Path, capsys):
    rc, _, err = run(["experiments", "--configs", str(tmp_path / "none")], capsys)
    assert rc == 2 and "configs folder not found" in err


def test_cli_choices_match_the_modules():
    from vidda.report.table import CLASS_CHOICES, PROTOCOL_CHOICES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))

    def choices(command: str, dest: str) -> tuple:
        return tuple(next(a for a in sub.choices[command]._actions if a.dest == dest).choices)

    assert choices("experiments", "launcher") == LAUNCHERS
    assert choices("table", "protocol") == PROTOCOL_CHOICES
    assert choices("table", "classes") == CLASS_CHOICES


# --------------------------------------------------------------------------- the real configs


def _paper_block(path: Path) -> dict:
    """The file's own paper block, else the nearest one in its _base_ files (depth first)."""
    data = yaml.safe_load(path.read_text()) or {}
    if "paper" in data:
        return data["paper"] or {}
    bases = data.get("_base_", [])
    for base in [bases] if isinstance(bases, str) else reversed(bases):
        block = _paper_block(path.parent / base)
        if block:
            return block
    return {}


REAL = sorted(p for p in CONFIGS.rglob("*.yaml")
              if not {"_base_", "demo"} & set(p.relative_to(CONFIGS).parts[:-1]))  # fmt: skip


@pytest.mark.parametrize("path", REAL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_experiment_config_names_its_paper_table_and_row(path: Path):
    paper = _paper_block(path)
    tables = paper.get("tables")
    assert tables and all(isinstance(t, int) and 2 <= t <= 8 for t in tables), tables
    assert isinstance(paper.get("row"), str) and paper["row"].strip()
    assert isinstance(paper.get("notes"), str) and paper["notes"].strip()


def test_results_doc_map_names_every_config_and_only_existing_ones():
    rows = re.findall(r"^\| (.+?) \| (\w+) \| `([\w.]+)` \| (.+) \|$", DOC.read_text(), re.M)
    named = {f"{shift}/{name}" for *_, name, shifts in rows for shift in shifts.split(", ")}
    assert named, "docs/results.md names no config"
    assert sorted(n for n in named if not (CONFIGS / n).is_file()) == []
    assert sorted({p.relative_to(CONFIGS).as_posix() for p in REAL} - named) == []


def test_results_doc_map_is_the_generated_one():
    """docs/results.md's table → config map is `vidda experiments --format markdown`'s output
    (regenerate the section between the markers after adding or changing configs)."""
    text = DOC.read_text()
    begin, end = "<!-- experiments:begin -->\n", "<!-- experiments:end -->"
    assert begin in text and end in text
    section = text.split(begin, 1)[1].split(end, 1)[0]
    assert section.strip() == format_markdown(discover(CONFIGS)).strip()
