"""Paper-style results tables from finished runs: markdown or CSV.

One table per (validation target, class subset, protocol): rows are runs (method = the paper row,
backbone, seed), columns the subset's per-class IoU and mIoU in percent. Runs of the same config
with several seeds are followed by a mean ± std row (sample standard deviation, n − 1).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from vidda.classes import CLASS_SUBSETS, CLASSES, class_subset
from vidda.report.runs import Run, class_scores

PROTOCOL_CHOICES = ("standard", "uvda", "both")
CLASS_CHOICES = ("auto", *CLASS_SUBSETS)


@dataclass
class Line:
    """One row of a table: a run, or the mean / std of a config's runs over seeds."""

    method: str
    backbone: str
    config: str
    stat: str  # "run" | "mean" | "std"
    seed: int | None  # None for mean / std rows
    n: int  # runs behind the numbers
    run_dir: str
    ious: list[float | None]  # percent, one per class of the table
    miou: float | None


@dataclass
class Table:
    target: str
    ids: tuple[int, ...]  # the class columns (trainIds)
    protocol: str
    shifts: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return [CLASSES[c] if c < len(CLASSES) else str(c) for c in self.ids]

    @property
    def subset(self) -> str:
        """The subset's name (``viper``, ``synthia_seq``, ``all``) or its size."""
        name = next((k for k, v in CLASS_SUBSETS.items() if tuple(v) == self.ids), None)
        return f"{name} classes ({len(self.ids)})" if name else f"{len(self.ids)} classes"


def build_tables(runs: Sequence[Run], protocol: str = "both", classes: str = "auto") -> list[Table]:
    """Group ``runs`` into tables (first-seen order) and fill their rows.

    ``classes``: ``auto`` = each run's own evaluated subset, or a subset name applied to all runs
    (recomputed from the stored confusion matrices where needed).
    """
    protocols = ("standard", "uvda") if protocol == "both" else (protocol,)
    groups: dict[tuple[str, tuple[int, ...]], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.target, _ids(run, classes)), []).append(run)
    tables = []
    for (target, ids), members in groups.items():
        shifts = list(dict.fromkeys(r.shift for r in members))
        for proto in protocols:
            table = Table(target, ids, proto, shifts)
            for config_runs in _by_config(members):
                table.lines += _lines(config_runs, proto, ids)
            tables.append(table)
    return tables


def _ids(run: Run, classes: str) -> tuple[int, ...]:
    if classes != "auto":
        return tuple(class_subset(classes))
    first = next(iter(run.results.values()))
    return tuple(sorted(int(c) for c in first["classes"]))


def _by_config(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by config name (first-seen order), each group sorted by seed."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.name, []).append(run)
    return [sorted(g, key=lambda r: (r.seed, str(r.run_dir))) for g in groups.values()]


def _lines(runs: Sequence[Run], protocol: str, ids: tuple[int, ...]) -> list[Line]:
    lines = []
    for run in runs:
        ious, miou = class_scores(run, protocol, ids)
        lines.append(Line(run.row, run.backbone, run.name, "run", run.seed, 1, str(run.run_dir),
                          ious, miou))  # fmt: skip
    if len(lines) > 1:
        first = lines[0]
        columns = [[ln.ious[i] for ln in lines] for i in range(len(ids))]
        mious = [ln.miou for ln in lines]
        for stat, fn in (("mean", _mean), ("std", _std)):
            lines.append(Line(first.method, first.backbone, first.config, stat, None, len(runs),
                              "", [fn(c) for c in columns], fn(mious)))  # fmt: skip
    return lines


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _std(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.stdev(kept) if len(kept) > 1 else None


# --------------------------------------------------------------------------- rendering


def to_markdown(tables: Sequence[Table], decimals: int = 1) -> str:
    """One markdown table per target / class subset / protocol; mean and std share a row."""
    out: list[str] = []
    for table in tables:
        out += [f"### {table.target}: {table.subset}, {table.protocol} protocol", "",
                f"Shifts: {', '.join(table.shifts)}.", ""]  # fmt: skip
        header = ["method", "backbone", "seed", *table.class_names, "mIoU"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * 3 + "---:|" * (len(table.ids) + 1))
        stds = {ln.config: ln for ln in table.lines if ln.stat == "std"}
        for ln in table.lines:
            if ln.stat == "std":
                continue
            if ln.stat == "mean":
                sd = stds[ln.config]
                cells = [
                    _pm(m, s, decimals)
                    for m, s in zip([*ln.ious, ln.miou], [*sd.ious, sd.miou], strict=True)
                ]
                seed = f"mean ± std ({ln.n})"
            else:
                cells = [_num(v, decimals) for v in [*ln.ious, ln.miou]]
                seed = str(ln.seed)
            out.append("| " + " | ".join([ln.method, ln.backbone, seed, *cells]) + " |")
        out.append("")
    if any(ln.stat == "mean" for t in tables for ln in t.lines):
        out.append("IoU in %. mean ± std: over the seeds of a config (sample std, n − 1).")
    else:
        out.append("IoU in %.")
    return "\n".join(out) + "\n"


def to_csv(tables: Sequence[Table]) -> str:
    """All tables in one CSV: one line per row, class columns = the union of the tables'
    classes in trainId order (empty where a table lacks the class), values in percent."""
    ids = sorted({c for t in tables for c in t.ids})
    names = [CLASSES[c] if c < len(CLASSES) else str(c) for c in ids]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["target", "classes", "protocol", "method", "backbone", "config", "stat",
                     "seed", "n", "run_dir", *names, "mIoU"])  # fmt: skip
    for table in tables:
        col = {c: i for i, c in enumerate(table.ids)}
        for ln in table.lines:
            values = [ln.ious[col[c]] if c in col else None for c in ids]
            writer.writerow([table.target, table.subset, table.protocol, ln.method, ln.backbone,
                             ln.config, ln.stat, "" if ln.seed is None else ln.seed, ln.n,
                             ln.run_dir, *map(_csv_num, values), _csv_num(ln.miou)])  # fmt: skip
    return buf.getvalue()


def _num(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _pm(mean: float | None, std: float | None, decimals: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}" if std is not None else _num(mean, decimals)


def _csv_num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
