"""Progress of a local run: texts/s, tokens/s and the share of input bytes read.

Counters live in each worker process (DoFns update them); a daemon thread in that process
reports them: in place on a terminal, as periodic log lines otherwise. Local runs only;
distributed runners have their own monitoring.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

logger = logging.getLogger(__name__)

MODES = ("terminal", "log", "off")


class Progress:
    """Process-wide counters and their reporter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.texts = 0
        self.tokens = 0
        self.bytes_read = 0
        self.total_bytes = 0
        self._started: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, texts: int = 0, tokens: int = 0, bytes_read: int = 0) -> None:
        with self._lock:
            self.texts += texts
            self.tokens += tokens
            self.bytes_read += bytes_read

    def line(self) -> str:
        """One status line, e.g. `1,200 texts  98.1 texts/s  6,020 tokens/s  41% of input read`."""
        elapsed = max(time.monotonic() - (self._started or time.monotonic()), 1e-9)
        share = f"{100 * self.bytes_read / self.total_bytes:.0f}%" if self.total_bytes else "?"
        return (f"{self.texts:,} texts  {self.texts / elapsed:.1f} texts/s  "
                f"{self.tokens / elapsed:,.0f} tokens/s  {share} of input read")

    def start(self, mode: str, total_bytes: int, interval: float | None = None) -> None:
        """Start reporting in this process (idempotent)."""
        with self._lock:
            if self._thread is not None or mode == "off":
                return
            self.texts = self.tokens = self.bytes_read = 0
            self._stop.clear()
            self.total_bytes = total_bytes
            self._started = time.monotonic()
            period = interval if interval is not None else (0.5 if mode == "terminal" else 30.0)
            self._thread = threading.Thread(target=self._report, args=(mode, period), daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop reporting (the CLI calls this when the job ends in its own process)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _report(self, mode: str, period: float) -> None:
        while not self._stop.wait(period):
            self._emit(mode)
        if mode == "terminal":
            self._emit(mode)
            sys.stderr.write("\n")

    def _emit(self, mode: str) -> None:
        if mode == "terminal":
            sys.stderr.write("\r\033[K" + self.line())
            sys.stderr.flush()
        else:
            logger.info("progress: %s", self.line())


PROGRESS = Progress()
