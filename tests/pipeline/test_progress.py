import logging
import re
import threading
import time

from pipeline.launch.progress import Progress


def test_status_line_shows_rates_and_share_of_input():
    progress = Progress()
    progress.start("log", total_bytes=1000, interval=3600)
    progress.add(texts=10, tokens=600, bytes_read=250)
    line = progress.line()
    progress.stop()
    assert re.fullmatch(r"10 texts  [\d.]+ texts/s  [\d,]+ tokens/s  25% of input read", line)


def test_terminal_mode_rewrites_one_line_in_place(capsys):
    progress = Progress()
    progress.start("terminal", total_bytes=100, interval=0.01)
    progress.add(texts=3, bytes_read=100)
    progress.stop()
    err = capsys.readouterr().err
    assert "\r\033[K3 texts" in err and err.endswith("100% of input read\n")


def test_log_mode_writes_periodic_log_lines(caplog):
    progress = Progress()
    with caplog.at_level(logging.INFO, logger="pipeline.launch.progress"):
        progress.start("log", total_bytes=0, interval=0.01)
        progress.add(texts=5)
        time.sleep(0.1)
        progress.stop()
    assert any("progress: 5 texts" in r.getMessage() for r in caplog.records)


def test_off_mode_starts_no_reporter_and_reports_nothing(capsys, caplog):
    before = set(threading.enumerate())
    progress = Progress()
    with caplog.at_level(logging.DEBUG, logger="pipeline.launch.progress"):
        progress.start("off", total_bytes=10, interval=0.01)
        progress.add(texts=1)
        assert set(threading.enumerate()) == before, "a reporter thread"
        time.sleep(0.05)  # five periods: a reporter would have spoken
        progress.stop()
    assert not caplog.records
    assert capsys.readouterr().err == ""
