"""The Parquet files the job writes carry a checksum on every page, and reading our outputs back checks them."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.formats.output import embeddings_schema, embeddings_table, open_parquet, parquet_bytes, written_type
from tests.pipeline.conftest import damage_page

ROWS, DIM = 8, 32


def _table():
    rng = np.random.default_rng(3)
    ids = [f"r{i}" for i in range(ROWS)]
    schema = embeddings_schema(DIM, {"model_fingerprint": "f"})
    return embeddings_table(
        ids,
        rng.standard_normal((ROWS, DIM)),
        np.full(ROWS, 7),
        np.arange(ROWS) % 2 == 0,
        np.ones(ROWS),
        [f"h{i}" for i in range(ROWS)],
        schema,
    )


def _page_ends(data: bytes) -> list[tuple[str, int]]:
    """(column, end) of every page of the file, dictionary pages included (small files: one data page a column)."""
    row_group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    ends = []
    for chunk in (row_group.column(i) for i in range(row_group.num_columns)):
        if chunk.has_dictionary_page:
            ends.append((f"{chunk.path_in_schema} (dictionary)", chunk.data_page_offset))
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        ends.append((chunk.path_in_schema, start + chunk.total_compressed_size))
    return ends


def test_every_page_the_job_writes_carries_a_checksum_that_reading_checks():
    data = parquet_bytes(_table())
    assert open_parquet(io.BytesIO(data)).read().equals(_table())
    ends = _page_ends(data)
    leaves = pq.ParquetFile(io.BytesIO(data)).schema.names
    assert {page.removesuffix(" (dictionary)") for page, _ in ends} == {
        chunk.path_in_schema for chunk in map(pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column,
                                              range(len(leaves)))}
    unchecked = []
    for page, end in ends:
        changed = bytearray(data)
        changed[end - 1] ^= 0x01  # the page's last byte: past its header, whatever the header's length
        try:
            open_parquet(io.BytesIO(bytes(changed))).read()
        except OSError as exc:
            if "CRC checksum verification failed" in str(exc):
                continue
        unchecked.append(page)
    assert not unchecked


def test_pages_written_without_a_checksum_are_read_unchecked(tmp_path):
    """What files rewritten by other tools (DuckDB, pyarrow's defaults) are like: still read, nothing to check."""
    path = tmp_path / "plain.parquet"
    pq.write_table(_table(), path)
    assert open_parquet(path).read().equals(_table())
    damage_page(path)
    assert open_parquet(path).read().column("embedding") != _table().column("embedding")


@pytest.mark.parametrize(("declared", "stored"), [
    (pa.list_(pa.int32(), 2), pa.list_(pa.int32())),
    (pa.list_(pa.list_(pa.float16(), 3)), pa.list_(pa.list_(pa.float16()))),
    (pa.large_list(pa.list_(pa.int8(), 1)), pa.large_list(pa.list_(pa.int8()))),
    (pa.struct([("a", pa.list_(pa.string(), 2)), ("b", pa.int64())]),
     pa.struct([("a", pa.list_(pa.string())), ("b", pa.int64())])),
    (pa.map_(pa.string(), pa.list_(pa.int64(), 2)), pa.map_(pa.string(), pa.list_(pa.int64()))),
    (pa.timestamp("ms", "UTC"), pa.timestamp("ms", "UTC")),
    (pa.dictionary(pa.int8(), pa.string()), pa.dictionary(pa.int8(), pa.string())),
])
def test_a_kept_column_is_stored_with_every_fixed_size_list_as_a_list_of_the_same_items(declared, stored):
    assert written_type(declared) == stored


def test_vectors_of_8_bit_values_take_one_byte_a_value_on_disk():
    """Parquet keeps int8/uint8 in 4-byte INT32 pages: a dictionary of the 256 values brings them to one byte."""
    rng = np.random.default_rng(0)
    for value_type, dtype, width in ((pa.int8(), np.int8, 384), (pa.uint8(), np.uint8, 48),
                                     (pa.float16(), np.float16, 64)):
        values = rng.integers(0, 100, (2000, width)).astype(dtype)
        column = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), value_type), width)
        meta = pq.ParquetFile(io.BytesIO(parquet_bytes(pa.table({"embedding": column})))).metadata
        chunk = meta.row_group(0).column(0)
        per_value = chunk.total_compressed_size / values.size
        if value_type.bit_width == 8:
            assert chunk.has_dictionary_page and per_value < 1.1, value_type
        else:  # float16's values are all distinct in real vectors: no dictionary built to be thrown away
            assert not chunk.has_dictionary_page, value_type
