"""Exceptions for configuration mistakes, found before anything runs, and the one-line form the commands print."""

import argparse


class JobConfigError(Exception):
    """The job cannot start as configured; the message says what to change."""


class CommandError(Exception):
    """A command (search, report) cannot run as asked; the message says why, on one line (exit 2)."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose mistakes raise CommandError: one line and exit 2, not a usage dump."""

    def error(self, message: str) -> None:
        raise CommandError(message)
