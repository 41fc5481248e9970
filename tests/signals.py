"""Ctrl-C for the tests that send it: Python's default handling, whatever the suite itself was started with.

A suite started in the background by a script (`make test &`, `nohup make test &`) inherits SIGINT ignored, and
Python leaves an inherited SIG_IGN in place, in this process and in every child it starts. A test that sends
SIGINT would then see its child carry on and exit 0, so these tests set the handler themselves.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager


def default_ctrl_c() -> None:
    """`preexec_fn` for a child that a test interrupts: SIGINT at its default, so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def python_ctrl_c() -> Iterator[None]:
    """Python's own KeyboardInterrupt handler in this process for the block; the previous handler after it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
