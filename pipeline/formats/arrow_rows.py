"""Kept values of Parquet rows carried as Arrow data from the reader to the output file, never as Python objects.

Python's datetime, Decimal and str cannot hold every Parquet value (timestamp[ns], dates past 9999,
decimal256, strings that are not UTF-8), and a round trip through them may change a type (float16,
large_string, dictionary). So a Parquet record carries its kept values as a one-row slice of the
batch it was read from; a part carries one batch of its rows; the file is written from their columns.
A value is converted only to meet this run's column type: by Arrow's checked cast (int32 -> int64), or
as JSON text in a string column (`pipeline.formats.arrow_json`); a value the cast refuses is the record's dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import groupby

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.formats.arrow_json import as_text, json_values


class ArrowRows:
    """Kept values of consecutive Parquet rows: a record batch of the kept columns, in --keep_fields order.

    A reader's row is a slice sharing its batch's buffers; pickled (across a shuffle), rows carry only
    their own values: a pickled slice of an Arrow batch would carry the whole batch.
    """

    __slots__ = ("batch", "types", "_compact", "_size")

    def __init__(self, batch: pa.RecordBatch, compact: bool = False, size: int | None = None,
                 types: tuple[pa.DataType, ...] | None = None) -> None:
        self.batch = batch
        self.types = types if types is not None else tuple(batch.schema.types)  # a reader shares one per batch
        self._compact = compact  # its buffers hold only its rows
        self._size = size

    def __len__(self) -> int:
        return self.batch.num_rows

    def __getitem__(self, position: int) -> ArrowRows:
        return ArrowRows(self.batch.slice(position, 1), types=self.types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrowRows) and self.batch.equals(other.batch)

    __hash__ = None

    def __repr__(self) -> str:
        return f"ArrowRows({self.batch.num_rows} rows of {self.batch.schema.types})"

    def size(self) -> int:
        """About how many characters the values hold: their bytes (a dictionary value counts as its value)."""
        if self._size is None:
            self._size = sum(_value_bytes(column) for column in self.batch.columns)
        return self._size

    def __reduce__(self) -> tuple:
        return ArrowRows, (self.batch if self._compact else _compacted(self.batch), True, self._size)


def batch_rows(batch: pa.RecordBatch) -> list[ArrowRows]:
    """Every row of a reader's batch of kept columns, each a slice of it, their sizes counted once per column."""
    types = tuple(batch.schema.types)
    sizes = [0] * batch.num_rows
    for column in batch.columns:
        for position, size in enumerate(_row_bytes(column)):
            sizes[position] += size
    return [ArrowRows(batch.slice(position, 1), size=sizes[position], types=types)
            for position in range(batch.num_rows)]


def concat_rows(rows: Sequence[ArrowRows]) -> ArrowRows:
    """One batch of rows that all have the same column types (rows fitted to this run's columns).

    A dictionary column keeps only the values its rows use: a row's slice shares its batch's whole
    dictionary, which may hold a string that is not UTF-8 from a row that became a dead letter.
    """
    first = rows[0].batch
    columns = [_own_dictionary(pa.concat_arrays([row.batch.column(i) for row in rows]))
               for i in range(first.num_columns)]
    return ArrowRows(pa.RecordBatch.from_arrays(columns, names=first.schema.names), compact=True)


def fit_row(fields: Sequence[pa.Field], row: ArrowRows) -> tuple[ArrowRows, str | None]:
    """(the row with every value in its column's type, None), or (row, why a value does not fit its column).

    Arrow's checked cast converts (uint64 -> int64 fails above 2**63 - 1, int64 -> float64 above 2**53);
    a non-string value in a string column (a Parquet type that met JSON text) becomes its JSON text.
    """
    if all(type_ == field.type for type_, field in zip(row.types, fields, strict=True)):
        return row, None
    columns = row.batch.columns
    fitted = []
    for field, column in zip(fields, columns, strict=True):
        try:
            fitted.append(column if column.type == field.type else _converted(column, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            shown = as_text(json_values(column)[0])
            shown = shown if len(shown) <= 60 else shown[:60] + "..."
            return row, (f"field {field.name!r} holds a {column.type} value ({shown}) that this run's {field.type} "
                         f"column cannot hold exactly: {exc}")
    schema = pa.schema([pa.field(field.name, field.type) for field in fields])
    return ArrowRows(pa.RecordBatch.from_arrays(fitted, schema=schema), compact=True), None


def joined_columns(fields: Sequence[pa.Field], rows: Sequence[tuple | ArrowRows],
                   value_columns: Callable[[Sequence[tuple]], list[pa.Array]]) -> list[pa.Array]:
    """Columns of fitted rows of both kinds in order: Arrow rows (Parquet) and tuples of Python values (JSON, CSV).

    value_columns makes the columns of a run of tuples (`pipeline.formats.kept_policy.KeptColumns`).
    """
    chunks: list[list[pa.Array]] = [[] for _ in fields]
    for arrow, run in groupby(rows, key=lambda row: isinstance(row, ArrowRows)):
        run = list(run)
        columns = concat_rows(run).batch.columns if arrow else value_columns(run)
        for chunk, column in zip(chunks, columns, strict=True):
            chunk.append(column)
    return [pa.concat_arrays(chunk) if chunk else pa.array([], field.type) for chunk, field in zip(chunks, fields,
                                                                                                   strict=True)]


def undecodable_rows(batch: pa.RecordBatch) -> dict[int, str]:
    """{row position: the first kept field whose value holds a string that is not valid UTF-8} of one batch.

    Parquet strings are UTF-8 by contract, but readers do not check; Arrow's full validation does,
    once per column, and row by row only for a column where it failed.
    """
    bad: dict[int, str] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not _holds_text(column.type) or _valid(column):
            continue
        for position in range(len(column)):
            if position not in bad and not _valid(_dictionary_decoded(_taken(column, pa.array([position])))):
                bad[position] = name
    return dict(sorted(bad.items()))


def _converted(column: pa.Array, type_: pa.DataType) -> pa.Array:
    if (pa.types.is_string(type_) or pa.types.is_large_string(type_)) and not _holds_plain_text(column.type):
        return pa.array([None if v is None else as_text(v) for v in json_values(column)], type_)
    return column.cast(type_, safe=True)


def _compacted(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch in buffers of its own: `take` copies only its rows, nested children included."""
    positions = pa.array(range(batch.num_rows), pa.int64())
    columns = [_own_dictionary(_taken(column, positions)) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _taken(column: pa.Array, positions: pa.Array) -> pa.Array:
    """column.take(positions). Arrow has no take for string and binary views (nor for types holding them):
    those go through the large string or binary type, a cast that keeps every value, and back."""
    plain = _without_views(column.type)
    if plain == column.type:
        return column.take(positions)
    return column.cast(plain).take(positions).cast(column.type)


def _without_views(type_: pa.DataType) -> pa.DataType:
    """type_ with string and binary views as large strings and binaries, at any depth but inside list views (whose
    take works whatever they hold, and which Arrow cannot cast)."""
    if pa.types.is_string_view(type_):
        return pa.large_string()
    if pa.types.is_binary_view(type_):
        return pa.large_binary()
    if pa.types.is_struct(type_):
        return pa.struct([field.with_type(_without_views(field.type)) for field in type_])
    if pa.types.is_map(type_):
        return pa.map_(type_.key_field.with_type(_without_views(type_.key_type)),
                       type_.item_field.with_type(_without_views(type_.item_type)), type_.keys_sorted)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        make = pa.list_ if pa.types.is_list(type_) else pa.large_list
        return make(type_.value_field.with_type(_without_views(type_.value_type)))
    if pa.types.is_fixed_size_list(type_):
        return pa.list_(type_.value_field.with_type(_without_views(type_.value_type)), type_.list_size)
    return type_


def _own_dictionary(column: pa.Array) -> pa.Array:
    """A dictionary column with only the values its rows use (a taken row still shares the whole dictionary)."""
    if not pa.types.is_dictionary(column.type):
        return column
    return column.dictionary_decode().dictionary_encode().cast(column.type)


def _value_bytes(column: pa.Array) -> int:
    return _dictionary_decoded(column).nbytes  # a slice's bytes, not its parent's


def _row_bytes(column: pa.Array) -> list[int]:
    """Bytes of each value of a column: counted at once for strings and fixed-width values, else row by row."""
    column = _dictionary_decoded(column)
    type_ = column.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_binary(type_) or \
            pa.types.is_large_binary(type_):
        return pc.fill_null(pc.binary_length(column), 0).to_pylist()
    if pa.types.is_null(type_):
        return [0] * len(column)
    if type_.num_fields == 0:
        try:
            return [max(type_.bit_width // 8, 1)] * len(column)
        except ValueError:  # no fixed width (views, ...)
            pass
    return [column.slice(position, 1).nbytes for position in range(len(column))]


def _dictionary_decoded(column: pa.Array) -> pa.Array:
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def _valid(column: pa.Array) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _holds_plain_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def _holds_text(type_: pa.DataType) -> bool:
    """Whether a type holds strings anywhere (nested, and in an extension type's storage, such as JSON's)."""
    if _holds_plain_text(type_):
        return True
    if isinstance(type_, pa.BaseExtensionType):
        return _holds_text(type_.storage_type)
    if pa.types.is_dictionary(type_):
        return _holds_text(type_.value_type)
    return any(_holds_text(type_.field(i).type) for i in range(type_.num_fields))
