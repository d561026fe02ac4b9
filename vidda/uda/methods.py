"""Build the training method a config names."""

from __future__ import annotations

from torch import nn

from vidda.config.load import ConfigError
from vidda.config.schema import Config
from vidda.uda.method import Method
from vidda.uda.supervised import Supervised

METHODS = ("source_only", "target_only", "dacs")


def build_method(cfg: Config, student: nn.Module, student_forward: nn.Module | None) -> Method:
    """``method.name`` → a ``Method`` around ``student`` (``student_forward``: its DDP wrapper)."""
    name = cfg.method.name
    if name == "source_only":
        return Supervised(student, student_forward, domain="source")
    if name == "target_only":
        return Supervised(student, student_forward, domain="target")
    if name == "dacs":
        from vidda.uda.dacs import DACS

        return DACS(student, student_forward, cfg.method)
    raise ConfigError(f"method.name: unknown method {name!r}; expected one of {METHODS}")
