"""What every ``vidda`` command module shares: the usage error and its exit status."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vidda.errors import UserError


class UsageError(UserError):
    """Arguments that do not fit together."""


EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
"""What a command runs with its parsed arguments; returns the exit status."""
