"""Finished runs: find run folders, read their config and evaluation results, score class subsets.

A run folder is one holding ``config.yaml`` (the resolved config ``vidda train`` writes). Its
results come from ``eval.json`` in the folder when present (``vidda eval CFG CKPT --out RUN``),
else from the last evaluation record of ``metrics.jsonl`` (the trainer's
``{"step": N, "eval_full": {"result": {protocol: result}}}`` lines). A result is the layout of
``vidda.metrics.ConfusionMatrix.compute`` after ``to_json``: ``iou`` per trainId as fractions
(``None`` outside the subset), ``miou`` in percent, ``classes`` and the kept ``confusion`` matrix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidda.errors import UserError
from vidda.experiments import backbone_label

CONFIG_FILE = "config.yaml"
EVAL_FILE = "eval.json"
METRICS_FILE = "metrics.jsonl"

DATASET_SHORT = {
    "viper-seq": "viper",
    "synthia-seq": "synthiaseq",
    "cityscapes-seq": "csseq",
    "bddvid": "bddvid",
    "synthetic": "synthetic",
}
"""Dataset type → the short name used in shift names (``viper_csseq``) and config folders."""


class MissingResultsError(UserError):
    """A run folder without evaluation results."""


@dataclass
class Run:
    """One finished run: what it trained and its evaluation results."""

    run_dir: Path
    name: str  # the config's name (the run's folder name when the config has none)
    row: str  # the paper row (``paper.row``), else ``name``
    backbone: str  # "mitb5", "dlv2", ...
    shift: str  # "viper_csseq", ...; the target alone for target-only runs ("csseq")
    target: str  # the validation dataset's short name ("csseq", "bddvid")
    seed: int
    results: dict[str, dict[str, Any]]  # protocol → result
    source: Path  # the file the results were read from
    step: int | None = None  # iteration of the evaluation (metrics.jsonl only)
    iters: int | None = None  # the run's schedule length


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders given directly or found below the given folders, sorted, without repeats."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if path.is_file():
            path = path.parent
        if (path / CONFIG_FILE).is_file():
            found[path] = None
            continue
        below = sorted(p.parent for p in path.rglob(CONFIG_FILE))
        if not below:
            raise UserError(f"no run folder (a folder with {CONFIG_FILE}) in {path}")
        found.update(dict.fromkeys(below))
    return list(found)


def load_run(run_dir: Path) -> Run:
    """Read ``run_dir``'s config and results; ``MissingResultsError`` when it has no results."""
    cfg = _read_config(run_dir / CONFIG_FILE)
    results, source, step = _read_results(run_dir)
    data = cfg.get("data") or {}
    name = str(cfg.get("name") or (run_dir.parent.name if run_dir.name.startswith("seed")
                                   else run_dir.name))  # fmt: skip
    paper = cfg.get("paper") or {}
    return Run(
        run_dir=run_dir,
        name=name,
        row=str(paper.get("row") or name),
        backbone=backbone_label(cfg.get("model") or {}),
        shift=run_shift(cfg),
        target=_short((data.get("val") or {}).get("type", "")),
        seed=int(cfg.get("seed", 0)),
        results=results,
        source=source,
        step=step,
        iters=(cfg.get("schedule") or {}).get("iters"),
    )


def collect(paths: Sequence[str | Path], skip_missing: bool = False) -> tuple[list[Run], list[str]]:
    """Load every run folder under ``paths``; returns the runs and warnings (skipped folders,
    runs whose last evaluation is before the end of their schedule)."""
    runs, warnings = [], []
    for run_dir in find_run_dirs(paths):
        try:
            run = load_run(run_dir)
        except MissingResultsError as err:
            if not skip_missing:
                raise
            warnings.append(f"skipped {err}")
            continue
        if run.step is not None and run.iters and run.step < run.iters:
            warnings.append(f"{run_dir}: last evaluation at iteration {run.step} of {run.iters} "
                            "(unfinished run?)")  # fmt: skip
        runs.append(run)
    if not runs:
        raise UserError("no run with evaluation results in " + ", ".join(map(str, paths)))
    return runs, warnings


def run_shift(cfg: dict[str, Any]) -> str:
    """``<source>_<target>`` from the datasets (the target alone for target-only training)."""
    data = cfg.get("data") or {}
    target = _short((data.get("target") or {}).get("type", ""))
    if (cfg.get("method") or {}).get("name") == "target_only":
        return target
    return f"{_short((data.get('source') or {}).get('type', ''))}_{target}"


def _short(dataset_type: str) -> str:
    return DATASET_SHORT.get(dataset_type, dataset_type.replace("-", ""))


# --------------------------------------------------------------------------- reading files


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read {path}: {err}".splitlines()[0]) from err
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: not a vidda config (expected a mapping)")
    return cfg


def _read_results(run_dir: Path) -> tuple[dict[str, dict[str, Any]], Path, int | None]:
    path = run_dir / EVAL_FILE
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {path}: {err}") from err
        results = doc.get("results", doc) if isinstance(doc, dict) else None
        return _checked(results, path), path, None
    path = run_dir / METRICS_FILE
    record = _last_eval_record(path) if path.is_file() else None
    if record is None:
        raise MissingResultsError(
            f"{run_dir}: no evaluation results (no {EVAL_FILE}, no evaluation record in "
            f"{METRICS_FILE}); score it with `vidda eval {run_dir / CONFIG_FILE} "
            f"{run_dir / 'latest.pt'} --out {run_dir}`"
        )
    return _checked(record["eval_full"].get("result"), path), path, record.get("step")


def _last_eval_record(path: Path) -> dict[str, Any] | None:
    """The last ``eval_full`` line of a metrics file (a torn last line is ignored)."""
    last = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("eval_full"), dict):
            last = record
    return last


def _checked(results: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The protocol → result entries of ``results`` (other keys, e.g. temporal metrics, dropped)."""
    if not isinstance(results, dict):
        raise UserError(f"{path}: no evaluation results in the expected layout")
    out = {k: v for k, v in results.items()
           if isinstance(v, dict) and {"iou", "miou", "classes"} <= v.keys()}  # fmt: skip
    if not out:
        raise UserError(f"{path}: no protocol result with iou, miou and classes")
    return out


# --------------------------------------------------------------------------- scores


def class_scores(
    run: Run, protocol: str, ids: Sequence[int]
) -> tuple[list[float | None], float | None]:
    """Per-class IoU (percent, ``None`` when undefined) over ``ids`` and their mIoU.

    Taken as stored when the run was evaluated on exactly ``ids`` under ``protocol``; otherwise
    recomputed from a stored confusion matrix over a superset of ``ids`` (e.g. a target-only run
    evaluated on all 19 classes, scored on the 15 VIPER classes): a ``standard`` result yields
    both protocols, a ``uvda`` result only ``uvda`` (it lacks the pixels predicted outside).
    """
    ids = tuple(ids)
    stored = run.results.get(protocol)
    if stored is not None and tuple(stored["classes"]) == ids:
        return [_percent(stored["iou"][c]) for c in ids], _finite(stored["miou"])
    for kind in (protocol, "uvda" if protocol == "standard" else "standard"):
        src = run.results.get(kind)
        if src is None or not src.get("confusion") or not set(ids) <= set(src["classes"]):
            continue
        if kind == "uvda" and protocol == "standard" and len(src["classes"]) < len(src["iou"]):
            continue
        result = _recompute(src["confusion"], ids, protocol)
        return [_percent(result["iou"][c]) for c in ids], _finite(result["miou"])
    have = ", ".join(f"{k}: {len(v['classes'])} classes" for k, v in run.results.items())
    raise UserError(
        f"{run.source}: cannot score the {protocol} protocol on classes {list(ids)} "
        f"(results: {have}; a superset with its confusion matrix is needed)"
    )


def _recompute(confusion: list[list[int]], ids: Sequence[int], protocol: str) -> dict[str, Any]:
    import torch

    from vidda.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes=len(confusion))
    cm.load_state_dict({"matrix": torch.tensor(confusion, dtype=torch.int64)})
    return cm.compute(list(ids), protocol)


def _percent(fraction: float | None) -> float | None:
    value = _finite(fraction)
    return None if value is None else 100.0 * value


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)
