"""The edge of every command (the job, search, report): how it logs, and a user's mistake as one line and exit 2.

Errors are raised where they are found, typed (`pipeline.errors`, `encoders.EncoderConfigError`); only the
commands' `main` functions turn them into what a shell sees, through `said`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from encoders import EncoderConfigError
from pipeline.errors import CommandError, UserError

OUR_PACKAGES = ("pipeline", "encoders")
USAGE_EXIT = 2
# What every command reports as one line and exit 2; search and report add "cannot read" errors of their own.
MISTAKES: tuple[type[Exception], ...] = (UserError, EncoderConfigError)


def configure_logging() -> None:
    """Set up logging for a command run from a shell (a library leaves logging to its caller)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in OUR_PACKAGES:
        logging.getLogger(ours).setLevel(logging.INFO)


def said(mistake: BaseException) -> int:
    """Print a mistake as one line on stderr; returns the exit code for it."""
    print(f"error: {mistake}", file=sys.stderr)
    return USAGE_EXIT


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose mistakes raise an error of the command (one line and exit 2), not a usage dump."""

    def __init__(self, *args, error_type: type[UserError] = CommandError, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._error_type = error_type

    def error(self, message: str) -> None:
        raise self._error_type(message)
