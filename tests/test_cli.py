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
    for sub in ("demo", "data", "train", "eval", "infer", "flow", "table", "weights"):
        assert sub in helptext.stdout


@pytest.mark.parametrize("argv", [["infer", "x.pt"], ["table"]])
def test_unfinished_subcommands_say_so_and_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "not available yet" in capsys.readouterr().err


def test_unknown_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "cfg.yaml", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err
