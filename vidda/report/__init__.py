"""Results of finished runs as paper-style tables (``vidda table``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vidda.report.runs import MissingResultsError, Run, collect, find_run_dirs, load_run
from vidda.report.table import Table, build_tables, to_csv, to_markdown

__all__ = [
    "MissingResultsError",
    "Run",
    "Table",
    "build_tables",
    "collect",
    "find_run_dirs",
    "load_run",
    "make_table",
    "to_csv",
    "to_markdown",
]


def make_table(
    paths: Sequence[str | Path],
    fmt: str = "markdown",
    protocol: str = "both",
    classes: str = "auto",
    skip_missing: bool = False,
    decimals: int = 1,
) -> tuple[str, list[str]]:
    """The results table of the runs under ``paths`` as text, and warnings for stderr."""
    runs, warnings = collect(paths, skip_missing)
    tables = build_tables(runs, protocol, classes)
    text = to_csv(tables) if fmt == "csv" else to_markdown(tables, decimals)
    return text, warnings
