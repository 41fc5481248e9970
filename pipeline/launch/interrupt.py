"""Ctrl-C on a local run: one line and exit 130 instead of a KeyboardInterrupt traceback from every layer.

A Ctrl-C reaches the job while Beam runs a DoFn on the main thread (the DirectRunner's in-process
FnApiRunner). Beam then logs the KeyboardInterrupt with its traceback (`apache_beam.runners.common`,
`DoFnRunner._reraise_augmented`) and re-raises it as `RuntimeError("KeyboardInterrupt [while running
...]")`, which the CLI's `except Exception` would report as a failed pipeline with two more tracebacks.
`interruptible()` notes the interrupt in its own SIGINT handler before Python raises KeyboardInterrupt,
silences Beam's loggers from then on, and turns whatever the unwinding raises into `JobInterrupted`.
Failures of a run that was not interrupted pass through untouched.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger(__name__)

EXIT_CODE = 130  # 128 + SIGINT: what shells and schedulers expect of a process stopped by Ctrl-C

# Loggers that report the interrupt again, with tracebacks, while the pipeline unwinds.
NOISY_LOGGERS = ("apache_beam",)


class JobInterrupted(Exception):
    """The run was stopped by Ctrl-C (SIGINT); str() is the one line for the user."""

    exit_code = EXIT_CODE


class _Interrupt:
    """SIGINT handler that records the interrupt and quiets the noisy loggers before raising it."""

    def __init__(self) -> None:
        self.happened = False
        self._previous_handler: object = None
        self._installed = False
        self._levels: dict[str, int] = {}
        self._excepthook = threading.excepthook

    def install(self) -> None:
        # Only replace Python's default: a SIGINT that is ignored (`nohup`, `cmd &` in a script) stays
        # ignored, and someone else's handler stays theirs. Signal handlers belong to the main thread.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._previous_handler = signal.signal(signal.SIGINT, self._handle)
        self._installed = True

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._installed = False
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._levels.clear()
        threading.excepthook = self._excepthook

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.happened:
            self.happened = True
            self.silence()
        raise KeyboardInterrupt  # a second Ctrl-C interrupts the unwinding too

    def silence(self) -> None:
        for name in NOISY_LOGGERS:
            noisy = logging.getLogger(name)
            self._levels.setdefault(name, noisy.level)
            noisy.setLevel(logging.CRITICAL + 1)
        # Beam's gRPC reader threads die with RpcError when their peers go away (multi_processing runs).
        threading.excepthook = _quiet_excepthook


def _quiet_excepthook(args: threading.ExceptHookArgs) -> None:
    logger.debug("thread %s ended after the interrupt", getattr(args.thread, "name", "?"),
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether exc is a KeyboardInterrupt or was raised while handling one (Beam wraps it in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def interrupted_message(output: str | None) -> str:
    """The line for the user; says so if output holds a finished run (Ctrl-C during cleanup or after commit)."""
    finished = False
    if output:
        try:
            from apache_beam.io.filesystems import FileSystems

            from pipeline.formats.output import SUCCESS_FILE

            finished = FileSystems.exists(FileSystems.join(output, SUCCESS_FILE))
        except BaseException:  # noqa: BLE001 - a second Ctrl-C or an unreachable store: keep the usual line
            finished = False
    if finished:
        return (f"interrupted; {output} still holds a finished run (_SUCCESS is there); "
                "rerunning the same command starts over cleanly")
    return "interrupted; nothing was committed (no _SUCCESS); rerunning the same command starts over cleanly"


@contextmanager
def interruptible(output: str | None = None) -> Iterator[None]:
    """Run the body so that Ctrl-C raises JobInterrupted (one line, exit_code 130) and nothing else is printed.

    Anything the body raises without an interrupt having happened is re-raised unchanged.
    """
    interrupt = _Interrupt()
    interrupt.install()
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, JobInterrupted) or not (interrupt.happened or caused_by_interrupt(exc)):
            raise  # a JobInterrupted already says what became of the run
        logger.debug("run interrupted", exc_info=True)
        raise JobInterrupted(interrupted_message(output)) from None
    finally:
        interrupt.restore()
