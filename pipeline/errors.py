"""Exceptions for job configuration mistakes, found before the pipeline starts."""


class JobConfigError(Exception):
    """The job cannot start as configured; the message says what to change."""
