"""The package's layering rules, checked on the source: they keep each layer replaceable."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidda"
SEGMENTOR_CLASSES = {"ACCEL", "HRDA", "EncoderDecoder", "Segmentor"}


def sources(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ["models", "uda", "flow", "data", "config"])
def test_lower_layers_do_not_import_the_engine_or_the_cli(layer):
    bad = {
        f"{p.relative_to(ROOT)}: {m}"
        for p in sources(layer)
        for m in imported_modules(p)
        if m.startswith(("vidda.engine", "vidda.cli"))
    }
    assert not bad, "imports from the engine/CLI below them:\n" + "\n".join(sorted(bad))


def test_no_caller_outside_models_branches_on_the_segmentor_class():
    bad = []
    for p in sources():
        if p.is_relative_to(PACKAGE / "models"):
            continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & SEGMENTOR_CLASSES:
                    bad.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "isinstance on segmentor classes (use the interface instead): " + str(bad)


def test_the_detector_sees_a_violation(tmp_path):
    """The checks above can fail: a file with both violations is caught by the same parsing."""
    f = tmp_path / "bad.py"
    f.write_text("from vidda.engine.trainer import Trainer\nisinstance(m, ACCEL)\n")
    assert "vidda.engine.trainer" in imported_modules(f)
    calls = [n for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Call)]
    assert calls and calls[0].args[1].id == "ACCEL"


SPEC_REF = re.compile(r"image_da_core|video_techniques|shared/spec|§")


def test_code_and_docs_cite_no_files_the_repository_lacks():
    files = [*sources(), *ROOT.glob("docs/*.md"), ROOT / "README.md",
             *ROOT.glob("configs/**/*.yaml")]  # fmt: skip
    bad = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in files
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if SPEC_REF.search(line)
    ]
    assert not bad, "references to specification files that are not in the repository: " + str(
        bad[:20]
    )
