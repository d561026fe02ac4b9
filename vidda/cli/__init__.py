"""The ``vidda`` command: ``vidda SUBCOMMAND --help`` describes each subcommand.

Errors caused by the user's input (``vidda.errors.UserError``) print one line and exit with
status 2; ``--debug`` shows the traceback instead. Each subcommand lives in its own module
(``vidda.cli.train``, ``vidda.cli.eval``, ...) with an ``add_parser(sub, common)`` function;
building the parser imports no torch.
"""

from vidda.cli.common import EXIT_USAGE, UsageError
from vidda.cli.main import build_parser, main

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]
