"""Arrow values as exact JSON: what a Parquet row's dead letter and a kept value in a string column show."""

import datetime
import decimal
import json

import pyarrow as pa
import pytest

from pipeline.formats.arrow_json import iso_date, json_values


def one(value, type_):
    return json_values(pa.array([value], type_))[0]


def test_dates_match_python_where_it_can_hold_them_and_go_on_past_its_range():
    epoch = datetime.date(1970, 1, 1)
    for days in (-719_162, -1, 0, 59, 60, 11_016, 2_932_896, *range(-800, 800, 7)):
        assert iso_date(days) == (epoch + datetime.timedelta(days=days)).isoformat()
    assert (iso_date(2_932_897), iso_date(-719_163), iso_date(-719_529)) == ("+10000-01-01", "0000-12-31",
                                                                            "-0001-12-31")
    assert one(2**31 - 1, pa.date32()) == "+5881580-07-11"
    cycle = 146_097  # days in 400 Gregorian years: the calendar repeats
    for days in range(2_932_897 - cycle, 2_932_897, 997):  # 9600-01-01 to 9999-12-31, moved on 400 years
        year, rest = (epoch + datetime.timedelta(days=days)).isoformat().split("-", 1)
        assert iso_date(days + cycle) == f"+{int(year) + 400}-{rest}"
    for days in range(-719_162, -719_162 + cycle, 997):  # 0001-01-01 to 0400-12-31, moved back 400 years
        year, rest = (epoch + datetime.timedelta(days=days)).isoformat().split("-", 1)
        earlier = int(year) - 400
        assert iso_date(days - cycle) == (f"{earlier:+05d}" if earlier else "0000") + f"-{rest}"


@pytest.mark.parametrize(("value", "type_", "shown"), [
    (1_700_000_000_123_456_789, pa.timestamp("ns"), "2023-11-14T22:13:20.123456789"),
    (1_700_000_000_000_000_001, pa.timestamp("ns", tz="Europe/Paris"), "2023-11-14T22:13:20.000000001Z"),
    (-1, pa.timestamp("s"), "1969-12-31T23:59:59"),
    (86_399_999, pa.time32("ms"), "23:59:59.999"),
    (1, pa.time64("ns"), "00:00:00.000000001"),
    (-1_000_000, pa.duration("ns"), "-PT0.001000000S"),
    (86_400, pa.duration("s"), "PT86400S"),
    (decimal.Decimal("-0.000000000000000001"), pa.decimal128(38, 18), "-0.000000000000000001"),
    (decimal.Decimal("1" * 60 + ".25"), pa.decimal256(70, 2), "1" * 60 + ".25"),
    (b"\x00\xff", pa.binary(), "AP8="),
    (float("nan"), pa.float16(), "nan"),
    (-float("inf"), pa.float32(), "-inf"),
])
def test_values_python_cannot_hold_are_shown_exactly(value, type_, shown):
    assert one(value, type_) == shown


def test_nested_values_keep_their_shape_and_maps_keep_every_pair_in_order():
    item = pa.struct([("k", pa.int64()), ("at", pa.date32())])
    assert one([{"k": 2**63 - 1, "at": 3_000_000}, None], pa.list_(item)) == [
        {"k": 2**63 - 1, "at": "+10183-09-21"}, None]  # 9783-09-21 and 400 years
    assert one([("a", 1), ("a", 2)], pa.map_(pa.string(), pa.int32())) == [["a", 1], ["a", 2]]
    categories = pa.array(["red", None, "red"]).dictionary_encode()
    assert json_values(categories.slice(1)) == [None, "red"]
    assert json_values(pa.array([[1, 2], None, [3, 4]], pa.list_(pa.int8(), 2)).slice(1)) == [None, [3, 4]]


def test_every_value_is_json_ready():
    table = pa.table({"a": pa.array([1], pa.timestamp("ns")), "b": pa.array([b"x"]),
                      "c": pa.array([1.5], pa.float16())})
    assert json.loads(json.dumps([json_values(c)[0] for c in table.columns])) == [
        "1970-01-01T00:00:00.000000001", "eA==", 1.5]
