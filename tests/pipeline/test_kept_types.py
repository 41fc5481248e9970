"""The type of a kept column: lossless widening for Parquet-declared types, the JSON rule for JSON/CSV values."""

import pyarrow as pa
import pytest

from pipeline.formats.kept_policy import decide_columns
from pipeline.formats.kept_types import Declared, FieldTypes, KeptTypeError, declared_type, widen


@pytest.mark.parametrize(("a", "b", "joined"), [
    (pa.int32(), pa.int64(), pa.int64()),
    (pa.int8(), pa.uint8(), pa.int16()),
    (pa.uint32(), pa.int8(), pa.int64()),
    (pa.uint16(), pa.uint64(), pa.uint64()),
    (pa.float16(), pa.float64(), pa.float64()),
    (pa.string(), pa.large_string(), pa.large_string()),
    (pa.binary(), pa.large_binary(), pa.large_binary()),
    (pa.decimal128(10, 2), pa.decimal128(12, 4), pa.decimal128(12, 4)),
    (pa.decimal128(38, 0), pa.decimal128(38, 38), pa.decimal256(76, 38)),
    (pa.list_(pa.int32()), pa.large_list(pa.int64()), pa.large_list(pa.int64())),
    (pa.struct([("a", pa.int8()), ("b", pa.string())]), pa.struct([("a", pa.int16()), ("b", pa.large_string())]),
     pa.struct([("a", pa.int16()), ("b", pa.large_string())])),
    (pa.map_(pa.string(), pa.int32()), pa.map_(pa.string(), pa.int64()), pa.map_(pa.string(), pa.int64())),
    (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns", tz="UTC")),
])
def test_types_that_hold_each_others_values_widen_to_the_narrowest_that_holds_both(a, b, joined):
    assert widen(a, b) == joined and widen(b, a) == joined


@pytest.mark.parametrize(("a", "b"), [
    (pa.int64(), pa.float64()),  # 2**53 + 1
    (pa.int32(), pa.float32()),
    (pa.uint64(), pa.int64()),  # 2**64 - 1
    (pa.int64(), pa.string()),
    (pa.string(), pa.binary()),
    (pa.timestamp("ms"), pa.timestamp("ns")),
    (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")),
    (pa.date32(), pa.timestamp("s")),
    (pa.decimal256(76, 0), pa.decimal256(76, 1)),
    (pa.struct([("a", pa.int8())]), pa.struct([("b", pa.int8())])),
    (pa.list_(pa.int64()), pa.list_(pa.float64())),
])
def test_types_where_one_value_would_change_do_not_widen(a, b):
    assert widen(a, b) is None and widen(b, a) is None


def test_parquet_types_that_do_not_widen_name_every_type_and_its_shards_on_one_line():
    declared = {pa.int64(): Declared(5, ("a.parquet", "b.parquet", "c.parquet")),
                pa.string(): Declared(1, ("z.parquet",))}
    with pytest.raises(KeptTypeError) as raised:
        declared_type("n", declared)
    message = str(raised.value)
    assert "\n" not in message and "--keep_fields 'n'" in message
    assert "int64 in a.parquet, b.parquet, c.parquet and 2 more; string in z.parquet" in message


def test_a_column_only_ever_null_in_parquet_takes_its_type_from_elsewhere():
    assert declared_type("n", {pa.null(): Declared(1, ("a.parquet",))}) is None
    assert declared_type("n", {pa.null(): Declared(1, ("a",)), pa.int8(): Declared(1, ("b",))}) == pa.int8()


def parquet(type_, shard="a.parquet"):
    return FieldTypes(declared={type_: Declared(1, (shard,))})


def json(*types):
    return FieldTypes(observed=set(types))


def column(seen):
    return decide_columns(["f"], {"f": seen}, text=False).fields[0].type


def test_a_worker_deciding_parquet_types_that_do_not_widen_fails_rather_than_making_a_string_column():
    with pytest.raises(KeptTypeError, match="int64 in a.parquet; string in b.parquet"):
        column(parquet(pa.int64()).merge(parquet(pa.string(), "b.parquet")))


@pytest.mark.parametrize(("seen", "expected"), [
    (json(pa.int64(), pa.float64()), pa.float64()),  # the JSON rule: ints and floats give float64
    (json(pa.int64(), pa.string()), pa.string()),
    (json(pa.bool_(), pa.null()), pa.bool_()),
    (json(), pa.string()),
    (parquet(pa.int32()).merge(json(pa.int64())), pa.int64()),  # lossless widening first
    (parquet(pa.large_string()).merge(json(pa.string())), pa.large_string()),
    (parquet(pa.int64()).merge(json(pa.float64())), pa.float64()),  # JSON rule: a Parquet int that float64
    (parquet(pa.uint64()).merge(json(pa.int64())), pa.int64()),     # cannot hold is a dead letter, not rounded
    (parquet(pa.struct([("a", pa.int8())])).merge(json(pa.string())), pa.string()),
    (parquet(pa.timestamp("ns")).merge(json(pa.int64())), pa.string()),
    (parquet(pa.timestamp("ns")).merge(json(pa.null())), pa.timestamp("ns")),
])
def test_json_and_csv_values_meeting_a_parquet_column_keep_the_documented_json_rule(seen, expected):
    assert column(seen) == expected
