"""Which type each kept input field (--keep_fields, --keep_text) gets, and whether a value fits it. Pure, no Beam.

Every file of a run has the same schema, so a reader can union them. CSV/TSV columns are strings and
Parquet columns keep their own type; Parquet shards that declare different types must widen losslessly
into one (`pipeline.formats.kept_types`), or the run stops: at launch (exit 2), or on a worker, where the decision
is made again, as a failed job; never with values changed. Parquet values travel as Arrow data
(`pipeline.formats.arrow_rows`). JSON Lines says nothing up front, so the type of a JSON field is decided from its
values in the first `SAMPLE_RECORDS` records of each shard: one JSON kind gives its Arrow type (string,
int64, float64, bool), ints and floats give float64, any other mix gives string (numbers and booleans as
their JSON text). Objects and arrays are kept as JSON text. A JSON or CSV field that meets a Parquet column
takes the lossless widening if there is one (int64 values in an int32 Parquet column give int64), else the
JSON rule over the Parquet type's JSON kind (a struct meeting strings gives string, the Parquet values as
their JSON text). A later value that does not fit its column (a string in an int64 column, a Parquet int64
above 2**53 in a float64 column) makes its record a dead letter `kept_field_type`, never a crash and never
a silently dropped or changed value (a number is stored exactly or not at all).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.formats.arrow_rows import ArrowRows, fit_row, joined_columns
from pipeline.formats.kept_types import Declared, FieldTypes, declared_type, json_kind, widen_all
from pipeline.formats.output import TEXT_COLUMN
from pipeline.formats.readers import shard_outcomes
from pipeline.formats.records import InputFormat, Record
from pipeline.formats.shards import Shard, open_shard

logger = logging.getLogger(__name__)

SAMPLE_RECORDS = 1000
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class KeptColumns:
    """The extra columns of this run's output: kept input fields (name and type), then the text if kept."""

    fields: tuple[pa.Field, ...] = ()
    text: bool = False

    def output_fields(self) -> list[pa.Field]:
        """Schema fields after the job's own columns."""
        return [*self.fields, *([pa.field(TEXT_COLUMN, pa.string())] if self.text else [])]

    def fit(self, values: Sequence[object] | ArrowRows) -> tuple[tuple[object, ...] | ArrowRows, str | None]:
        """(values as their columns hold them, None), or (values, why one does not fit its column).

        values: a record's kept values, Python values (JSON, CSV) or a Parquet row as Arrow data.
        """
        if isinstance(values, ArrowRows):
            return fit_row(self.fields, values)
        fitted = []
        for field, value in zip(self.fields, values, strict=True):
            converted, ok = _fit(value, field.type)
            if not ok:
                return tuple(values), (
                    f"field {field.name!r} holds a {type(value).__name__} ({_preview(value)}), but this run's column "
                    f"is {field.type} (decided from the first {SAMPLE_RECORDS} records of each shard)")
            fitted.append(converted)
        return tuple(fitted), None

    def arrays(self, rows: Sequence[tuple[object, ...] | ArrowRows], texts: Sequence[str] | None) -> list[pa.Array]:
        """Columns of the kept fields (rows already fitted) and, with --keep_text, of the texts."""
        if any(isinstance(row, ArrowRows) for row in rows):  # Parquet rows, maybe beside JSON ones (--snapshot)
            columns = joined_columns(self.fields, rows, self._value_columns)
        else:
            columns = self._value_columns(rows)
        if self.text:
            columns.append(pa.array(list(texts or ()), type=pa.string()))
        return columns

    def _value_columns(self, rows: Sequence[tuple[object, ...]]) -> list[pa.Array]:
        return [pa.array([row[i] for row in rows], type=field.type) for i, field in enumerate(self.fields)]


def observe_shard(shard: Shard, fmt: InputFormat, limit: int = SAMPLE_RECORDS) -> dict[str, FieldTypes]:
    """{kept field: its types} in one shard: as its Parquet schema declares them, or its first `limit` records show."""
    fmt = dataclasses.replace(fmt, format=shard.format)
    if shard.format in ("csv", "tsv"):
        return {name: FieldTypes(observed={pa.string()}) for name in fmt.keep_fields}
    if shard.format == "parquet":
        import pyarrow.parquet as pq

        stream, _ = open_shard(shard.path)
        with stream:
            schema = pq.ParquetFile(stream).schema_arrow
        return {name: FieldTypes(declared={schema.field(name).type: Declared(1, (shard.name,))})
                for name in fmt.keep_fields if name in schema.names}
    seen: dict[str, set[pa.DataType]] = {name: set() for name in fmt.keep_fields}
    records = 0
    for outcome, _ in shard_outcomes(shard, fmt):
        if not isinstance(outcome, Record):
            continue
        for name, value in zip(fmt.keep_fields, outcome.kept, strict=True):
            if value is not None:
                seen[name].add(json_type(value))
        records += 1
        if records >= limit:
            break
    return {name: FieldTypes(observed=types) for name, types in seen.items()}


def merge_observed(observed: Iterable[Mapping[str, FieldTypes]]) -> dict[str, FieldTypes]:
    """The union of several shards' observations."""
    merged: dict[str, FieldTypes] = {}
    for one in observed:
        for name, types in one.items():
            merged[name] = merged[name].merge(types) if name in merged else types
    return merged


def decide_columns(names: Sequence[str], observed: Mapping[str, FieldTypes], text: bool) -> KeptColumns:
    """The run's kept columns from what the shards showed.

    Parquet-declared types that do not widen losslessly raise KeptTypeError, naming the shards: at launch
    a config error; on a worker a failed job, never a column that would change their values. JSON and CSV
    types always give a column (string when nothing else holds them).
    """
    fields = []
    for name in names:
        seen = observed.get(name, FieldTypes())
        declared = declared_type(name, seen.declared)
        observed_types = {t for t in seen.observed if not pa.types.is_null(t)}
        if declared is None:
            column = _column_type(observed_types)
        elif not observed_types:
            column = declared
        else:
            column = widen_all([declared, *observed_types]) or _column_type({json_kind(declared), *observed_types})
            if column != declared:
                logger.info("--keep_fields %r: Parquet %s meets JSON/CSV values of %s; the column is %s", name,
                            declared, ", ".join(sorted(map(str, observed_types))), column)
        fields.append(pa.field(name, column))
    return KeptColumns(tuple(fields), text)


def json_type(value: object) -> pa.DataType:
    """The Arrow type a JSON value is kept as."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if _INT64[0] <= value <= _INT64[1] else pa.string()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()  # strings, and objects/arrays kept as JSON text


def _column_type(types: set[pa.DataType]) -> pa.DataType:
    """The column of JSON-observed types (JSON scalars, CSV's string), by the JSON rule of the module's docstring."""
    types = {t for t in types if not pa.types.is_null(t)}
    if not types:
        return pa.string()  # never seen with a value: nulls (or later values) as text
    if len(types) == 1:
        return next(iter(types))
    if types <= {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def _fit(value: object, column: pa.DataType) -> tuple[object, bool]:
    """(value as the column holds it, True), or (value, False) when it does not fit; never raises.

    A number in a numeric column is stored exactly or not at all (a float may round to a float32 column).
    """
    if value is None:
        return None, True
    if column == pa.string():
        if isinstance(value, str):
            return value, True
        if isinstance(value, float) and not math.isfinite(value):
            return str(value), True
        # A JSON scalar in a column of mixed kinds, or a value of a type that did not unify: its JSON text.
        try:
            return json.dumps(value, ensure_ascii=False, default=str), True
        except (TypeError, ValueError, RecursionError):  # e.g. an int of more digits than Python prints
            return value, False
    if column == pa.int64():
        if isinstance(value, float) and value.is_integer():  # JSON's 3.0 in a column of ints
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
        return value, ok
    if column == pa.float64():
        if isinstance(value, float):
            return value, True  # NaN and the infinities included: Arrow stores them
        if not isinstance(value, int) or isinstance(value, bool):
            return value, False
        try:
            converted = float(value)
        except OverflowError:  # past float64's range (about 1.8e308)
            return value, False
        return (converted, True) if converted == value else (value, False)  # past 2**53 not every int has one
    if column == pa.bool_():
        return value, isinstance(value, bool)
    floating = pa.types.is_floating(column)
    if floating or pa.types.is_integer(column):
        # Parquet's other numbers. Arrow would store False as 0.0, 1.5 in an int32 column as 1, and in
        # a float32 one 2**24 + 1 rounded and 1e39 as inf, without a word.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, False
        try:
            stored = pa.scalar(value, type=column).as_py()
        except (pa.ArrowException, OverflowError):
            return value, False
        if floating and isinstance(value, float):  # a float column keeps a float to its own precision
            return value, stored == value or math.isnan(value) or math.isfinite(stored)
        return value, stored == value
    try:  # Parquet's own types (nested, temporal, decimal): Arrow decides
        pa.scalar(value, type=column)
    except (pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError):
        return value, False
    return value, True


def _preview(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        text = f"an int of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."
