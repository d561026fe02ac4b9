"""Build the training method a config names."""

from __future__ import annotations

from torch import nn

from vidda.config.load import ConfigError
from vidda.config.schema import Config
from vidda.uda.config_checks import check_method_config
from vidda.uda.method import Method
from vidda.uda.supervised import Supervised

METHODS = ("source_only", "target_only", "dacs")


def build_method(cfg: Config, student: nn.Module, student_forward: nn.Module | None) -> Method:
    """``method.name`` → a ``Method`` around ``student`` (``student_forward``: its DDP wrapper).

    Raises:
        ConfigError: an unknown method, or settings that cannot work with the model and data
            (:func:`~vidda.uda.config_checks.check_method_config`).
    """
    name = cfg.method.name
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; expected one of {METHODS}")
    check_method_config(cfg)
    if name == "dacs":
        from vidda.uda.dacs import DACS

        return DACS(student, student_forward, cfg)
    return Supervised(student, student_forward, domain=name.removesuffix("_only"))
