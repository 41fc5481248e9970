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
        # JSON Lines: records end at LF only (str.splitlines also breaks at U+2028, U+0085, ... inside strings).
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    return rows


def rewrite_embeddings(path: Path, change, keep_metadata: bool = True) -> None:
    """Rewrite one embeddings file with change(embedding column) in place of its embedding column.

    As another tool rewriting the output would (DuckDB's `COPY ... TO` writes list<float> and, without
    KV_METADATA, none of the file's key-value metadata: keep_metadata=False).
    """
    table = pq.read_table(path)
    column = change(table.column("embedding").combine_chunks())
    table = table.set_column(table.schema.get_field_index("embedding"), pa.field("embedding", column.type), column)
    pq.write_table(table if keep_metadata else table.replace_schema_metadata(None), path)


def damage_page(path: Path, column: str = "embedding", count: int = 200) -> None:
    """Invert count bytes inside the page that holds column's values in the file's first row group, as a bad disk,
    a bad copy or a hand edit would; the footer and the page headers are left alone, so the file still opens.

    A dictionary-encoded column's values are in its dictionary page (the data page after it holds indices into
    it), so that page is changed when there is one, otherwise the data page.
    """
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    chunks = [row_group.column(i) for i in range(row_group.num_columns)]
    chunk = next(c for c in chunks if c.path_in_schema.split(".")[0] == column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    end = chunk.data_page_offset if chunk.has_dictionary_page else start + chunk.total_compressed_size
    first = end - count  # the page's last bytes: values, whatever the length of its header and levels
    assert first >= start + _PAGE_HEADER_ROOM, f"the page of {column} in {path} holds fewer than {count} bytes"
    data = bytearray(path.read_bytes())
    data[first:first + count] = bytes(b ^ 0xFF for b in data[first:first + count])
    path.write_bytes(bytes(data))


# More than a page header (with its checksum) and the compressed block's preamble take: bytes past it are values.
_PAGE_HEADER_ROOM = 48


def _rows_changed(change, vector_type: pa.DataType | None = None):
    """change(rows as Python lists) -> rows, written back as vector_type (list<float> unless given)."""
    return lambda column: pa.array(change(column.to_pylist()), type=vector_type or pa.list_(pa.float32()))


# Embedding columns that are not vectors of the recorded width (the tiny model's 32), with a part of the one line
# a tool must print.
NOT_VECTORS = [
    pytest.param(_rows_changed(lambda rows: [rows[0][:-1], *rows[1:]]), "hold 31 to 32 values a row, but the "
                 "output's dim is 32", id="ragged"),
    pytest.param(_rows_changed(lambda rows: [r[:-1] for r in rows]), "hold 31 values a row, but the output's dim "
                 "is 32", id="all-shorter"),
    pytest.param(_rows_changed(lambda rows: [r[:-1] for r in rows], pa.list_(pa.float32(), 31)),
                 "hold 31 values a row, but the output's dim is 32", id="fixed-size-of-another-width"),
    pytest.param(_rows_changed(lambda rows: [None, *rows[1:]]), "1 row(s) have a null embedding", id="null-row"),
    pytest.param(_rows_changed(lambda rows: [[None, *rows[0][1:]], *rows[1:]]), "1 null value(s) in its "
                 "embeddings", id="null-value"),
    pytest.param(_rows_changed(lambda rows: [[round(v) for v in r] for r in rows], pa.list_(pa.int32())),
                 "the embedding column holds lists of int32, not lists of floats", id="integers"),
    pytest.param(lambda column: pa.array([json.dumps(row) for row in column.to_pylist()]),
                 "the embedding column holds string values, not lists of floats", id="json-text"),
]
