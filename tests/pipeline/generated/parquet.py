"""Parquet shards: kept columns of every Arrow type pyarrow writes, id columns of many types, rows with one flaw."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from hypothesis import strategies as st

from tests.pipeline.generated.records import (
    BAD,
    BLANKS,
    MAX_CHARS,
    RECORD,
    SKIP,
    STRINGS,
    GeneratedShard,
    IdPool,
    InputRecord,
    draw_flaw,
    good_text,
    long_text,
)

_UNITS = ("s", "ms", "us", "ns")
SCALAR_FAMILIES: dict[str, tuple[pa.DataType, ...]] = {
    "int": (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()),
    "float": (pa.float16(), pa.float32(), pa.float64()),
    "bool": (pa.bool_(),),
    "string": (pa.string(), pa.large_string()),
    "binary": (pa.binary(), pa.large_binary(), pa.binary(3)),
    "decimal": (pa.decimal32(5, 2), pa.decimal64(15, 3), pa.decimal128(20, 10), pa.decimal128(38, 0),
                pa.decimal256(70, 2)),
    "timestamp": tuple(pa.timestamp(u, tz) for u in _UNITS for tz in (None, "UTC", "Europe/Paris", "+05:30")),
    "date": (pa.date32(), pa.date64()),
    "time": (pa.time32("s"), pa.time32("ms"), pa.time64("us"), pa.time64("ns")),
    "duration": tuple(pa.duration(u) for u in _UNITS),
    "views": (pa.string_view(), pa.binary_view()),
    "dictionary": (pa.dictionary(pa.int32(), pa.string()), pa.dictionary(pa.int8(), pa.string()),
                   pa.dictionary(pa.int16(), pa.large_string()), pa.dictionary(pa.int32(), pa.binary())),
    "extension": (pa.uuid(), pa.json_()),
    "null": (pa.null(),),
}
# Top-level only: dictionaries and extension types (`arrow_column` builds them from values), null, and views
# (pyarrow cannot write a view inside a struct cut into row groups).
_LEAF_FAMILIES = sorted(set(SCALAR_FAMILIES) - {"dictionary", "extension", "null", "views"})
NESTINGS = ("list", "list_view", "fixed_size_list", "struct", "map", "deep")
WIDENING = ("int", "float", "string", "binary", "decimal")  # families whose members mostly widen into one another
LEAVES = [(family, type_) for family, types in SCALAR_FAMILIES.items() for type_ in types]


@dataclass(frozen=True)
class ParquetKind:
    """A kept field's kind of Parquet type in a run; each shard declares a type of it (or, rarely, another)."""

    family: str
    nesting: str | None = None
    depth: int = 2  # lists around the values, when nesting is "deep"


# Parquet families whose values meet a JSON flavor's in a column of their own, not as text.
_MEETING = {"ints": ["int"], "numbers": ["int", "float"], "floats": ["float"], "bools": ["bool"],
            "strings": ["string", "dictionary"]}


@st.composite
def parquet_kind(draw, flavor: str | None = None, family: str | None = None) -> ParquetKind:
    """A kind of Parquet type, of the family given if any; given a JSON flavor, mostly one whose values meet
    it in one column."""
    if flavor in _MEETING and draw(st.booleans()):
        return ParquetKind(draw(st.sampled_from(_MEETING[flavor])))
    family = family or draw(st.sampled_from(sorted(SCALAR_FAMILIES)))
    nestings = [None, None, *NESTINGS] if family in _LEAF_FAMILIES else [None]
    return ParquetKind(family, draw(st.sampled_from(nestings)), draw(st.integers(2, 30)))


@st.composite
def member_type(draw, kind: ParquetKind, leaf: pa.DataType | None = None) -> pa.DataType:
    """A type of kind (around leaf, if given): lists and large lists, and the members of a scalar family, mostly
    widen into one another."""
    if leaf not in SCALAR_FAMILIES[kind.family]:
        leaf = draw(st.sampled_from(SCALAR_FAMILIES[kind.family]))
    if kind.nesting is None:
        return leaf
    if kind.nesting == "list":
        return draw(st.sampled_from([pa.list_, pa.large_list]))(leaf)
    if kind.nesting == "list_view":
        return draw(st.sampled_from([pa.list_view, pa.large_list_view]))(leaf)
    if kind.nesting == "fixed_size_list":
        return pa.list_(leaf, 2)
    if kind.nesting == "struct":
        return pa.struct([("a", leaf), ("b", pa.list_(leaf))])
    if kind.nesting == "map":
        return pa.map_(pa.string(), leaf)
    for _ in range(kind.depth):
        leaf = pa.list_(leaf)
    return leaf


@st.composite
def shard_type(draw, kind: ParquetKind, base: pa.DataType, varies: bool) -> pa.DataType:
    """The run's type of a field; where the field varies between shards, mostly another of its kind (which may
    widen or not), sometimes one of another kind (which almost never widens)."""
    if not varies or draw(st.integers(0, 3)) == 0:
        return base
    return draw(member_type(draw(parquet_kind()) if draw(st.integers(0, 4)) == 0 else kind))


def holds_text(type_: pa.DataType) -> bool:
    """Whether values of type_ hold strings (map keys are strings here)."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_) or \
            pa.types.is_map(type_):
        return True
    if isinstance(type_, pa.BaseExtensionType):
        return holds_text(type_.storage_type)
    if pa.types.is_dictionary(type_):
        return holds_text(type_.value_type)
    return any(holds_text(type_.field(i).type) for i in range(type_.num_fields))


def storage(type_: pa.DataType) -> pa.DataType:
    """type_ with strings as binary and floats as unsigned integers: values are drawn as bytes and bit patterns."""
    if pa.types.is_string(type_):
        return pa.binary()
    if pa.types.is_large_string(type_):
        return pa.large_binary()
    if pa.types.is_string_view(type_):
        return pa.binary_view()
    if pa.types.is_floating(type_):
        return {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[type_.bit_width]
    if pa.types.is_list(type_):
        return pa.list_(storage(type_.value_type))
    if pa.types.is_large_list(type_):
        return pa.large_list(storage(type_.value_type))
    if pa.types.is_list_view(type_):
        return pa.list_view(storage(type_.value_type))
    if pa.types.is_large_list_view(type_):
        return pa.large_list_view(storage(type_.value_type))
    if pa.types.is_fixed_size_list(type_):
        return pa.list_(storage(type_.value_type), type_.list_size)
    if pa.types.is_struct(type_):
        return pa.struct([(f.name, storage(f.type)) for f in type_])
    if pa.types.is_map(type_):
        return pa.map_(storage(type_.key_type), storage(type_.item_type))
    return type_


def arrow_column(type_: pa.DataType, values: list) -> pa.Array:
    """A column of type_ from values drawn by `parquet_values` (bytes for strings, bit patterns for floats)."""
    if pa.types.is_dictionary(type_):
        return arrow_column(type_.value_type, values).dictionary_encode().cast(type_)
    if isinstance(type_, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(type_, arrow_column(type_.storage_type, values))
    return pa.array(values, storage(type_)).view(type_)


_FLOAT_SPECIALS = {  # NaN with a payload, signalling NaN, infinities, -0.0, the smallest subnormal, the largest
    16: [0x7E01, 0x7C01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x7BFF],
    32: [0x7FC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001, 0x7F7FFFFF],
    64: [0x7FF8000000000001, 0x7FF0000000000001, 0x7FF0000000000000, 0xFFF0000000000000, 1 << 63, 1,
         0x7FEFFFFFFFFFFFFF],
}
_DAY_MS = 86_400_000
_TEXT_BYTES = STRINGS.map(str.encode)
_BAD_TEXT_BYTES = st.builds(lambda a, bad, b: a + bad.encode("utf-8", "surrogateescape") + b, _TEXT_BYTES, BAD,
                            _TEXT_BYTES)


def _leaf_values(type_: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_integer(type_):
        bits, signed = type_.bit_width, pa.types.is_signed_integer(type_)
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        return st.integers(low, high) | st.sampled_from([low, high])
    if pa.types.is_floating(type_):
        return st.integers(0, 2**type_.bit_width - 1) | st.sampled_from(_FLOAT_SPECIALS[type_.bit_width])
    if pa.types.is_boolean(type_):
        return st.booleans()
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return _TEXT_BYTES
    if type_ == pa.json_():
        return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), STRINGS).map(
            lambda value: json.dumps(value).encode())
    if type_ == pa.uuid():
        return st.binary(min_size=16, max_size=16)
    if pa.types.is_fixed_size_binary(type_):
        return st.binary(min_size=type_.byte_width, max_size=type_.byte_width)
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_binary_view(type_):
        return st.binary(max_size=6)
    if pa.types.is_decimal(type_):
        most = 10**type_.precision - 1
        return (st.integers(-most, most) | st.sampled_from([most, -most])).map(
            lambda digits: decimal.Decimal(f"{digits}E-{type_.scale}"))
    if pa.types.is_timestamp(type_):  # Parquet stores seconds as milliseconds
        most = (2**63 - 1) // 1000 if type_.unit == "s" else 2**63 - 1
        return st.integers(-most, most) | st.sampled_from([-most, most, 0, -1])
    if pa.types.is_date32(type_):
        return st.integers(-(2**31), 2**31 - 1) | st.sampled_from([-(2**31), 2**31 - 1, 2_932_897])
    if pa.types.is_date64(type_):  # whole days, within what Parquet's date32 holds
        return st.integers(-(2**31), 2**31 - 1).map(lambda days: days * _DAY_MS)
    if pa.types.is_time32(type_) or pa.types.is_time64(type_):
        most = 86_400 * 10 ** {"s": 0, "ms": 3, "us": 6, "ns": 9}[type_.unit] - 1
        return st.integers(0, most) | st.sampled_from([0, most])
    if pa.types.is_duration(type_):
        return st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-(2**63), 2**63 - 1, 1, -1])
    assert pa.types.is_null(type_), type_
    return st.none()


def parquet_values(type_: pa.DataType, bad: bool = False) -> st.SearchStrategy:
    """A value of type_ in the form `arrow_column` takes, maybe null; bad: one string in it is not UTF-8."""
    assert not bad or holds_text(type_), type_

    def maybe_null(strategy: st.SearchStrategy) -> st.SearchStrategy:
        return strategy if bad else st.none() | strategy

    if pa.types.is_dictionary(type_):
        return parquet_values(type_.value_type, bad)
    if bad and (holds_text(type_) and type_.num_fields == 0):  # a string, a string view, JSON text
        return _BAD_TEXT_BYTES
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_) or \
            pa.types.is_list_view(type_) or pa.types.is_large_list_view(type_):
        item = type_.value_type
        fixed = type_.list_size if pa.types.is_fixed_size_list(type_) else None
        if bad:
            others = st.lists(parquet_values(item), min_size=(fixed or 1) - 1, max_size=(fixed or 3) - 1)
            return st.builds(lambda one, rest, at: [*rest[:at], one, *rest[at:]], parquet_values(item, True), others,
                             st.integers(0, 2))
        values = st.lists(parquet_values(item), min_size=fixed or 0, max_size=fixed or 3)
        return values if fixed else maybe_null(values)  # pyarrow cannot write a null fixed-size list to Parquet
    if pa.types.is_struct(type_):
        a, b = type_.field("a").type, type_.field("b").type
        if bad:
            return st.builds(lambda x: {"a": x, "b": None}, parquet_values(a, True))
        return maybe_null(st.fixed_dictionaries({"a": parquet_values(a), "b": parquet_values(b)}))
    if pa.types.is_map(type_):
        pair = st.tuples(_TEXT_BYTES, parquet_values(type_.item_type))
        if bad:
            return st.builds(lambda key, rest: [(key, None), *rest], _BAD_TEXT_BYTES, st.lists(pair, max_size=2))
        return maybe_null(st.lists(pair, max_size=3))  # keys may repeat
    return maybe_null(_leaf_values(type_))


# A kept value that is not UTF-8 three times as often: its row's neighbours share its dictionary, batch and part.
_PARQUET_FLAWS = ("space", "undecodable_text", "undecodable_id", *["undecodable_kept"] * 3, "missing_id",
                  "missing_text", "too_long")


def _float_bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


@dataclass(frozen=True)
class IdColumn:
    """A Parquet id column's type: how it holds a pool id, the id the job derives from that (README, "Document
    ids": text as it is, numbers as Python prints them, other types as in dead letters), and values that give
    no id (missing_id)."""

    type: pa.DataType
    value: Callable[[str], object]
    derived: Callable[[str], str]
    no_id: tuple = (None,)

    @property
    def textual(self) -> bool:
        return holds_text(self.type) or pa.types.is_binary(self.type)


ID_COLUMNS = (
    IdColumn(pa.string(), str.encode, str, (None, b"")),
    IdColumn(pa.large_string(), str.encode, str, (None, b"")),
    IdColumn(pa.binary(), str.encode, str, (None, b"")),
    IdColumn(pa.dictionary(pa.int32(), pa.string()), str.encode, str, (None, b"")),
    IdColumn(pa.int64(), int, str),
    IdColumn(pa.float64(), lambda i: _float_bits(float(i)), lambda i: str(float(i)),
             (None, _float_bits(math.nan), _float_bits(-math.inf))),
    IdColumn(pa.timestamp("ns", "UTC"), int, lambda i: f"1970-01-01T00:00:00.{int(i):09d}Z"),
    IdColumn(pa.decimal128(10, 2), decimal.Decimal, lambda i: f"{i}.00"),
    IdColumn(pa.date32(), int, lambda i: (datetime.date(1970, 1, 1) + datetime.timedelta(int(i))).isoformat()),
)


@st.composite
def parquet_shard(draw, name: str, pool: IdPool, types: dict[str, pa.DataType]):
    """A Parquet shard: text and id columns of a few types, and each kept field of the type given."""
    text_type = draw(st.sampled_from([pa.string(), pa.large_string(), pa.binary(), pa.large_binary()]))
    id_column = draw(st.sampled_from(ID_COLUMNS))
    textual = [k for k, t in types.items() if holds_text(t)]
    texts, ids, records = [], [], []
    kept: dict[str, list] = {k: [] for k in types}
    for index in range(draw(st.integers(0, 6))):
        flaw = draw_flaw(draw, _PARQUET_FLAWS)
        record_id = pool.draw(draw, numeric=not id_column.textual)
        text: bytes | None = good_text(draw).encode()
        written_id = id_column.value(record_id)
        values = {k: draw(parquet_values(t)) for k, t in types.items()}
        outcome, derived_id, flawed_field = RECORD, id_column.derived(record_id), None
        if flaw == "space":
            text, outcome = draw(st.sampled_from(BLANKS)).encode(), SKIP
        elif flaw == "undecodable_text":
            text, outcome = text + draw(BAD).encode("utf-8", "surrogateescape"), "undecodable"
        elif flaw == "undecodable_id" and id_column.textual:
            written_id += draw(BAD).encode("utf-8", "surrogateescape")
            outcome, derived_id = "undecodable", None
        elif flaw == "undecodable_kept" and textual:
            shared = [k for k in textual if pa.types.is_dictionary(types[k])]  # its neighbours share the dictionary
            flawed_field = draw(st.sampled_from(shared if shared and draw(st.booleans()) else textual))
            values[flawed_field] = draw(parquet_values(types[flawed_field], bad=True))
            outcome = "undecodable"
        elif flaw == "missing_id":
            written_id, outcome, derived_id = draw(st.sampled_from(id_column.no_id)), "missing_id", None
        elif flaw == "missing_text":
            text, outcome = None, "missing_text"
        elif flaw == "too_long":
            text, outcome = long_text(MAX_CHARS + draw(st.integers(1, 300))).encode(), "too_long"
        texts.append(text)
        ids.append(written_id)
        for k, value in values.items():
            kept[k].append(value)
        records.append(InputRecord(index + 1, outcome, derived_id, index=index, flawed_field=flawed_field))
    table = pa.table({
        "text": pa.array(texts, storage(text_type)).view(text_type),
        "id": arrow_column(id_column.type, ids),
        **{k: arrow_column(t, kept[k]) for k, t in types.items()},
        "extra": arrow_column(pa.string(), [draw(_BAD_TEXT_BYTES) for _ in texts]),  # never read
    })
    return GeneratedShard(name, "parquet", records, table, draw(st.sampled_from([None, 1, 2])))
