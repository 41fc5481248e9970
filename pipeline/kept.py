"""Input fields carried into the output (--keep_fields, --keep_text): one Arrow type per column for the whole run.

Every file of a run has the same schema, so a reader can union them. CSV/TSV columns are strings and
Parquet columns keep their own type (different shards' types must unify); JSON Lines says nothing up
front, so the type of a JSON field is decided from its values in the first `SAMPLE_RECORDS` records of
each shard: one JSON kind gives its Arrow type (string, int64, float64, bool), ints and floats give
float64, any other mix gives string (numbers and booleans as their JSON text). Objects and arrays are
kept as JSON text. A later value that does not fit its column (a string in an int64 column) makes its
record a dead letter `kept_field_type`, never a crash and never a silently dropped or changed value
(a number is stored exactly or not at all). Parquet shards whose types do not unify stop a run at
launch; on a worker (where JSON shards meet them) the column becomes string, with values that are not
strings as their JSON text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa

from pipeline.output import TEXT_COLUMN
from pipeline.readers import shard_outcomes
from pipeline.records import InputFormat, Record
from pipeline.shards import Shard, open_shard

logger = logging.getLogger(__name__)

SAMPLE_RECORDS = 1000
_INT64 = (-(2**63), 2**63 - 1)
_JSON_SCALARS = (pa.string(), pa.int64(), pa.float64(), pa.bool_())


class KeptTypeError(ValueError):
    """The shards disagree on a kept field's type in a way no column type can hold."""


@dataclass(frozen=True)
class KeptColumns:
    """The extra columns of this run's output: kept input fields (name and type), then the text if kept."""

    fields: tuple[pa.Field, ...] = ()
    text: bool = False

    def output_fields(self) -> list[pa.Field]:
        """Schema fields after the job's own columns."""
        return [*self.fields, *([pa.field(TEXT_COLUMN, pa.string())] if self.text else [])]

    def fit(self, values: Sequence[object]) -> tuple[tuple[object, ...], str | None]:
        """(values as their columns hold them, None), or (values, why one does not fit its column)."""
        fitted = []
        for field, value in zip(self.fields, values, strict=True):
            converted, ok = _fit(value, field.type)
            if not ok:
                return tuple(values), (
                    f"field {field.name!r} holds a {type(value).__name__} ({_preview(value)}), but this run's column "
                    f"is {field.type} (decided from the first {SAMPLE_RECORDS} records of each shard)")
            fitted.append(converted)
        return tuple(fitted), None

    def arrays(self, rows: Sequence[tuple[object, ...]], texts: Sequence[str] | None) -> list[pa.Array]:
        """Columns of the kept fields (rows already fitted) and, with --keep_text, of the texts."""
        columns = [pa.array([row[i] for row in rows], type=field.type) for i, field in enumerate(self.fields)]
        if self.text:
            columns.append(pa.array(list(texts or ()), type=pa.string()))
        return columns


def observe_shard(shard: Shard, fmt: InputFormat, limit: int = SAMPLE_RECORDS) -> dict[str, set[pa.DataType]]:
    """{kept field: the Arrow types its values have} in one shard (its schema, or its first `limit` records)."""
    fmt = dataclasses.replace(fmt, format=shard.format)
    if shard.format in ("csv", "tsv"):
        return {name: {pa.string()} for name in fmt.keep_fields}
    if shard.format == "parquet":
        import pyarrow.parquet as pq

        stream, _ = open_shard(shard.path)
        with stream:
            schema = pq.ParquetFile(stream).schema_arrow
        return {name: {schema.field(name).type} for name in fmt.keep_fields if name in schema.names}
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
    return seen


def merge_observed(observed: Iterable[Mapping[str, set[pa.DataType]]]) -> dict[str, set[pa.DataType]]:
    """The union of several shards' observations."""
    merged: dict[str, set[pa.DataType]] = {}
    for one in observed:
        for name, types in one.items():
            merged.setdefault(name, set()).update(types)
    return merged


def decide_columns(names: Sequence[str], observed: Mapping[str, set[pa.DataType]], text: bool,
                   strict: bool = True) -> KeptColumns:
    """The run's kept columns from what the shards showed.

    Types that cannot be unified raise KeptTypeError when strict (at launch), else make a string column
    (on a worker, where raising would fail the job after the launch checks passed).
    """
    fields = []
    for name in names:
        try:
            column = _column_type(name, observed.get(name, set()))
        except KeptTypeError as exc:
            if strict:
                raise
            logger.warning("%s; kept as a string column (values that are not strings as JSON text)", exc)
            column = pa.string()
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


def _column_type(name: str, types: set[pa.DataType]) -> pa.DataType:
    types = {t for t in types if not pa.types.is_null(t)}
    if not types:
        return pa.string()  # never seen with a value: nulls (or later values) as text
    if len(types) == 1:
        return next(iter(types))
    if types <= {pa.int64(), pa.float64()}:
        return pa.float64()
    if all(t in _JSON_SCALARS for t in types):
        return pa.string()
    try:
        schemas = [pa.schema([pa.field(name, t)]) for t in sorted(types, key=str)]
        return pa.unify_schemas(schemas, promote_options="permissive").field(name).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        shown = ", ".join(sorted(str(t) for t in types))
        raise KeptTypeError(f"--keep_fields {name!r} has types that do not unify across shards ({shown}): {exc}") \
            from None


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


class DecideKeptColumns(beam.PTransform):
    """(index, Shard) -> the run's one `KeptColumns` (for a singleton side input).

    With --keep_fields, from every shard's start (or header, or schema); otherwise fixed.
    """

    def __init__(self, input_format: InputFormat, keep_text: bool) -> None:
        super().__init__()
        self._input_format = input_format
        self._keep_text = keep_text

    def expand(self, shards: beam.PCollection) -> beam.PCollection:
        fmt, names, text = self._input_format, self._input_format.keep_fields, self._keep_text
        if not names:
            return shards.pipeline | "NoFieldsKept" >> beam.Create([KeptColumns(text=text)])
        return (
            shards
            | "ObserveKeptTypes" >> beam.MapTuple(lambda _, shard: observe_shard(shard, fmt))
            | "MergeKeptTypes" >> beam.CombineGlobally(merge_observed)
            | "DecideKeptTypes" >> beam.Map(lambda observed: decide_columns(names, observed, text, strict=False))
        )
