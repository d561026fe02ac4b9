"""The base class of errors caused by the user's input (files, configs, arguments).

The CLI prints these as one line and exits with status 2; anything else is a bug and keeps its
traceback. Each subclass's message names the file, key or value at fault and what was expected.
"""


class UserError(Exception):
    """Bad input from the user: a missing or malformed file, an invalid config or argument."""
