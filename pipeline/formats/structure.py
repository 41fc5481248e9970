"""Whether a structured shard (JSON Lines, CSV/TSV, Parquet) can serve the job, from its header or schema alone.

Checked at launch for every shard (`pipeline.preflight`) and again as each is read (`pipeline.formats.readers`).
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

from pipeline.formats.records import InputFormat

DELIMITERS = {"csv": ",", "tsv": "\t"}


def text_stream(stream: BinaryIO, encoding: str) -> io.TextIOWrapper:
    """Undecodable bytes survive as surrogate escapes, so one bad byte costs one record, not the shard."""
    utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    return io.TextIOWrapper(stream, encoding="utf-8-sig" if utf8 else encoding, errors="surrogateescape", newline="")


def fields_problem(names: list[str], fmt: InputFormat) -> str | None:
    """Why a header/schema with these field names cannot serve fmt (a field it lacks, or holds more than once), or None.

    A repeated name the job reads is refused: reading by name would take one of the columns without a word. A
    repeated name it does not read is no concern of the job's.
    """
    wanted = {f"--{flag}_field {name!r}": name for flag, name in (("text", fmt.text_field), ("id", fmt.id_field))
              if name}
    wanted.update({f"--keep_fields {name!r}": name for name in fmt.keep_fields})
    missing = [flag for flag, name in wanted.items() if name not in names]
    if missing:
        flags = " / ".join(missing)
        shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
        return f"{flags} not among its fields ({shown})"
    repeated = [f"{flag} names {names.count(name)} of its columns" for flag, name in wanted.items()
                if names.count(name) > 1]
    if repeated:
        return f"{'; '.join(repeated)}, so which to read is unclear: rename all but one"
    return None


def parquet_schema_problem(schema, fmt: InputFormat) -> str | None:
    """Why a Parquet schema cannot serve fmt (missing or repeated fields, a text column that is not text), or None."""
    import pyarrow as pa

    problem = fields_problem(schema.names, fmt)
    if problem:
        return problem
    text_type = schema.field(fmt.text_field).type
    textual = pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_binary(
        text_type
    ) or pa.types.is_large_binary(text_type)
    if not textual:
        return f"--text_field {fmt.text_field!r} is a {text_type} column, not a string column"
    return None


def _holds_fixed_size_list(type_) -> bool:
    import pyarrow as pa

    if pa.types.is_fixed_size_list(type_):
        return True
    return any(_holds_fixed_size_list(type_.field(i).type) for i in range(type_.num_fields))


def _unreadable_fixed_size_lists(parquet, fmt: InputFormat) -> str | None:
    """Why a kept column of fixed-size lists cannot be read, or None. pyarrow before 26 (Beam 2.77 needs it)
    cannot read one holding a null (apache/arrow#35692): found now, by reading those columns alone, it is a
    config error, not a shard that fails mid-run. Costs a read of such columns only when they are kept."""
    import pyarrow as pa

    schema = parquet.schema_arrow
    for name in fmt.keep_fields:
        if name in schema.names and _holds_fixed_size_list(schema.field(name).type):
            try:
                parquet.read(columns=[name])
            except pa.ArrowInvalid:
                return (f"kept field {name!r} holds a null fixed-size list, which pyarrow before 26 cannot read "
                        f"(apache/arrow#35692): cast the column to a list, or leave it out of --keep_fields")
    return None


def structure_problem(stream: BinaryIO, fmt: InputFormat) -> str | None:
    """Check a structured shard's header or schema before the job starts; reads only its start (or footer)."""
    if fmt.format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(stream)
        except (pa.ArrowException, OSError) as exc:
            return f"not a readable Parquet file: {exc}"
        return parquet_schema_problem(parquet.schema_arrow, fmt) or _unreadable_fixed_size_lists(parquet, fmt)
    if fmt.format in DELIMITERS:
        try:
            header = next(csv.reader(text_stream(stream, fmt.encoding), delimiter=DELIMITERS[fmt.format]), None)
        except (csv.Error, UnicodeError) as exc:
            return f"cannot read the header row: {exc}"
        return None if header is None else fields_problem(header, fmt)
    return None
