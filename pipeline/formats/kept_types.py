"""The type policy for Parquet-declared kept columns: lossless widening only, or an error naming the shards.

A Parquet shard declares each column's type, and its values are copied exactly, so shards that
disagree may only meet in a type that holds every value of each, unchanged:

- integers widen within their kind (int8 -> int16 -> int32 -> int64, uint8 -> ... -> uint64); an unsigned
  type joins a signed one only where a wider signed type holds it (uint32 + int8 -> int64; uint64 + int* fails);
- floats widen (float16 -> float32 -> float64); integers and floats never join (2**53 + 1 has no float64);
- string + large_string -> large_string, binary + large_binary -> large_binary (text and bytes never join);
- decimals widen to hold both the integer digits and the scale of each (decimal128(10, 2) + decimal128(12, 4)
  -> decimal128(12, 4)), within the precision of decimal256;
- list, large_list, fixed_size_list (same size), struct (same field names in the same order) and map widen
  their members by the same rules;
- anything else, timestamps of another unit or time zone included, joins only the identical type.

JSON and CSV values have a policy of their own (`pipeline.formats.kept_policy`). Pure functions, no Beam.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

SHARDS_NAMED = 3  # shards named per type in an error; the rest are counted
_DECIMAL_DIGITS = {32: 9, 64: 18, 128: 38, 256: 76}
_DECIMALS = {32: pa.decimal32, 64: pa.decimal64, 128: pa.decimal128, 256: pa.decimal256}


class KeptTypeError(ValueError):
    """The shards disagree on a kept field's type in a way no column type can hold."""


@dataclass(frozen=True)
class Declared:
    """The Parquet shards declaring one type for a kept field: how many, and the first few names in order."""

    count: int
    shards: tuple[str, ...]

    def merge(self, other: Declared) -> Declared:
        return Declared(self.count + other.count, tuple(sorted({*self.shards, *other.shards}))[:SHARDS_NAMED])


@dataclass
class FieldTypes:
    """What the shards showed of one kept field: Parquet-declared types, and the Arrow types of JSON/CSV values."""

    declared: dict[pa.DataType, Declared] = field(default_factory=dict)
    observed: set[pa.DataType] = field(default_factory=set)

    def merge(self, other: FieldTypes) -> FieldTypes:
        declared = dict(self.declared)
        for type_, shards in other.declared.items():
            declared[type_] = declared[type_].merge(shards) if type_ in declared else shards
        return FieldTypes(declared, self.observed | other.observed)


def declared_type(name: str, declared: Mapping[pa.DataType, Declared]) -> pa.DataType | None:
    """The one type every Parquet shard's column converts to losslessly; None if none declares one but null.

    Raises KeptTypeError naming the shards and their types when there is no such type.
    """
    types = [t for t in sorted(declared, key=str) if not pa.types.is_null(t)]
    if not types:
        return None
    joined = widen_all(types)
    if joined is None or not all(_castable(t, joined) for t in types):
        shown = "; ".join(f"{t} in {_shards(declared[t])}" for t in types)
        raise KeptTypeError(
            f"--keep_fields {name!r} has Parquet types that do not widen losslessly into one column: {shown} "
            f"(only widening that keeps every value is done: int32 + int64, float32 + float64; cast the column "
            f"in the shards that differ)")
    return joined


def widen_all(types: Iterable[pa.DataType]) -> pa.DataType | None:
    """The narrowest type all of types convert to without changing a value, or None."""
    joined: pa.DataType | None = pa.null()
    for type_ in types:
        joined = widen(joined, type_) if joined is not None else None
    return joined


def widen(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The narrowest type both a and b convert to without changing a value (the module's rules), or None."""
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return _wider_integer(a, b)
    if pa.types.is_floating(a) and pa.types.is_floating(b):
        return a if a.bit_width >= b.bit_width else b
    for narrow, wide in ((pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())):
        if {a, b} == {narrow, wide}:
            return wide
    if pa.types.is_decimal(a) and pa.types.is_decimal(b):
        return _wider_decimal(a, b)
    return _wider_nested(a, b)


def json_kind(type_: pa.DataType) -> pa.DataType:
    """The JSON kind a Parquet type's values have (bool, int64, float64; string for all else, as JSON text)."""
    if pa.types.is_boolean(type_):
        return pa.bool_()
    if pa.types.is_integer(type_):
        return pa.int64()
    if pa.types.is_floating(type_):
        return pa.float64()
    return pa.string()


def _wider_integer(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    signed_a, signed_b = pa.types.is_signed_integer(a), pa.types.is_signed_integer(b)
    if signed_a == signed_b:
        return a if a.bit_width >= b.bit_width else b
    unsigned, signed = (b, a) if signed_a else (a, b)
    bits = max(signed.bit_width, 2 * unsigned.bit_width)  # a signed type twice as wide holds every unsigned value
    return {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}.get(bits)


def _wider_decimal(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    scale = max(a.scale, b.scale)
    precision = max(a.precision - a.scale, b.precision - b.scale) + scale
    for bits in sorted(_DECIMALS):
        if bits >= max(a.bit_width, b.bit_width) and precision <= _DECIMAL_DIGITS[bits]:
            return _DECIMALS[bits](precision, scale)
    return None


def _wider_nested(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    lists = (pa.types.is_list, pa.types.is_large_list)
    if any(f(a) for f in lists) and any(f(b) for f in lists):
        item = _wider_field(a.value_field, b.value_field)
        large = pa.types.is_large_list(a) or pa.types.is_large_list(b)
        return None if item is None else (pa.large_list(item) if large else pa.list_(item))
    if pa.types.is_fixed_size_list(a) and pa.types.is_fixed_size_list(b) and a.list_size == b.list_size:
        item = _wider_field(a.value_field, b.value_field)
        return None if item is None else pa.list_(item, a.list_size)
    if pa.types.is_struct(a) and pa.types.is_struct(b) and a.names == b.names:
        fields = [_wider_field(x, y) for x, y in zip(a, b, strict=True)]
        return None if any(f is None for f in fields) else pa.struct(fields)
    if pa.types.is_map(a) and pa.types.is_map(b) and a.keys_sorted == b.keys_sorted:
        key, item = _wider_field(a.key_field, b.key_field), _wider_field(a.item_field, b.item_field)
        return None if key is None or item is None else pa.map_(key, item, keys_sorted=a.keys_sorted)
    return None


def _wider_field(a: pa.Field, b: pa.Field) -> pa.Field | None:
    type_ = widen(a.type, b.type)
    return None if type_ is None else pa.field(a.name, type_, nullable=a.nullable or b.nullable)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether Arrow can cast source to target at all (values are checked when each row is cast)."""
    try:
        pa.array([], source).cast(target)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def _shards(declared: Declared) -> str:
    more = declared.count - len(declared.shards)
    return ", ".join(declared.shards) + (f" and {more} more" if more > 0 else "")
