"""Load a config: YAML files with ``_base_`` inheritance and dotted command-line overrides.

Merge order: the files named in ``_base_`` (depth first, in list order, paths relative to the file
that names them), then the file itself, then each ``key.sub=value`` override. Every layer is checked
against the schema before it is merged, so an error names the key, the layer it came from (a file
path or "the command line") and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vidda.config.schema import Config
from vidda.errors import UserError

BASE_KEY = "_base_"
CLI = "the command line"  # the origin named for overrides


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message is one line naming the key or file at fault."""


Layer = tuple[str, dict[str, Any]]  # (where it came from, its contents)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Load ``path`` with its bases, apply ``overrides`` (``["optim.lr=1e-4", ...]``), validate.

    Returns:
        A fully typed ``Config`` (plain dataclasses; ``save_config`` writes it back as YAML) that
        :func:`vidda.config.validate.validate` accepts.
    Raises:
        ConfigError: unknown key, wrong type, a value outside its field's ``Literal``, unreadable
            or missing file, bad override syntax, or settings that cannot work together.
    """
    from vidda.config.validate import validate

    layers = _file_layers(Path(path), chain=())
    layers += [(CLI, _parse_overrides(overrides))]
    cfg = _merge(layers)
    validate(cfg)
    return cfg


def merge_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Return a copy of ``cfg`` with dotted ``overrides`` applied, its keys, types and ``Literal``
    values checked (combinations of settings are :func:`vidda.config.validate.validate`'s)."""
    return _merge([("the given config", _as_dict(cfg)), (CLI, _parse_overrides(overrides))])


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (what every run directory stores as ``config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(to_yaml(cfg))
    os.replace(tmp, path)
    return path


def config_from_dict(data: dict[str, Any], origin: str = "the checkpoint") -> Config:
    """A plain dict (e.g. the resolved config stored in a checkpoint) checked into a ``Config``
    (keys, types and ``Literal`` values, as :func:`merge_overrides`)."""
    return _merge([(origin, data)])


# --------------------------------------------------------------------------- reading layers


def _file_layers(path: Path, chain: tuple[Path, ...]) -> list[Layer]:
    """``path``'s bases (recursively) followed by ``path`` itself, each as a layer."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{BASE_KEY} inheritance cycle: {cycle}")
    data = _read_yaml(path, named_by=chain[-1] if chain else None)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file path or a list of file paths")
    layers: list[Layer] = []
    for base in bases:
        layers += _file_layers(path.parent / base, chain=(*chain, path))
    layers.append((str(path), data))
    return layers


def _read_yaml(path: Path, named_by: Path | None) -> dict[str, Any]:
    if not path.is_file():
        where = f" (named in {BASE_KEY} of {named_by})" if named_by else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}: {getattr(err, 'problem', err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def _parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` → ``{"a": {"b": 1}, "c": [1, 2]}`` (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from err
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return tree


# --------------------------------------------------------------------------- validation


def _merge(layers: list[Layer]) -> Config:
    for origin, data in layers:
        _check_keys(data, Config, prefix="", origin=origin)
    try:
        # Fast path: one OmegaConf merge of the layers' plain deep merge (OmegaConf merges are
        # slow); on a type error, merge layer by layer to name the layer at fault.
        combined: dict[str, Any] = {}
        for _, data in layers:
            combined = _deep_merge(combined, data)
        merged: DictConfig = OmegaConf.merge(OmegaConf.structured(Config), combined)
    except OmegaConfBaseException:
        merged = OmegaConf.structured(Config)
        for origin, data in layers:
            try:
                merged = OmegaConf.merge(merged, OmegaConf.create(data))
            except OmegaConfBaseException as err:
                raise _type_error(err, origin) from err
    try:
        return typing.cast(Config, OmegaConf.to_object(merged))
    except OmegaConfBaseException as err:  # e.g. an interpolation that does not resolve
        raise ConfigError(f"{_key_of(err) or 'config'}: {_first_line(err)}") from err


def _deep_merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base`` as OmegaConf merges: mappings recursively, anything else replaced."""
    out = dict(base)
    for key, value in layer.items():
        old = out.get(key)
        both = isinstance(value, dict) and isinstance(old, dict)
        out[key] = _deep_merge(old, value) if both else value  # type: ignore[arg-type]
    return out


def _check_keys(data: dict[str, Any], schema: type, prefix: str, origin: str) -> None:
    """Raise on the first key of ``data`` that ``schema`` (a dataclass) does not declare."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3, cutoff=0.5)
            hint = (
                f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
            )
            valid = ", ".join(sorted(fields)) if fields else "none"
            raise ConfigError(
                f"unknown config key '{full}' from {origin}{hint} (valid keys here: {valid})"
            )
        sub = hints[key]
        check_choice(full, value, sub, origin)
        if dataclasses.is_dataclass(sub):
            if isinstance(value, dict):
                _check_keys(value, typing.cast(type, sub), f"{full}.", origin)
            elif value is not None:
                raise ConfigError(
                    f"config key '{full}' from {origin} expects a mapping (section), "
                    f"got {type(value).__name__} {value!r}"
                )


def choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` hint (or of its items, for a list of ``Literal``)."""
    if typing.get_origin(hint) is list:
        hint = typing.get_args(hint)[0]
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def choice_fields(schema: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every field of ``schema`` (recursively) typed ``Literal`` or a list of ``Literal``: dotted
    key → its type hint."""
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(schema).items():
        if dataclasses.is_dataclass(hint):
            out.update(choice_fields(typing.cast(type, hint), f"{prefix}{name}."))
        elif choices(hint) is not None:
            out[f"{prefix}{name}"] = hint
    return out


def check_choice(key: str, value: Any, hint: Any, origin: str | None = None) -> None:
    """Raise ``ConfigError`` if ``value`` (of the dotted ``key``, typed ``hint``) is not one of the
    values its ``Literal`` allows; other hints, ``None`` and unresolved interpolations pass (the
    merge checks those)."""
    allowed = choices(hint)
    if allowed is None or value is None:
        return
    is_list = typing.get_origin(hint) is list and isinstance(value, list | tuple)
    items = value if is_list else [value]
    for item in items:
        if isinstance(item, str) and "${" in item:
            continue
        if not (isinstance(item, str) and item in allowed):
            where = f" (from {origin})" if origin else ""
            raise ConfigError(f"{key}: {item!r} is not one of {allowed!r}{where}")


def check_choices(cfg: Config) -> None:
    """``check_choice`` for every ``Literal`` field of a built ``Config``."""
    for key, hint in choice_fields().items():
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        check_choice(key, node, hint)


def _type_error(err: OmegaConfBaseException, origin: str) -> ConfigError:
    key = _key_of(err)
    expected = _expected_type(key) if key else None
    got = _first_line(err)
    if key and expected:
        return ConfigError(f"config key '{key}' from {origin} expects {expected} ({got})")
    return ConfigError(f"{origin}: {got}")


def _key_of(err: OmegaConfBaseException) -> str:
    return str(getattr(err, "full_key", "") or "")


def _first_line(err: BaseException) -> str:
    msg = getattr(err, "msg", None) or str(err)
    return str(msg).strip().splitlines()[0] if str(msg).strip() else type(err).__name__


def _expected_type(key: str) -> str | None:
    """Human-readable declared type of the dotted ``key`` in the schema, if it is declared."""
    node: Any = Config
    parts = key.replace("[", ".").replace("]", "").split(".")
    hint: Any = None
    for part in parts:
        if dataclasses.is_dataclass(node):
            hints = typing.get_type_hints(node)
            if part not in hints:
                return None
            hint = node = hints[part]
        elif typing.get_origin(node) in (list, dict):
            hint = node = typing.get_args(node)[-1]
        else:
            return None
    return _type_name(hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return "a section" if dataclasses.is_dataclass(hint) else hint.__name__
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return f"one of {args!r}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return "a mapping"
    return str(hint)


def _as_dict(cfg: Config) -> dict[str, Any]:
    return typing.cast(dict, OmegaConf.to_container(OmegaConf.structured(cfg)))
