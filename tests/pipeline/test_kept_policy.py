"""The kept-column policy on its own (no Beam): what each format shows of a field, the JSON rule, and what fits."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.formats.kept_policy import KeptColumns, decide_columns, json_type, merge_observed, observe_shard
from pipeline.formats.kept_types import Declared, FieldTypes
from pipeline.formats.records import InputFormat
from pipeline.formats.shards import Shard


def shard_of(path, fmt):
    return Shard(str(path), path.name, fmt, path.stat().st_size)


def test_a_csv_field_is_seen_as_strings_whatever_it_holds(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,n\nhello,1\nworld,2.5\n")
    seen = observe_shard(shard_of(path, "csv"), InputFormat("csv", keep_fields=("n",)))
    assert seen["n"].observed == {pa.string()} and not seen["n"].declared


def test_a_parquet_field_is_seen_as_its_schema_declares_it_without_reading_rows(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["x"], "n": pa.array([1], pa.int32()), "t": pa.array([0], pa.timestamp("ms"))}),
                   path)
    seen = observe_shard(shard_of(path, "parquet"), InputFormat("parquet", keep_fields=("n", "t", "absent")))
    assert {name: set(types.declared) for name, types in seen.items()} == {
        "n": {pa.int32()}, "t": {pa.timestamp("ms")}}
    assert seen["n"].declared[pa.int32()].shards == ("a.parquet",)


def test_a_json_field_is_seen_from_its_first_records_only(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"text": f"t{i}", "n": i} for i in range(5)] + [{"text": "late", "n": "a string"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fmt = InputFormat("jsonl", keep_fields=("n",))
    assert observe_shard(shard_of(path, "jsonl"), fmt, limit=5)["n"].observed == {pa.int64()}
    assert observe_shard(shard_of(path, "jsonl"), fmt, limit=6)["n"].observed == {pa.int64(), pa.string()}


@pytest.mark.parametrize(("values", "column"), [
    ([1, 2], pa.int64()),
    ([1, 2.5], pa.float64()),
    ([True, False], pa.bool_()),
    ([1, True], pa.string()),
    (["a", 1], pa.string()),
    ([{"a": 1}], pa.string()),  # objects and arrays are kept as JSON text
    ([2**64], pa.string()),  # past int64
    ([None], pa.string()),  # never seen with a value
])
def test_the_json_rule_gives_one_column_type(values, column):
    observed = merge_observed([{"f": observe_values(values[:1])}, {"f": observe_values(values[1:])}])
    assert decide_columns(["f"], observed, text=False).fields == (pa.field("f", column),)


def observe_values(values):
    return FieldTypes(observed={json_type(v) for v in values if v is not None})


def test_json_values_meeting_a_parquet_column_take_its_lossless_widening_else_the_json_rule():
    parquet = {"f": FieldTypes(declared={pa.int32(): Declared(1, ("p.parquet",))})}
    assert decide_columns(["f"], merge_observed([parquet, {"f": observe_values([5])}]), False).fields[0].type \
        == pa.int64()
    assert decide_columns(["f"], merge_observed([parquet, {"f": observe_values(["x"])}]), False).fields[0].type \
        == pa.string()
    assert decide_columns(["f"], parquet, True).output_fields()[-1].name == "text"


@pytest.mark.parametrize(("column", "value", "stored"), [
    (pa.int64(), 3.0, 3),  # JSON's 3.0 in a column of ints
    (pa.float64(), 2**53, float(2**53)),
    (pa.float64(), math.inf, math.inf),
    (pa.float64(), -math.inf, -math.inf),
    (pa.string(), 2.5, "2.5"),
    (pa.string(), False, "false"),
    (pa.string(), 7, "7"),  # a number in a column of mixed kinds: its JSON text
    (pa.string(), {"a": [1, "é"]}, '{"a": [1, "é"]}'),
    (pa.int32(), 2**31 - 1, 2**31 - 1),
    (pa.bool_(), False, False),
])
def test_a_value_that_fits_its_column_is_stored_as_the_column_holds_it(column, value, stored):
    fitted, why = KeptColumns((pa.field("f", column),)).fit([value])
    assert why is None and fitted == (stored,) and type(fitted[0]) is type(stored)


@pytest.mark.parametrize(("column", "value"), [
    (pa.int64(), 1.5),
    (pa.int64(), True),
    (pa.int64(), 2**63),
    (pa.int64(), 10**30),
    (pa.int64(), 1e300),
    (pa.int64(), math.nan),
    (pa.float64(), "1.5"),
    (pa.float64(), 2**53 + 1),  # float64 would round it
    (pa.float64(), 10**400),  # past float64's range
    (pa.float64(), False),
    (pa.int32(), 2**31),
    (pa.float32(), 2**24 + 1),
    (pa.bool_(), 1),
    (pa.timestamp("s"), "not a time"),
])
def test_a_value_that_does_not_fit_its_column_says_why_and_is_not_changed(column, value):
    fitted, why = KeptColumns((pa.field("f", column),)).fit([value])
    assert fitted == (value,) and why.startswith(f"field 'f' holds a {type(value).__name__} (")
    assert str(column) in why


def test_kept_columns_make_arrow_columns_in_order_with_the_text_last():
    kept = KeptColumns((pa.field("n", pa.int64()), pa.field("s", pa.string())), text=True)
    columns = kept.arrays([(1, "a"), (None, "b")], ["t1", "t2"])
    assert [c.to_pylist() for c in columns] == [[1, None], ["a", "b"], ["t1", "t2"]]
    assert [f.name for f in kept.output_fields()] == ["n", "s", "text"]
