"""What the README says a run's output holds, worked out from generated input (`tests.pipeline.generated`).

The oracle of `tests/pipeline/test_input_properties.py`, written from the README's rules ("Input formats",
"Carrying input fields into the output", "Output"), not from the pipeline's code. Where a rule names a
mechanism, the oracle uses it: Arrow's checked cast (a Parquet value in a wider column) and the JSON rendering
of Parquet values (`pipeline.formats.arrow_json`, specified and tested on its own).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pyarrow as pa

from tests.pipeline.generated.records import RECORD, SAMPLE_RECORDS, GeneratedShard, InputRecord, Run

EMBED = "embed"
_INT64 = (-(2**63), 2**63 - 1)
_DECIMALS = {32: 9, 64: 18, 128: 38, 256: 76}  # bits: decimal digits
_DECIMAL_TYPES = {32: pa.decimal32, 64: pa.decimal64, 128: pa.decimal128, 256: pa.decimal256}


def widened(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The column both Parquet types widen into without changing a value (README, "Types"), or None."""
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        if pa.types.is_signed_integer(a) == pa.types.is_signed_integer(b):
            return a if a.bit_width >= b.bit_width else b
        unsigned, signed = (a, b) if pa.types.is_unsigned_integer(a) else (b, a)
        bits = max(signed.bit_width, 2 * unsigned.bit_width)  # a signed type twice as wide holds every value
        return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}.get(bits)
    if pa.types.is_floating(a) and pa.types.is_floating(b):
        return a if a.bit_width >= b.bit_width else b
    for narrow, wide in ((pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())):
        if {a, b} == {narrow, wide}:
            return wide
    if pa.types.is_decimal(a) and pa.types.is_decimal(b):  # the narrowest decimal holding both's digits
        scale = max(a.scale, b.scale)
        precision = max(a.precision - a.scale, b.precision - b.scale) + scale
        fitting = [bits for bits, digits in _DECIMALS.items() if bits >= max(a.bit_width, b.bit_width)
                   and precision <= digits]
        return _DECIMAL_TYPES[min(fitting)](precision, scale) if fitting else None
    return _widened_nested(a, b)


def _widened_nested(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    lists = (pa.types.is_list, pa.types.is_large_list)
    if any(f(a) for f in lists) and any(f(b) for f in lists):
        item = widened(a.value_type, b.value_type)
        large = pa.types.is_large_list(a) or pa.types.is_large_list(b)
        return None if item is None else pa.large_list(item) if large else pa.list_(item)
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b) and a.list_size == b.list_size:
        item = widened(a.value_type, b.value_type)
        return None if item is None else pa.list_(item, a.list_size)
    if pa.types.is_struct(a) and pa.types.is_struct(b) and a.names == b.names:
        members = [widened(x.type, y.type) for x, y in zip(a, b, strict=True)]
        return None if None in members else pa.struct(list(zip(a.names, members, strict=True)))
    if pa.types.is_map(a) and pa.types.is_map(b):
        key, item = widened(a.key_type, b.key_type), widened(a.item_type, b.item_type)
        return None if key is None or item is None else pa.map_(key, item)
    return None


def widened_all(types: list[pa.DataType]) -> pa.DataType | None:
    joined: pa.DataType | None = pa.null()
    for type_ in types:
        joined = None if joined is None else widened(joined, type_)
    return joined


def json_kind(type_: pa.DataType) -> pa.DataType:
    """The JSON kind of a Parquet type's values: bool, int64, float64, or string (their JSON text)."""
    if pa.types.is_boolean(type_):
        return pa.bool_()
    if pa.types.is_integer(type_):
        return pa.int64()
    return pa.float64() if pa.types.is_floating(type_) else pa.string()


def json_type(value: object) -> pa.DataType:
    """A JSON value's column type on its own: objects and arrays are kept as JSON text, so strings."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if _INT64[0] <= value <= _INT64[1] else pa.string()
    return pa.float64() if isinstance(value, float) else pa.string()


def json_rule(kinds: set[pa.DataType]) -> pa.DataType:
    """One kind gives its type, ints and floats give float64, any other mix (or none) gives string."""
    if len(kinds) == 1:
        return next(iter(kinds))
    return pa.float64() if kinds == {pa.int64(), pa.float64()} else pa.string()


def as_kept(value: object) -> object:
    """A JSON value as a kept field holds it: objects and arrays as their JSON text."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def kept_value(shard: GeneratedShard, record: InputRecord, name: str) -> object:
    """A record's value of a kept field: a JSON value as kept, a CSV string (None past a short row's end), or a
    Parquet value as a one-row Arrow array."""
    if shard.format == "parquet":
        return shard.data.column(name).slice(record.index, 1).combine_chunks()
    value = record.fields.get(name)
    return as_kept(value) if shard.format == "jsonl" else value


def column_types(run: Run) -> dict[str, pa.DataType] | str:
    """Each kept field's column type, or the first kept field whose Parquet types do not widen (exit 2)."""
    declared: dict[str, list[pa.DataType]] = {name: [] for name in run.kept}
    observed: dict[str, set[pa.DataType]] = {name: set() for name in run.kept}
    for shard in run.shards:
        if shard.format == "parquet":
            for name in run.kept:
                declared[name].append(shard.data.schema.field(name).type)
        elif shard.format in ("csv", "tsv"):
            for name in run.kept:
                observed[name].add(pa.string())
        else:
            sample = [r for r in shard.records if r.outcome == RECORD][:SAMPLE_RECORDS]
            for record in sample:
                for name in run.kept:
                    value = kept_value(shard, record, name)
                    if value is not None:
                        observed[name].add(json_type(value))
    columns = {}
    for name in run.kept:
        types = [t for t in declared[name] if not pa.types.is_null(t)]
        parquet = widened_all(types) if types else None
        if types and parquet is None:
            return name
        kinds = observed[name]
        if parquet is None:
            columns[name] = json_rule(kinds)
        elif not kinds:
            columns[name] = parquet
        else:
            columns[name] = widened_all([parquet, *kinds]) or json_rule({json_kind(parquet), *kinds})
    return columns




def is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def fits(value: object, column: pa.DataType) -> bool:
    """Whether a kept value is stored exactly in the column (else its record is a kept_field_type dead letter)."""
    if isinstance(value, pa.Array):  # Parquet: its own type, JSON text, or Arrow's checked cast
        if value.type == column or is_text(column) or value.null_count:
            return True
        try:
            value.cast(column, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True
    if value is None or is_text(column):
        return True
    if column == pa.int64():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    if column == pa.float64():
        if isinstance(value, float):
            return True
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        try:
            return float(value) == value
        except OverflowError:
            return False
    assert column == pa.bool_(), f"no JSON value meets a {column} column in these runs"
    return isinstance(value, bool)


def json_text(value: object) -> str:
    """A JSON value as a string column holds it: strings as they are, NaN and infinities as nan/inf, all else as
    JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Expected:
    """What the run does with one input record."""

    outcome: str  # EMBED, SKIP, FIELD_TOO_LARGE or a dead letter's reason
    id: str | None
    shard: GeneratedShard
    record: InputRecord
    detail: str | None = None  # what the dead letter's detail must name


def expected_outcomes(run: Run, columns: dict[str, pa.DataType]) -> dict[tuple[str, int], Expected]:
    """{(source, line): Expected} of every input record.

    Among records read as records, the first of an id (by shard order, then line) is embedded, or a
    kept_field_type dead letter if a kept value does not fit; every later one is a duplicate_id naming it.
    """
    expected = {}
    first: dict[str, str] = {}
    for shard in run.shards:
        for record in shard.records:
            key = (shard.name, record.line)
            if record.outcome != RECORD:
                detail = repr(record.flawed_field) if record.flawed_field else None
                expected[key] = Expected(record.outcome, record.id, shard, record, detail)
            elif record.id in first:
                expected[key] = Expected("duplicate_id", record.id, shard, record, first[record.id])
            else:
                first[record.id] = f"{shard.name}:{record.line}"
                misfits = [name for name in run.kept if not fits(kept_value(shard, record, name), columns[name])]
                expected[key] = (Expected("kept_field_type", record.id, shard, record, repr(misfits[0])) if misfits
                                 else Expected(EMBED, record.id, shard, record))
    return expected
