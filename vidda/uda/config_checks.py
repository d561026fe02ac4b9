"""The config checks under their earlier names; they live in :mod:`vidda.config.validate`.

``check_method_config`` is the whole :func:`~vidda.config.validate.validate` pass, so
``build_method`` (and with it the trainer and ``vidda train --dry-run``) refuses exactly the
configs that loading refuses.
"""

from __future__ import annotations

from vidda.config.schema import Config
from vidda.config.validate import (
    FILL_MODES,
    MIN_DISCRIMINATOR_INPUT,
    MIX_MODES,
    Need,
    check_eval_data,
    data_needs,
    validate,
)

__all__ = [
    "FILL_MODES",
    "MIN_DISCRIMINATOR_INPUT",
    "MIX_MODES",
    "Need",
    "check_eval_data",
    "check_method_config",
    "data_needs",
]


def check_method_config(cfg: Config) -> None:
    """Raise ``ConfigError`` on the first setting of ``cfg`` that cannot work (``validate``)."""
    validate(cfg)
