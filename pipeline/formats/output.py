"""The output layout: file names, staging, the Parquet schema, table building, and pages written and read checksummed.

Each part of each input shard becomes one Parquet file (and, when some of its records
failed, one dead-letter file) whose name depends only on the shard's position in the
sorted input list and the part's position in the shard. So a rerun, or a retried bundle,
writes the same names with the same rows: never a duplicate. Files are staged under
_temporary/ and moved into place only when the whole job has succeeded; _SUCCESS is last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

EMBEDDINGS_PREFIX = "embeddings"
EMBEDDINGS_SUFFIX = ".parquet"
FAILED_DIR = "failed"
FAILED_PREFIX = "dead-letters"
FAILED_SUFFIX = ".jsonl"
SUCCESS_FILE = "_SUCCESS"
# The job's own columns, in order; kept input fields (--keep_fields) and the text (--keep_text) follow.
BASE_COLUMNS = ("id", "embedding", "n_tokens", "truncated", "n_chunks", "text_hash")
TEXT_COLUMN = "text"
STAGING_DIR = "_temporary"
REPORT_FILE = "report.html"  # written by `python -m pipeline.report`, never by the job


def part_file_names(shard_index: int, part: int) -> tuple[str, str]:
    """(embeddings file, dead-letters file) of one part, relative to the output directory."""
    stem = f"{shard_index:05d}-{part:05d}"
    return (
        f"{EMBEDDINGS_PREFIX}-{stem}{EMBEDDINGS_SUFFIX}",
        f"{FAILED_DIR}/{FAILED_PREFIX}-{stem}{FAILED_SUFFIX}",
    )


def reused_file_name(earlier_file_index: int) -> str:
    """--snapshot: the rows reused from the earlier output file with this index (in sorted path order)."""
    return f"{EMBEDDINGS_PREFIX}-reused-{earlier_file_index:05d}{EMBEDDINGS_SUFFIX}"


def staged_name(name: str) -> str:
    """Where a file of the output waits until the job succeeds (flat, so one glob finds them all)."""
    return f"{STAGING_DIR}/{name.replace('/', '__')}"


def output_patterns() -> list[str]:
    """Globs, relative to the output directory, of every file a run writes, and its report; _SUCCESS first.

    The report describes one run, so cleaning up before the next removes it too.
    """
    return [
        SUCCESS_FILE,
        f"{EMBEDDINGS_PREFIX}-*{EMBEDDINGS_SUFFIX}",
        f"{FAILED_DIR}/{FAILED_PREFIX}-*{FAILED_SUFFIX}",
        f"{STAGING_DIR}/*",
        REPORT_FILE,
    ]


# Columns whose values are (nearly) all distinct: a dictionary page would only be built to be thrown away.
# Without it the file is smaller and written ~6x faster (100,000 rows of dim 32: 0.04 s, not 0.28 s).
UNIQUE_COLUMNS = ("id", "embedding", "text_hash", TEXT_COLUMN)


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as a Parquet file in memory (object stores take whole objects; parts are small).

    Dictionary encoding only where values repeat (counts, flags, kept fields), not for UNIQUE_COLUMNS, but for
    vectors of 8-bit values (--output_precision int8/uint8/binary/ubinary): Parquet has no 8-bit type and
    stores each as 4 bytes, while a dictionary of at most 256 values leaves one byte a value (a 384-dimension
    int8 vector: 386 bytes, not 806 snappy-compressed; binary 49, not 104). Every page carries a CRC-32 of its
    bytes (`open_parquet` checks them), so a page changed after it was written is an error when read back, not
    silently different vectors.
    """
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    if table.num_rows:
        dictionary = [n for n in table.schema.names if n not in UNIQUE_COLUMNS]
        vector = table.schema.field("embedding").type if "embedding" in table.schema.names else None
        if vector is not None and pa.types.is_fixed_size_list(vector) and vector.value_type.bit_width == 8:
            dictionary.append("embedding.list.element")  # a nested column is named by its leaf's path
        pq.write_table(table, sink, use_dictionary=dictionary, write_page_checksum=True)
    else:  # the schema and no row group: a row group of 0 rows makes datasets' reader fail (batch size 0)
        pq.ParquetWriter(sink, table.schema, write_page_checksum=True).close()
    return sink.getvalue().to_pybytes()


def open_parquet(source: str | BinaryIO) -> pq.ParquetFile:
    """An output Parquet file (a path or an open binary file) whose pages are checked as they are read.

    A page whose bytes do not match its checksum raises OSError when its rows are read. Pages that carry
    no checksum (a file another tool rewrote, or one written before checksums) are read unchecked.
    """
    import pyarrow.parquet as pq

    return pq.ParquetFile(source, page_checksum_verification=True)


def written_type(type_: pa.DataType) -> pa.DataType:
    """type_ as our files store a kept column of it: every fixed_size_list (at any depth) a list of the same items.

    Parquet stores a fixed-size list as a list anyway (only the file's Arrow schema calls it fixed), and pyarrow
    before 26 cannot read one back that holds a null (apache/arrow#35692), which Beam 2.77 pins us to. The
    declared type stays in the field's metadata (DECLARED_TYPE_KEY). List views are left as they are.
    """
    if pa.types.is_fixed_size_list(type_) or pa.types.is_list(type_):
        return pa.list_(type_.value_field.with_type(written_type(type_.value_type)))
    if pa.types.is_large_list(type_):
        return pa.large_list(type_.value_field.with_type(written_type(type_.value_type)))
    if pa.types.is_struct(type_):
        return pa.struct([f.with_type(written_type(f.type)) for f in type_])
    if pa.types.is_map(type_):
        return pa.map_(type_.key_field, type_.item_field.with_type(written_type(type_.item_type)), type_.keys_sorted)
    return type_


DECLARED_TYPE_KEY = b"declared_type"


def _written_field(field: pa.Field) -> pa.Field:
    written = written_type(field.type)
    if written == field.type:
        return field
    return field.with_type(written).with_metadata({**(field.metadata or {}), DECLARED_TYPE_KEY: str(field.type)})


def embeddings_schema(dim: int, metadata: Mapping[str, str], kept: Sequence[pa.Field] = (),
                      stored: pa.DataType | None = None) -> pa.Schema:
    """Columns id, embedding (fixed_size_list<float32>[dim]), n_tokens, truncated, n_chunks, text_hash, then kept.

    stored: the embedding column's type when --output_precision is not float32 (`encoders.quantize`):
    fixed_size_list<float16|int8|uint8>[dim], or [dim / 8] bytes for binary/ubinary.

    n_tokens counts the document's tokens with [CLS]/[SEP] (in truncate mode, those the model
    saw); n_chunks is how many windows were embedded (1 unless --long_text chunk); text_hash
    identifies the text as embedded, so a later run can tell which records it need not embed again.
    kept: the columns of --keep_fields and --keep_text (`pipeline.formats.kept_policy`), nullable.
    """
    own = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("embedding", stored or pa.list_(pa.float32(), dim), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("n_chunks", pa.int32(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
    ]
    return pa.schema([*own, *map(_written_field, kept)], metadata={k: str(v) for k, v in metadata.items()})


_NUMPY_TYPES = {pa.float32(): np.float32, pa.float16(): np.float16, pa.int8(): np.int8, pa.uint8(): np.uint8}


def embeddings_table(
    ids: Sequence[str],
    vectors: np.ndarray,
    n_tokens: np.ndarray,
    truncated: np.ndarray,
    n_chunks: np.ndarray,
    text_hashes: Sequence[str],
    schema: pa.Schema,
    kept: Sequence[pa.Array] = (),
) -> pa.Table:
    """A table of one batch; vectors is [n, width] as stored (`encoders.quantize`), matching the schema's embedding
    column; kept: the extra columns."""
    embedding = schema.field("embedding").type
    values = np.ascontiguousarray(vectors, dtype=_NUMPY_TYPES[embedding.value_type]).reshape(-1)
    flat = pa.array(values, type=embedding.value_type)
    dim = embedding.list_size
    columns = [
        pa.array(list(ids), type=pa.string()),
        pa.FixedSizeListArray.from_arrays(flat, dim),
        pa.array(np.asarray(n_tokens, dtype=np.int32)),
        pa.array(np.asarray(truncated, dtype=bool)),
        pa.array(np.asarray(n_chunks, dtype=np.int32)),
        pa.array(list(text_hashes), type=pa.string()),
        *kept,
    ]
    return table_of(columns, schema)


def table_of(columns: Sequence[pa.Array | pa.ChunkedArray], schema: pa.Schema) -> pa.Table:
    """The columns as a table of schema, kept columns cast to the types they are written as (`written_type`)."""
    cast = [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(cast, schema=schema)


def write_file(path: str, data: bytes) -> None:
    """Write a whole file on any filesystem Beam knows (objects are written whole)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def clear_previous_output(output: str) -> None:
    """Remove what an earlier run, finished or killed, left in output (only our own file names)."""
    from apache_beam.io.filesystems import FileSystems

    for pattern in output_patterns():  # _SUCCESS first: a half-cleaned directory never looks finished
        stale = [m.path for m in FileSystems.match([FileSystems.join(output, pattern)])[0].metadata_list]
        if stale:
            logger.info("removing %d files of an earlier run matching %s", len(stale), pattern)
            FileSystems.delete(stale)
