import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main


def in_process(command, capsys):
    """Run one of our commands' main(argv) in this process: a function of ARGS returning (exit code, stdout, stderr)."""

    def run(*args):
        code = command([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def portable_runner(tmp_path_factory):
    """Beam's job service and an SDK worker pool for the session, on free loopback ports (`pipeline.portable`).

    Stopped, with any worker they started, when the session ends, however it ends.
    """
    from pipeline.portable import portable_services

    with portable_services(str(tmp_path_factory.mktemp("beam-portable"))) as running:
        yield running


@pytest.fixture
def run_cli(capsys):
    """Run `python -m pipeline ARGS` in this process; returns (exit code, stdout, stderr)."""
    return in_process(main, capsys)


def read_manifest(output: Path) -> dict:
    return json.loads((Path(output) / "_SUCCESS").read_text(encoding="utf-8"))


def read_embeddings(output: Path) -> pa.Table:
    """All rows the manifest lists, sorted by id."""
    files = [Path(output) / f for f in read_manifest(output)["files"]["embeddings"]]
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return table.sort_by("id")


def read_dead_letters(output: Path) -> list[dict]:
    rows = []
    for path in sorted((Path(output) / "failed").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows
