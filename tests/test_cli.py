"""The installed ``vidda`` command and its subcommands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vidda import __version__
from vidda.cli import main


def test_console_script_and_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "vidda", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"vidda {__version__}"
    script = Path(sys.executable).with_name("vidda")  # installed next to this interpreter
    helptext = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    subcommands = ("demo", "data", "train", "eval", "infer", "flow", "table", "weights")
    for sub in (*subcommands, "experiments"):
        assert sub in helptext.stdout


def test_infer_needs_an_input_and_an_output_folder(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["infer", "x.pt"])
    assert exit_.value.code == 2
    assert "INPUT" in capsys.readouterr().err
    assert main(["infer", "x.pt", "missing.mp4", "--out", "o"]) == 2  # input checked first
    assert "input not found: missing.mp4" in capsys.readouterr().err


def test_unknown_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "cfg.yaml", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err
