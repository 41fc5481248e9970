"""Arrow values as exact JSON values, never through Python's datetime or Decimal, which cannot hold them all.

Where a Parquet value must become JSON (a dead letter's raw row, a kept value in a column of JSON text)
it keeps its exact value:

- null, bool and integers of any width as themselves; floats (float16/32/64) as JSON numbers, exact in
  float64; NaN and infinities, which JSON lacks, as the strings "nan", "inf", "-inf";
- decimals as strings of their digits ("-0.000000000000000001");
- strings as strings (bytes that are not UTF-8 as surrogate escapes, which a dead letter shows as \\xNN);
  binary values as base64 strings;
- dates as ISO dates ("2026-11-27"; years past 9999 or before 1 with a sign: "+10000-01-02", "-0001-12-31");
- timestamps as ISO date-times with every digit of their unit ("2023-11-14T22:13:20.123456789"); with a
  time zone, the instant in UTC marked "Z"; times of day likewise ("23:59:59.999"); durations as ISO 8601
  seconds ("PT86400.000000001S", "-PT0.001S");
- lists as arrays, structs as objects, maps as arrays of [key, value] pairs (keys need not be strings and
  may repeat); dictionary-encoded values as their values.
"""

from __future__ import annotations

import base64
import decimal
import json
import math

import pyarrow as pa

_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
_DAY_SECONDS = 86_400
_DAY_MS = 86_400_000


def json_values(array: pa.Array) -> list[object]:
    """Every value of an Arrow array as a JSON-ready Python value (None for null), by the module's rules."""
    t = array.type
    if isinstance(array, pa.ExtensionArray):
        return json_values(array.storage)
    if pa.types.is_dictionary(t):
        return json_values(array.dictionary_decode())
    if pa.types.is_null(t):
        return [None] * len(array)
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        return array.to_pylist()
    if pa.types.is_floating(t):
        return [_number(v) for v in array.cast(pa.float64()).to_pylist()]
    if pa.types.is_decimal(t):  # Arrow's text may use an exponent ("-1E-18"); Decimal writes it out exactly
        return [None if v is None else format(decimal.Decimal(v), "f") for v in array.cast(pa.string()).to_pylist()]
    if _is_text(t):
        return texts(array)
    if _is_bytes(t):
        return [None if v is None else base64.b64encode(v).decode("ascii") for v in array.to_pylist()]
    if pa.types.is_temporal(t) and not pa.types.is_interval(t):
        return _temporal(array)
    if pa.types.is_struct(t):
        return _structs(array)
    if pa.types.is_map(t):
        return _maps(array)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or \
            pa.types.is_large_list_view(t):
        return _split(json_values(array.flatten()), array.value_lengths().to_pylist())
    if pa.types.is_fixed_size_list(t):
        lengths = [None if null else t.list_size for null in array.is_null().to_pylist()]
        return _split(json_values(array.flatten()), lengths)
    return [_plain(v) for v in array.to_pylist()]  # unions, intervals: Python's own values


def texts(array: pa.Array, encoding: str = "utf-8") -> list[str | None]:
    """A string or binary column's values as text; bytes that do not decode become surrogate escapes."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    values = array.cast(pa.large_binary()).to_pylist()
    return [None if v is None else v.decode(encoding, "surrogateescape") for v in values]


def as_text(value: object) -> str:
    """A JSON value as a string column holds it: strings as they are, all else as JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def iso_date(days: int) -> str:
    """Days since 1970-01-01 as an ISO date, for any number of days (proleptic Gregorian calendar)."""
    year, month, day = _civil(days)
    shown = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return f"{shown}-{month:02d}-{day:02d}"


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01: Howard Hinnant's civil_from_days, exact for any int."""
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def _clock(units: int, digits: int) -> str:
    """Units (10**-digits s) since midnight as HH:MM:SS with every digit of the unit."""
    seconds, fraction = divmod(units, 10**digits)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}" + (f".{fraction:0{digits}d}" if digits else "")


def _temporal(array: pa.Array) -> list[object]:
    t = array.type
    values = array.cast(pa.int32() if t.bit_width == 32 else pa.int64()).to_pylist()
    if pa.types.is_date32(t):
        return [None if v is None else iso_date(v) for v in values]
    if pa.types.is_date64(t):  # milliseconds, normally whole days
        return [None if v is None else iso_date(v // _DAY_MS) if v % _DAY_MS == 0 else _instant(v, 3, "")
                for v in values]
    digits = _DIGITS[t.unit]
    if pa.types.is_timestamp(t):
        zone = "Z" if t.tz else ""
        return [None if v is None else _instant(v, digits, zone) for v in values]
    if pa.types.is_time(t):
        return [None if v is None else _clock(v, digits) for v in values]
    return [None if v is None else _duration(v, digits) for v in values]  # duration


def _instant(value: int, digits: int, zone: str) -> str:
    days, units = divmod(value, _DAY_SECONDS * 10**digits)
    return f"{iso_date(days)}T{_clock(units, digits)}{zone}"


def _duration(value: int, digits: int) -> str:
    seconds, fraction = divmod(abs(value), 10**digits)
    return f"{'-' if value < 0 else ''}PT{seconds}" + (f".{fraction:0{digits}d}" if digits else "") + "S"


def _structs(array: pa.StructArray) -> list[object]:
    names = [f.name for f in array.type]
    children = [json_values(child) for child in array.flatten()]  # flatten: the struct's slice, its nulls
    nulls = array.is_null().to_pylist()
    return [None if null else dict(zip(names, values, strict=True))
            for null, values in zip(nulls, zip(*children, strict=True) if children else [()] * len(array),
                                    strict=True)]


def _maps(array: pa.MapArray) -> list[object]:
    t = array.type
    entries = pa.list_(pa.field("entries", pa.struct([t.key_field, t.item_field]), nullable=False))
    as_list = array.view(entries)
    keys, items = (json_values(child) for child in as_list.flatten().flatten())
    pairs = [[k, v] for k, v in zip(keys, items, strict=True)]
    return _split(pairs, as_list.value_lengths().to_pylist())


def _split(flat: list[object], lengths: list[int | None]) -> list[object]:
    """Consecutive runs of flat by lengths (None: a null list, which takes no values)."""
    out, start = [], 0
    for length in lengths:
        if length is None:
            out.append(None)
            continue
        out.append(flat[start:start + length])
        start += length
    return out


def _number(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


def _plain(value: object) -> object:
    if isinstance(value, tuple):  # MonthDayNano and the like
        return list(value)
    return value if value is None or isinstance(value, (bool, int, float, str, list, dict)) else str(value)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_bytes(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or pa.types.is_binary_view(t))
