"""Choosing a component by name from a table, with one error message for unknown names.

The config layer holds it so that every layer above (data, models, uda, engine) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from vidda.config.load import ConfigError

T = TypeVar("T")


def lookup(
    table: Mapping[str, T],
    name: str,
    key: str,
    what: str | None = None,
    error: type[Exception] = ConfigError,
) -> T:
    """``table[name]``; an unknown ``name`` raises ``error`` naming the key, the name and the table.

    Args:
        table: name → component (a class, a builder function, a ``"module:function"`` path ...).
        name: the name asked for, e.g. the value of ``model.backbone``.
        key: where ``name`` came from, e.g. ``"model.backbone"``; ``""`` leaves the prefix out.
        what: the kind of component in the message; default: the last part of ``key``.
        error: the exception class raised (a ``UserError`` subclass, so the CLI prints one line).
    Raises:
        error: ``"<key>: unknown <what> 'x'; known: a, b, c"`` (the known names sorted).
    """
    if name in table:
        return table[name]
    kind = what or key.rsplit(".", 1)[-1]
    where = f"{key}: " if key else ""
    raise error(f"{where}unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
