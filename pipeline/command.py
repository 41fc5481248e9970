"""How the command-line tools log: libraries at WARNING, our own packages at INFO, one line format."""

from __future__ import annotations

import logging

OUR_PACKAGES = ("pipeline", "encoders")


def configure_logging() -> None:
    """Set up logging for a command run from a shell (a library leaves logging to its caller)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in OUR_PACKAGES:
        logging.getLogger(ours).setLevel(logging.INFO)
