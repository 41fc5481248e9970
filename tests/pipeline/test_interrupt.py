"""Ctrl-C on a local run: one line on stderr, exit 130, nothing committed, and the same command then succeeds."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.launch.interrupt import EXIT_CODE, JobInterrupted, caused_by_interrupt, interrupted_message, interruptible
from tests.signals import default_ctrl_c, python_ctrl_c

REPO = Path(__file__).resolve().parents[2]
LINES = 10000
RECORDS_PER_FILE = 200  # many small parts: a staged file appears soon after embedding starts, long before the end


def _write_input(path: Path) -> Path:
    words = "the quick brown fox jumps over a lazy dog 你 好 世 界 中 文 的 是".split()
    path.write_text(
        "".join(" ".join(words[(i * 7 + k) % len(words)] for k in range(4 + i % 12)) + "\n" for i in range(LINES)),
        encoding="utf-8",
    )
    return path


def _command(source: Path, output: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "--input", str(source), "--output", str(output),
            "--model", str(model), "--records_per_file", str(RECORDS_PER_FILE)]


def _wait_until_embedding(proc: subprocess.Popen, staging: Path, timeout: float) -> None:
    """Return once the first part is staged (the encoder is built and embedding runs), failing if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be interrupted; make the input larger")
        if staging.is_dir() and any(staging.iterdir()):
            return
        time.sleep(0.02)
    pytest.fail(f"nothing was staged in {staging} within {timeout} s")


def test_ctrl_c_prints_one_line_exits_130_and_rerun_succeeds(tiny_bert_dir, tmp_path):
    source = _write_input(tmp_path / "in.txt")
    output = tmp_path / "out"
    command = _command(source, output, tiny_bert_dir)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        # Its own process group, signalled as a whole: what a terminal's Ctrl-C does.
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                process_group=0, preexec_fn=default_ctrl_c)
        try:
            _wait_until_embedding(proc, output / "_temporary", timeout=45)
            before_interrupt = err_path.stat().st_size
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stderr = err_path.read_bytes()
    after = stderr[before_interrupt:].decode("utf-8", "replace")

    assert code == EXIT_CODE, stderr.decode("utf-8", "replace")[-3000:]
    assert b"Traceback" not in stderr
    assert [line for line in after.splitlines() if line.strip()] == [
        "interrupted; nothing was committed (no _SUCCESS); rerunning the same command starts over cleanly"
    ], after
    assert not (output / "_SUCCESS").exists()

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (output / "_SUCCESS").exists()


def _beam_style_failure() -> None:
    """What Beam's DoFnRunner does with a KeyboardInterrupt: log it with its traceback, raise a RuntimeError."""
    try:
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C were pressed while a DoFn runs
        time.sleep(5)
    except KeyboardInterrupt as exc:
        logging.getLogger("apache_beam.runners.common").exception("KeyboardInterrupt [while running 'Embed']")
        raise RuntimeError("KeyboardInterrupt [while running 'Embed']") from exc


@pytest.fixture
def ctrl_c():
    """Python's default SIGINT handler for the test, also when the suite was started with SIGINT ignored."""
    with python_ctrl_c():
        yield


def test_sigint_becomes_job_interrupted_and_silences_beam(tmp_path, caplog, ctrl_c):
    hook = threading.excepthook
    try:
        with pytest.raises(JobInterrupted) as info, interruptible(str(tmp_path)):
            _beam_style_failure()
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped interruptible()")
    assert info.value.exit_code == 130
    assert str(info.value).startswith("interrupted; nothing was committed")
    assert not [r for r in caplog.records if r.name.startswith("apache_beam")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert logging.getLogger("apache_beam").level == logging.NOTSET
    assert threading.excepthook is hook


def test_failure_without_interrupt_passes_through(tmp_path, ctrl_c):
    failure = RuntimeError("boom [while running 'Embed']")
    with pytest.raises(RuntimeError) as info, interruptible(str(tmp_path)):
        raise failure
    assert info.value is failure
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_wrapped_keyboard_interrupt_counts_without_our_handler(tmp_path):
    """A KeyboardInterrupt re-raised as something else (Beam) is still an interrupt, e.g. under another handler."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("KeyboardInterrupt [while running 'Embed']") from None
    except RuntimeError as exc:
        assert caused_by_interrupt(exc)  # `from None` hides the context from tracebacks, not from __context__
    assert not caused_by_interrupt(RuntimeError("boom"))


def test_message_says_when_output_holds_a_finished_run(tmp_path):
    """Ctrl-C after the commit (or before an earlier run's output was cleaned) must not claim nothing is there."""
    assert "nothing was committed" in interrupted_message(str(tmp_path))
    (tmp_path / "_SUCCESS").write_text("{}", encoding="utf-8")
    assert "still holds a finished run" in interrupted_message(str(tmp_path))
