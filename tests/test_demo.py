"""`vidda demo`: generates the synthetic benchmark once (cached) and writes its contact sheet."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vidda.cli import main
from vidda.data.classes import PALETTE


def test_demo_generates_caches_and_shows_the_benchmark(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    sheet = cv2.imread(str(out / "contact_sheet.png"))[..., ::-1]
    assert sheet.shape[0] > 6 * 128 and sheet.shape[1] > 3 * 256  # 6 rows of 3 panels
    colours = {tuple(c) for c in sheet.reshape(-1, 3)[::7]}
    assert {PALETTE[0], PALETTE[2], PALETTE[10], PALETTE[13]} <= colours  # labels drawn
    cache = Path(os.environ["VIDDA_CACHE"]) / "synthetic" / "seed0_shift1"
    meta = cache / "meta.json"
    assert meta.is_file()
    stamp = meta.stat().st_mtime_ns
    assert main(["demo", "--out", str(out)]) == 0  # second run reuses the cached data
    assert meta.stat().st_mtime_ns == stamp
    assert "synthetic benchmark" in capsys.readouterr().out
    assert np.array_equal(cv2.imread(str(out / "contact_sheet.png"))[..., ::-1], sheet)
