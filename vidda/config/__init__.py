"""Typed experiment configs: YAML with ``_base_`` inheritance, checked by a dataclass schema."""

from vidda.config.load import ConfigError, load_config, merge_overrides, save_config, to_yaml
from vidda.config.plain import plain_config
from vidda.config.schema import Config
from vidda.config.validate import validate

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "merge_overrides",
    "plain_config",
    "save_config",
    "to_yaml",
    "validate",
]
