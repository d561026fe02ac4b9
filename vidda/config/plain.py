"""A resolved config as plain Python data (what checkpoints store next to the weights)."""

from __future__ import annotations

from typing import Any

import yaml

from vidda.config.load import to_yaml
from vidda.config.schema import Config


def plain_config(cfg: Config) -> dict[str, Any]:
    """``cfg`` as nested dicts, lists and scalars, exactly as ``config.yaml`` reads back.

    ``vidda.config.load.config_from_dict`` turns the result into a ``Config`` again.
    """
    return yaml.safe_load(to_yaml(cfg))
