"""``vidda experiments``: the paper's experiment configs by table and the commands to launch them.

Every experiment config under ``configs/`` (all but ``_base_/`` and ``demo/``) has a ``paper:``
block naming the tables of the paper that report it and its row there. :func:`discover` reads
those blocks (no other module lists experiments, so a new config file is picked up as it lands),
:func:`select` filters them, and the ``format_*`` / ``*_commands`` / :func:`slurm_script`
functions render a listing or the launch commands:

* ``local``: one ``vidda train CFG --workdir RUN --seed S --resume auto`` per config and seed;
* ``torchrun``: the same under ``torchrun --standalone --nproc_per_node=N -m vidda``;
* ``slurm``: one array job whose task ``$SLURM_ARRAY_TASK_ID`` runs one of those commands under
  ``srun torchrun``, so a whole table is one ``sbatch``.

A run's folder is ``<workdir>/<shift>/<config stem>/seed<S>`` (given to ``vidda train --workdir``
explicitly; ``vidda table <workdir>/<shift>`` collects it). ``--resume auto`` makes a relaunched
or requeued run continue from its ``latest.pt``.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidda.errors import UserError

SKIPPED_DIRS = ("_base_", "demo")
"""Folders under the configs root that hold no experiment configs."""

TABLE_TITLES: dict[int, str] = {
    2: "Image-DA methods on the video-DA benchmarks",
    3: "HRDA ablation (DLV2)",
    4: "Video-DA methods on HRDA (DLV2)",
    5: "Pseudo-label refinement on HRDA+MIC (MiT-b5)",
    6: "Pseudo-label refinement on HRDA (MiT-b5)",
    7: "Pseudo-label refinement on HRDA+MIC (DLV2)",
    8: "Pseudo-label refinement on HRDA (DLV2)",
}
"""The paper's experiment tables (docs/results.md)."""

BACKBONE_ORDER = ("mitb5", "dlv2")
LAUNCHERS = ("list", "local", "torchrun", "slurm")


@dataclass(frozen=True)
class Experiment:
    """One experiment config and where the paper reports it."""

    path: Path  # the config file
    shift: str  # its folder under the configs root: "viper_csseq", ... ("csseq": target-only)
    tables: tuple[int, ...]  # the paper's tables that report it
    row: str  # the row's name there ("" when the config has no paper block)
    notes: str
    backbone: str  # "mitb5", "dlv2" or another backbone's name
    seed: int  # the config's own seed

    @property
    def stem(self) -> str:
        return self.path.stem

    def run_dir(self, workdir: str | Path, seed: int) -> Path:
        """``<workdir>/<shift>/<config stem>/seed<seed>``."""
        return Path(workdir) / self.shift / self.stem / f"seed{seed}"


# --------------------------------------------------------------------------- discovery


def default_configs_root() -> Path:
    """The ``configs/`` folder of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "configs"


def configs_root(override: str | Path | None = None) -> Path:
    """``override`` (``--configs DIR``) or the checkout's ``configs/``; an existing folder."""
    root = Path(override) if override is not None else default_configs_root()
    if not root.is_dir():
        hint = "" if override is not None else " (vidda is not run from a source checkout)"
        raise UserError(f"configs folder not found: {root}{hint}; give --configs DIR")
    return root


def discover(root: str | Path) -> list[Experiment]:
    """Every experiment config under ``root`` (``**/*.yaml`` except ``_base_/``, ``demo/``)."""
    root = Path(root)
    found = []
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in rel.parts[:-1]) or path.stem == "_base_":
            continue
        found.append(_experiment(path, rel))
    return found


def _experiment(path: Path, rel: Path) -> Experiment:
    data = read_merged_yaml(path)
    paper = data.get("paper") or {}
    if not isinstance(paper, dict):
        raise UserError(f"{path}: 'paper' must be a mapping (tables, row, notes)")
    tables = paper.get("tables") or []
    if not isinstance(tables, list) or not all(isinstance(t, int) for t in tables):
        raise UserError(f"{path}: paper.tables must be a list of table numbers, got {tables!r}")
    row, notes = paper.get("row") or "", paper.get("notes") or ""
    if not isinstance(row, str) or not isinstance(notes, str):
        raise UserError(f"{path}: paper.row and paper.notes must be strings")
    shift = rel.parent.as_posix() if rel.parent != Path() else "."
    seed = data.get("seed", 0)
    return Experiment(path, shift, tuple(tables), row, notes.strip(),
                      backbone_label(data.get("model") or {}), int(seed))  # fmt: skip


def read_merged_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``path`` merged over its ``_base_`` files, as plain YAML data (not checked by the schema).

    Much faster than ``vidda.config.load_config`` (no OmegaConf), which matters when listing
    a hundred configs; same merge order: bases depth first in list order, then the file.
    """
    path = path.resolve()
    if path in chain:
        raise UserError(f"_base_ inheritance cycle at {path}")
    try:
        stat = path.stat()
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err}") from err
    data = dict(_parse_yaml(path, stat.st_mtime_ns, stat.st_size))
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_merged_yaml(path.parent / base, (*chain, path)))
    return _deep_merge(merged, data)


@functools.lru_cache(maxsize=512)
def _parse_yaml(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """A config file's YAML (cached: the same bases are read by many configs). Do not mutate."""
    del mtime_ns, size  # cache keys only: a changed file is read again
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read config {path}: {err}".splitlines()[0]) from err
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must hold a mapping")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def backbone_label(model: dict[str, Any]) -> str:
    """``"dlv2"`` for a DeepLabV2 head, ``"mitb5"`` for MiT-b5, else the backbone's name."""
    if model.get("head") == "dlv2":
        return "dlv2"
    return str(model.get("backbone", "mit_b5")).replace("_", "")


# --------------------------------------------------------------------------- selection


def select(
    experiments: Sequence[Experiment],
    tables: Sequence[int] | None = None,
    shifts: Sequence[str] | None = None,
    backbone: str | None = None,
) -> list[Experiment]:
    """The experiments in any of ``tables``, of any of ``shifts``, with ``backbone``.

    A shift ``<source>_<target>`` also selects the target-only configs of its target (folder
    ``<target>``), which its Table 2 compares against. Unknown tables or shifts are errors
    that list the valid ones.
    """
    valid_tables = sorted({t for e in experiments for t in e.tables})
    bad = [t for t in tables or () if t not in valid_tables]
    if bad:
        raise UserError(f"no experiment config is in table {', '.join(map(str, bad))}; "
                        f"tables: {', '.join(map(str, valid_tables)) or 'none'}")  # fmt: skip
    valid_shifts = sorted({e.shift for e in experiments})
    bad_shifts = [s for s in shifts or () if s not in valid_shifts]
    if bad_shifts:
        raise UserError(f"unknown shift {', '.join(bad_shifts)}; shifts: {', '.join(valid_shifts)}")
    out = []
    for exp in experiments:
        if tables and not set(tables) & set(exp.tables):
            continue
        if shifts and not any(_shift_covers(s, exp.shift) for s in shifts):
            continue
        if backbone and exp.backbone != backbone:
            continue
        out.append(exp)
    return out


def _shift_covers(shift: str, folder: str) -> bool:
    return folder == shift or shift.endswith(f"_{folder}")


def by_table(
    experiments: Sequence[Experiment], tables: Sequence[int] | None = None
) -> dict[int | None, dict[str, list[Experiment]]]:
    """``{table: {shift: [experiments]}}`` in table and shift order, rows by :func:`row_order`.

    A config in several tables appears under each (restricted to ``tables`` when given);
    configs without a table are under ``None``.
    """
    groups: dict[int | None, dict[str, list[Experiment]]] = {}
    for exp in sorted(experiments, key=_order):
        for table in exp.tables or (None,):
            if tables and table not in tables:
                continue
            groups.setdefault(table, {}).setdefault(exp.shift, []).append(exp)
    for table, shifts in groups.items():
        for exps in shifts.values():
            exps.sort(key=lambda e, t=table: row_order(e, t))
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def row_order(exp: Experiment, table: int | None) -> tuple[int, bool, str]:
    """Backbone (MiT-b5 first), then the rows an earlier table already reports (baselines,
    source- and target-only: the references the table compares with), then by file name."""
    rank = BACKBONE_ORDER.index(exp.backbone) if exp.backbone in BACKBONE_ORDER else 99
    own = table is None or not exp.tables or min(exp.tables) >= table
    return rank, own, exp.stem


def _order(exp: Experiment) -> tuple[str, int, bool, str]:
    """Shift, then backbone, then file name (the launch order)."""
    return exp.shift, *row_order(exp, None)


# --------------------------------------------------------------------------- listings


def display_path(path: Path, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: the current folder) when inside it, else absolute."""
    base = (base or Path.cwd()).resolve()
    try:
        return path.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(path.resolve())


def format_listing(experiments: Sequence[Experiment], tables: Sequence[int] | None = None) -> str:
    """Experiments grouped by paper table, then shift: row name, backbone, config path."""
    lines: list[str] = []
    groups = by_table(experiments, tables)
    width = max((len(e.row or e.stem) for e in experiments), default=10)
    for table, shifts in groups.items():
        title = f"Table {table}: {TABLE_TITLES.get(table, '')}".rstrip(": ") if table else \
            "Not in a paper table"  # fmt: skip
        lines.append(title)
        for shift, exps in shifts.items():
            lines.append(f"  {shift}")
            for exp in exps:
                lines.append(f"    {exp.row or exp.stem:<{width}}  {exp.backbone:<6} "
                             f"{display_path(exp.path)}")  # fmt: skip
    unique = len({e.path for e in experiments})
    lines.append(f"{unique} experiment config{'s' * (unique != 1)} in {len(groups)} table(s)")
    return "\n".join(lines)


def format_markdown(experiments: Sequence[Experiment]) -> str:
    """The table → config map of ``docs/results.md``: per table, one line per row and config
    file name, with the shifts (config folders) that have it."""
    out: list[str] = []
    for table, shifts in by_table(experiments).items():
        title = f"Table {table}: {TABLE_TITLES.get(table, '')}" if table else "No paper table"
        rows: dict[tuple[str, str, str], tuple[Experiment, list[str]]] = {}
        for shift, exps in shifts.items():
            for exp in exps:
                key = (exp.row or exp.stem, exp.backbone, exp.path.name)
                rows.setdefault(key, (exp, []))[1].append(shift)
        ordered = sorted(rows.items(), key=lambda kv: row_order(kv[1][0], table))
        out += [f"### {title}", "", "| row | backbone | config | shifts |", "|---|---|---|---|"]
        out += [f"| {row} | {bb} | `{name}` | {', '.join(shifts)} |"
                for (row, bb, name), (_, shifts) in ordered]  # fmt: skip
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- launch commands


@dataclass(frozen=True)
class Launch:
    """What the launch commands need besides the experiments."""

    workdir: str = "work_dirs"
    seeds: tuple[int, ...] | None = None  # None: each config's own seed
    gpus: int = 1
    extra: tuple[str, ...] = ()  # appended to every `vidda train` (KEY=VALUE overrides, flags)


def runs(experiments: Iterable[Experiment], launch: Launch) -> list[tuple[Experiment, int]]:
    """(experiment, seed) pairs, each config once, in listing order."""
    unique = {e.path: e for e in sorted(experiments, key=_order)}.values()
    return [(e, s) for e in unique for s in (launch.seeds or (e.seed,))]


def train_args(exp: Experiment, seed: int, launch: Launch) -> list[str]:
    """``train CFG --workdir RUN --seed S --resume auto [extra...]`` (argv after ``vidda``)."""
    run_dir = exp.run_dir(launch.workdir, seed)
    return ["train", display_path(exp.path), "--workdir", run_dir.as_posix(),
            "--seed", str(seed), "--resume", "auto", *launch.extra]  # fmt: skip


def local_commands(experiments: Iterable[Experiment], launch: Launch) -> list[str]:
    """One ``vidda train ...`` line per config and seed."""
    if launch.gpus != 1:
        raise UserError("--gpus N > 1 needs --launcher torchrun or slurm")
    return [shlex.join(["vidda", *train_args(e, s, launch)]) for e, s in runs(experiments, launch)]


def torchrun_prefix(gpus: int) -> list[str]:
    return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "vidda"]


def torchrun_commands(experiments: Iterable[Experiment], launch: Launch) -> list[str]:
    """One ``torchrun --standalone --nproc_per_node=N -m vidda train ...`` line per run."""
    prefix = torchrun_prefix(launch.gpus)
    return [shlex.join([*prefix, *train_args(e, s, launch)]) for e, s in runs(experiments, launch)]


def slurm_script(
    experiments: Iterable[Experiment],
    launch: Launch,
    job_name: str = "vidda",
    sbatch_options: Sequence[str] = (),
) -> str:
    """A SLURM array script: task i runs the i-th ``vidda train`` under ``srun torchrun``.

    ``sbatch_options`` (e.g. ``--partition=gpu``, ``--time=2-00:00:00``) become extra
    ``#SBATCH`` lines and replace the defaults of the same name. The script changes to the
    current folder, against which the config paths and the work dir are written.
    """
    pairs = runs(experiments, launch)
    if not pairs:
        raise UserError("no experiment selected; nothing to launch")
    cmds = [shlex.join(["srun", *torchrun_prefix(launch.gpus), *train_args(e, s, launch)])
            for e, s in pairs]  # fmt: skip
    defaults = [
        f"--job-name={job_name}",
        f"--array=0-{len(cmds) - 1}",
        "--nodes=1",
        "--ntasks-per-node=1",
        f"--gres=gpu:{launch.gpus}",
        f"--cpus-per-task={4 * launch.gpus}",
        "--output=slurm-%x-%A_%a.out",
    ]
    given = {opt.split("=", 1)[0] for opt in sbatch_options}
    options = [o for o in defaults if o.split("=", 1)[0] not in given] + list(sbatch_options)
    folder = Path.cwd().resolve()
    lines = ["#!/bin/bash", *(f"#SBATCH {o}" for o in options), "",
             f"# {len(cmds)} runs; submit with: sbatch THIS_FILE. Each task trains one config "
             "and seed;", "# a resubmitted or requeued task resumes from its latest.pt.",
             "set -euo pipefail", f"cd {shlex.quote(str(folder))}", "", "COMMANDS=("]  # fmt: skip
    lines += [f"  {shlex.quote(c)}" for c in cmds]
    lines += [
        ")",
        'CMD="${COMMANDS[$SLURM_ARRAY_TASK_ID]}"',
        'echo "task $SLURM_ARRAY_TASK_ID: $CMD"',
        'eval "$CMD"',
        "",
    ]
    return "\n".join(lines)
