"""Reading the records of one shard, format by format. No Beam.

Every reader streams: it holds one record (one line, one CSV row, one Parquet batch) at a
time, so a 10 GB shard is never loaded whole. Each yields one outcome per input record:
a Record to embed, a Skipped blank, or a DeadLetter with its reason (or, for lines the job has already
decided, an Unread placeholder: see `shard_outcomes`).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Container, Iterator
from typing import BinaryIO

import zstandard

from encoders.declare import escaped
from pipeline.formats.records import (
    RAW_PREVIEW_CHARS,
    DeadLetter,
    InputFormat,
    Record,
    Skipped,
    Unread,
    from_fields,
    parse_line,
    raw_preview,
    text_preview,
    without_bom,
)
from pipeline.formats.shards import Shard, open_shard
from pipeline.formats.structure import DELIMITERS, fields_problem, parquet_schema_problem, text_stream

Outcome = Record | DeadLetter | Skipped | Unread
STRUCTURED_FORMATS = ("jsonl", "csv", "tsv", "parquet")
HEADED_FORMATS = ("csv", "tsv", "parquet")  # the field names are known before the first record
_PARQUET_BATCH_ROWS = 1024
_BYTES_PER_CHAR = 4  # the most any of Python's codecs spends on one character (UTF-8, UTF-32)


class ShardFormatError(ValueError):
    """A shard's structure does not fit the job (e.g. its header lacks --text_field): the job must fail."""


class ShardReadError(RuntimeError):
    """A whole shard cannot be read (corrupt compression, permissions): the job must fail."""


# What reading or decompressing a stream raises; anything else is a bug, not a bad shard.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zstandard.ZstdError)


def shard_outcomes(shard: Shard, fmt: InputFormat,
                   unread: Container[int] = frozenset()) -> Iterator[tuple[Outcome, BinaryIO]]:
    """(outcome, raw stream) for every record of a shard; a stream that cannot be read fails the job, named.

    The raw stream's position tells how much of the stored file has been read (for progress). Lines of
    unread (record numbers a pass over the same shard found to be Records) may come as Unread, not
    parsed again: text and JSON Lines shards do so, where parsing is most of the cost of a line.
    """
    try:
        stream, raw_stream = open_shard(shard.path)
        with stream:
            for outcome in read_records(stream, shard.name, fmt, unread):
                yield outcome, raw_stream
    except _STREAM_ERRORS as exc:
        raise ShardReadError(f"cannot read shard {escaped(shard.path)}: {exc}") from exc


def read_records(stream: BinaryIO, source: str, fmt: InputFormat,
                 unread: Container[int] = frozenset()) -> Iterator[Outcome]:
    """Outcomes of every record of a decompressed shard stream, in order (see `shard_outcomes` for unread).

    Raises ShardFormatError when the shard as a whole cannot be read as fmt says.
    """
    if fmt.format in DELIMITERS:
        yield from _read_delimited(stream, source, fmt)
    elif fmt.format == "parquet":
        yield from _read_parquet(stream, source, fmt)
    else:
        yield from _read_lines(stream, source, fmt, unread)


def _read_lines(stream: BinaryIO, source: str, fmt: InputFormat, unread: Container[int]) -> Iterator[Outcome]:
    """Plain text and JSON Lines: one record per line, lines split at LF (CRLF's CR dropped)."""
    limit = fmt.max_chars * _BYTES_PER_CHAR + _BYTES_PER_CHAR
    line = 0
    while raw := stream.readline(limit):
        line += 1
        if len(raw) >= limit and not raw.endswith(b"\n"):
            # Longer than --max_chars whatever its encoding: skip the rest of the line unread.
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            detail = f"line longer than {limit} bytes, so more than --max_chars {fmt.max_chars} characters"
            yield DeadLetter(source, line, "too_long", detail, raw=raw_preview(without_bom(raw[:4096], line, fmt)))
            continue
        if line in unread:
            yield Unread(source, line)
            continue
        yield parse_line(raw.rstrip(b"\n").removesuffix(b"\r"), source, line, fmt)


def _read_delimited(stream: BinaryIO, source: str, fmt: InputFormat) -> Iterator[Outcome]:
    """CSV/TSV with a header row; a quoted field may span lines. `line` is where the row starts.

    A row shorter than its header lacks its last fields (null); a longer one is a dead letter `extra_fields`.
    """
    delimiter = DELIMITERS[fmt.format]
    # A field may be longer than the default 128 KiB; --max_chars then decides. The limit is
    # process-wide in the csv module, so it only ever grows.
    csv.field_size_limit(max(csv.field_size_limit(), min(fmt.max_chars * 2 + 1, sys.maxsize)))
    rows = csv.reader(text_stream(stream, fmt.encoding), delimiter=delimiter)
    try:
        header = next(rows, None)
    except csv.Error as exc:
        raise ShardFormatError(f"cannot read the header row: {exc}") from exc
    if header is None:
        return
    problem = fields_problem(header, fmt)
    if problem:
        raise ShardFormatError(problem)
    end = rows.line_num
    while True:
        start = end + 1
        try:
            row = next(rows, None)
        except csv.Error as exc:
            end = rows.line_num
            yield DeadLetter(source, start, "invalid_csv", f"{exc} (lines {start}-{end})")
            continue
        if row is None:
            return
        end = rows.line_num
        if not row:
            yield Skipped(source, start)
            continue
        if len(row) > len(header):  # an unquoted delimiter in a value, or a row of another file: never cut
            detail = f"{len(row)} fields, but its header has {len(header)}: the extra fields belong to no column"
            yield DeadLetter(source, start, "extra_fields", detail, raw=text_preview(_csv_line(row, delimiter)))
            continue
        yield from_fields(dict(zip(header, row, strict=False)), source, start, fmt, _csv_line(row, delimiter))


def _csv_line(row: list[str], delimiter: str) -> str:
    """A row as one record of its format, to replay: a field holding a line break is quoted (the csv module
    quotes only the characters of its line terminator, so that must hold CR and LF)."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(row)
    return out.getvalue().removesuffix("\r\n")


def _read_parquet(stream: BinaryIO, source: str, fmt: InputFormat) -> Iterator[Outcome]:
    """Parquet, one row group batch at a time; `line` is the 1-based row number.

    Text and string ids are read as bytes, and kept values stay Arrow data (`pipeline.formats.arrow_rows`), so a
    value that is not valid UTF-8 costs its record (undecodable), not the shard.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.formats.arrow_json import texts
    from pipeline.formats.arrow_rows import batch_rows, undecodable_rows

    try:
        parquet = pq.ParquetFile(stream)
        # Dictionaries read with Parquet's own int32 indices: narrowing them to the int8/int16 the file's Arrow
        # schema declares checks every value as UTF-8, so one bad value would cost the shard, not its record.
        dictionaries = [f.name for f in parquet.schema_arrow if pa.types.is_dictionary(f.type)]
        if dictionaries:
            parquet = pq.ParquetFile(stream, read_dictionary=dictionaries)
    except (pa.ArrowException, OSError) as exc:
        raise ShardFormatError(f"not a readable Parquet file: {exc}") from exc
    problem = parquet_schema_problem(parquet.schema_arrow, fmt)
    if problem:
        raise ShardFormatError(problem)
    own = [fmt.text_field] + ([fmt.id_field] if fmt.id_field else [])
    kept = list(fmt.keep_fields)  # never the text or id field (`pipeline.settings`)
    row = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=own + kept):
        text_values = texts(batch.column(fmt.text_field), fmt.encoding)
        ids = _ids(batch.column(fmt.id_field), fmt.encoding) if fmt.id_field else [None] * len(text_values)
        kept_batch = batch.select(kept) if kept else None
        kept_rows = batch_rows(kept_batch) if kept else None
        undecodable = undecodable_rows(kept_batch) if kept else {}
        for position, (text, record_id) in enumerate(zip(text_values, ids, strict=True)):
            row += 1
            fields = {fmt.text_field: text, **({fmt.id_field: record_id} if fmt.id_field else {})}
            # The whole row as JSON, rendered only for the few records that become dead letters.
            raw = functools.partial(_row_raw, batch, position, fmt)
            outcome = from_fields(fields, source, row, fmt, raw, kept=kept_rows[position] if kept else None)
            if isinstance(outcome, Record) and position in undecodable:
                detail = f"field {undecodable[position]!r} holds a string that is not valid UTF-8"
                outcome = DeadLetter(source, row, "undecodable", detail, id=outcome.id, raw=raw())
            yield outcome


def _ids(column, encoding: str) -> list[object]:
    """--id_field values: text and bytes decoded as the text is (undecodable bytes as surrogate escapes, which
    make the record undecodable), numbers as Python numbers, all else as exact JSON values
    (`pipeline.formats.arrow_json`)."""
    import pyarrow as pa

    from pipeline.formats.arrow_json import json_values, texts

    type_ = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if _read_as_text(type_):
        return texts(column, encoding)
    if pa.types.is_floating(type_):
        return column.cast(pa.float64()).to_pylist()  # a non-finite float stays one: not an id (`from_fields`)
    return json_values(column)


def _read_as_text(type_) -> bool:
    """Whether a text or id column of this type is read as text: strings and bytes, dictionary-encoded or not."""
    import pyarrow as pa

    type_ = type_.value_type if pa.types.is_dictionary(type_) else type_
    return any(check(type_) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view,
                                          pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view,
                                          pa.types.is_fixed_size_binary))


def _row_raw(batch, position: int, fmt: InputFormat) -> str:
    """A Parquet row's columns read (text, id, kept) as JSON, for its dead letter (`pipeline.formats.arrow_json`);
    the text, and an id of strings or bytes, as the job read them, so the row replays with the same id."""
    from pipeline.formats.arrow_json import json_values, texts

    one = batch.slice(position, 1)
    row = {}
    for name, column in zip(one.schema.names, one.columns, strict=True):
        if name == fmt.text_field or (name == fmt.id_field and _read_as_text(column.type)):
            text = texts(column, fmt.encoding)[0]
            row[name] = None if text is None else text[: RAW_PREVIEW_CHARS + 1]  # a 50 MB text is cut anyway
        else:
            row[name] = json_values(column)[0]
    return raw_preview(json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape"))
