"""Shared test set-up: tests never touch the user's cache or the network."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIDDA_CACHE", str(tmp_path_factory.getbasetemp() / "vidda-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
