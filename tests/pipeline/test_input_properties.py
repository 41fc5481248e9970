"""Property tests: whatever shards a run reads, bad input never takes the job down, and every record is accounted for.

Hypothesis writes whole runs (`tests.pipeline.generated`): several JSON Lines, CSV/TSV and Parquet shards
(compressed, with a BOM, in row groups) of a few records each, kept fields of every Arrow type pyarrow writes
(lists, list views, fixed-size lists, structs, maps, deep nesting, dictionaries, decimal32 to decimal256,
binary, large_string, string and binary views, uuid and json extension types, float16/32/64 bit patterns,
timestamps of every unit and time zone, date and time extremes, durations, null), id columns of many types,
and hostile values (bytes that are not UTF-8, lone surrogates, huge integers, NaN and infinities, deep nesting,
empty strings, nulls, repeated ids and keys, a kind change after the JSON sampling window). Each
runs the real job in this process (tiny BERT, DirectRunner) with `--id_field id --keep_fields ...`, and the
README's rules (`tests.pipeline.documented_outcomes`) say what must come out:

- exit 0, or exit 2 at launch with one line naming a kept field whose Parquet types do not widen, and no output;
- the counts reconcile, overall, per shard and per reason, with what each record is by construction;
- every record that is not embedded or skipped is exactly one dead letter, at its line, with its reason and id;
- its `raw` replays to the record. JSON Lines: raw is the line as written, bytes that do not decode as \\xNN, and
  parsed back (\\xNN read as those bytes) it is the generated object. CSV: parsed with the csv module it is the
  row's fields (in any quoting). Parquet: parsed back it is the row's text, id and kept columns in the README's
  JSON rendering (`pipeline.formats.arrow_json`). A raw longer than 2,000 characters (too_long, a deep or huge JSON
  value) is cut there and ends in "...": what it holds is the start of that rendering (of the row's fields, for
  CSV). invalid_csv has no raw: the csv module gives no row;
- every embedded row's kept values equal the input's: a Parquet value of the column's own type is Arrow-equal
  (floats bit for bit, dictionaries by value); one of a narrower type casts back to it exactly; one in a string
  column is its JSON text. A JSON value equals its column's (int64, float64 bit for bit, bool) or is its JSON
  text; a CSV value is its string. With --keep_text the text is the input's, NFC and without control characters.

CI runs the same examples every time (derandomize). To search new ones locally, set
INPUT_PROPERTIES_SEEDS=random (random seeds, failures kept in Hypothesis' example database and replayed first)
and INPUT_PROPERTIES_EXAMPLES=N for N times the examples:
  INPUT_PROPERTIES_SEEDS=random INPUT_PROPERTIES_EXAMPLES=10 pytest tests/pipeline/test_input_properties.py
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings

from pipeline.formats.arrow_json import as_text, json_values, texts
from pipeline.formats.output import written_type
from tests.pipeline.conftest import read_dead_letters, read_manifest
from tests.pipeline.documented_outcomes import (
    EMBED,
    Expected,
    column_types,
    expected_outcomes,
    is_text,
    json_text,
    kept_value,
)
from tests.pipeline.generated.records import FIELD_TOO_LARGE, MAX_CHARS, SKIP, Run, rendered
from tests.pipeline.generated.runs import runs

pytestmark = pytest.mark.slow

_RANDOM = os.environ.get("INPUT_PROPERTIES_SEEDS") == "random"
_SCALE = int(os.environ.get("INPUT_PROPERTIES_EXAMPLES", "1"))
_PREVIEW = 2000  # characters of raw a dead letter holds (README)
# An escaped byte in raw: \xNN after an even number of backslashes (JSON writes a backslash as \\).
_ESCAPED_BYTE = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9a-f]{2})")


def examples(count: int) -> settings:
    return settings(max_examples=count * _SCALE, deadline=None, derandomize=not _RANDOM, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large],
                    **({} if _RANDOM else {"database": None}))


def run_job(run: Run, run_cli, model_dir, directory: Path) -> tuple[int, str, Path]:
    """Write the run's shards under directory and run the job on them; returns (exit code, stderr, output)."""
    (directory / "in").mkdir()
    run.write(directory / "in")
    out = directory / "out"
    code, _, err = run_cli("--input", directory / "in" / "*", "--output", out, "--model", model_dir,
                           "--progress", "off", "--id_field", "id", "--keep_fields", ",".join(run.kept),
                           "--max_chars", MAX_CHARS, "--records_per_file", run.records_per_file,
                           *(["--keep_text"] if run.keep_text else []))
    return code, err, out


def assert_run_as_documented(run: Run, code: int, err: str, out: Path) -> None:
    """The run's exit code and output are what the README says for its input."""
    columns = column_types(run)
    if isinstance(columns, str):  # Parquet types of a kept field that do not widen: one line naming them
        assert code == 2, err
        assert err.strip().count("\n") == 0 and f"--keep_fields {columns!r}" in err, err
        assert any(shard.name in err for shard in run.shards if shard.format == "parquet"), err
        assert not (out / "_SUCCESS").exists()
        return
    assert code == 0, err
    expected = expected_outcomes(run, columns)
    letters = read_dead_letters(out)
    assert_dead_letters(letters, expected, run)
    assert_counts(read_manifest(out), expected, letters, run)
    assert_rows(out, expected, columns, run)


def assert_counts(manifest: dict, expected: dict[tuple[str, int], Expected], letters: list[dict], run: Run) -> None:
    """read = embedded + skipped + failed (nothing reused), overall, per shard and per reason."""
    def counts(outcomes: list[str]) -> dict[str, int]:
        embedded, skipped = outcomes.count(EMBED), outcomes.count(SKIP)
        return {"read": len(outcomes), "embedded": embedded, "skipped": skipped,
                "failed": len(outcomes) - embedded - skipped}

    assert manifest["counts"] == counts([e.outcome for e in expected.values()]), (
        manifest["counts"], [(place, e.outcome) for place, e in expected.items()])
    assert manifest["failed_by_reason"] == dict(Counter(letter["reason"] for letter in letters))
    shards = {s["source"]: s for s in manifest["shards"]}
    assert sorted(shards) == [shard.name for shard in run.shards]
    for shard in run.shards:
        got = {k: shards[shard.name][k] for k in ("read", "embedded", "skipped", "failed")}
        assert got == counts([e.outcome for e in expected.values() if e.shard is shard]), shard.name


def assert_dead_letters(letters: list[dict], expected: dict[tuple[str, int], Expected], run: Run) -> None:
    """Exactly one dead letter per record that is neither embedded nor skipped: its reason, id, detail and raw."""
    places = Counter((letter["source"], letter["line"]) for letter in letters)
    assert not [place for place, n in places.items() if n > 1], "a record with more than one dead letter"
    failed = {place for place, e in expected.items() if e.outcome not in (EMBED, SKIP)}
    assert set(places) == failed, (
        [(place, expected[place].outcome, expected[place].record) for place in failed - set(places)],
        [(letter, expected.get((letter["source"], letter["line"]))) for letter in letters
         if (letter["source"], letter["line"]) not in failed])
    for letter in letters:
        e = expected[(letter["source"], letter["line"])]
        reasons = {"invalid_csv", "too_long"} if e.outcome == FIELD_TOO_LARGE else {e.outcome}
        assert letter["reason"] in reasons, (letter, e.record)
        if letter["reason"] == "invalid_csv":
            assert "raw" not in letter and "id" not in letter and f"lines {e.record.line}-" in letter["detail"]
            continue
        assert letter.get("id") == e.id, (letter, e.record)
        assert e.detail is None or e.detail in letter["detail"], (letter, e.detail)
        assert_replays(letter["raw"], e, run.kept)


def unescaped(raw: str) -> str:
    """raw's \\xNN escapes of undecodable bytes as JSON's \\udcNN, the surrogate escapes the bytes read as."""
    return _ESCAPED_BYTE.sub(lambda m: f"{m.group(1)}\\udc{m.group(2)}", raw)


def same_json(a: object, b: object) -> bool:
    return json.dumps(a) == json.dumps(b)  # NaN equals itself, -0.0 differs from 0.0, key order counts


def assert_replays(raw: str, e: Expected, kept_names: tuple[str, ...]) -> None:
    """raw is the record as written: whole, or its first _PREVIEW characters and "..."."""
    cut = len(raw) > _PREVIEW
    if cut:
        assert raw.endswith("...") and len(raw) == _PREVIEW + 3, raw[-20:]
    shown = raw[:_PREVIEW] if cut else raw
    record, fmt = e.record, e.shard.format
    if fmt == "jsonl":
        assert shown == record.rendered[:_PREVIEW] and cut == (len(record.rendered) > _PREVIEW), (raw, record)
        if not cut and record.fields is not None:
            assert same_json(json.loads(unescaped(raw)), record.fields)
    elif fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else ","
        (row,) = csv.reader(io.StringIO(shown, newline=""), delimiter=delimiter)
        if cut:  # the fields up to the cut, the last one begun
            assert row[:-1] == record.row[: len(row) - 1] and record.row[len(row) - 1].startswith(row[-1]), raw
        else:
            assert row == record.row, (raw, record.row)
    else:
        one = e.shard.data.select(["text", "id", *kept_names]).slice(record.index, 1)
        want = {name: json_values(one.column(name).combine_chunks())[0] for name in one.column_names}
        for name in ("text", "id"):  # read as text: strings and bytes
            column = one.column(name).combine_chunks()
            value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
            if is_text(value_type) or pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type):
                want[name] = texts(column)[0]
        if cut:
            assert shown == rendered(json.dumps(want, ensure_ascii=False))[:_PREVIEW], raw
        else:
            assert same_json(json.loads(unescaped(raw)), want), (raw, want)


def assert_rows(out: Path, expected: dict[tuple[str, int], Expected], columns: dict[str, pa.DataType],
                run: Run) -> None:
    """The embedded records' rows, each once, with their kept values (and text) as the input holds them; every
    file valid to Arrow's full validation (no string that is not UTF-8, in a dictionary neither)."""
    tables = [pq.read_table(out / name) for name in read_manifest(out)["files"]["embeddings"]]
    for table in tables:
        table.validate(full=True)
    table = pa.concat_tables(tables)
    embedded = {e.id: e for e in expected.values() if e.outcome == EMBED}
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(embedded)
    for name, type_ in columns.items():
        assert table.schema.field(name).type == written_type(type_), name
    for position, record_id in enumerate(ids):
        e = embedded[record_id]
        for name in run.kept:
            stored = table.column(name).slice(position, 1).combine_chunks()
            assert_kept(stored, kept_value(e.shard, e.record, name), name)
        if run.keep_text:
            assert table.column("text")[position].as_py() == normalized(input_text(e)), record_id


def assert_kept(stored: pa.Array, value: object, name: str) -> None:
    column = stored.type
    if isinstance(value, pa.Array):  # Parquet
        if value.type == column:
            assert_arrow_equal(stored, value, name)
        elif is_text(column):
            plain = is_text(value.type) or pa.types.is_string_view(value.type) or pa.types.is_dictionary(value.type)
            want = texts(value)[0] if plain else None if value.null_count else as_text(json_values(value)[0])
            assert stored.to_pylist() == [want], name
        else:
            assert_arrow_equal(stored, value.cast(column), name)
            assert_casts_back(stored, value, name)
        return
    (got,) = stored.to_pylist()
    if value is None:
        assert got is None, name
    elif is_text(column):
        assert got == json_text(value), (name, got, value)
    elif pa.types.is_integer(column):
        assert type(got) is int and got == value, (name, got, value)
    elif pa.types.is_floating(column):
        assert struct.pack("<d", got) == struct.pack("<d", float(value)) or (got != got and value != value), name
    else:
        assert got is value, (name, got, value)


def assert_casts_back(stored: pa.Array, value: pa.Array, name: str) -> None:
    """A value in a wider column type casts back to itself: nothing was lost. Arrow refuses some exact decimal
    casts to fewer digits (decimal128(20, 10) 999.99 to decimal32(5, 2)): those compare as Python decimals."""
    try:
        back = stored.cast(value.type)
    except pa.ArrowInvalid:
        assert _holds_decimals(value.type), name
        assert stored.to_pylist() == value.to_pylist(), name
        return
    assert_arrow_equal(back, value, name)


def _holds_decimals(type_: pa.DataType) -> bool:
    return pa.types.is_decimal(type_) or any(_holds_decimals(type_.field(i).type) for i in range(type_.num_fields))


def _bits(type_: pa.DataType) -> pa.DataType:
    """type_ with floats as unsigned integers of their width, to compare values bit for bit."""
    if pa.types.is_floating(type_):
        return {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[type_.bit_width]
    if pa.types.is_list(type_):
        return pa.list_(_bits(type_.value_type))
    if pa.types.is_large_list(type_):
        return pa.large_list(_bits(type_.value_type))
    if pa.types.is_list_view(type_):
        return pa.list_view(_bits(type_.value_type))
    if pa.types.is_large_list_view(type_):
        return pa.large_list_view(_bits(type_.value_type))
    if pa.types.is_fixed_size_list(type_):
        return pa.list_(_bits(type_.value_type), type_.list_size)
    if pa.types.is_struct(type_):
        return pa.struct([(f.name, _bits(f.type)) for f in type_])
    if pa.types.is_map(type_):
        return pa.map_(_bits(type_.key_type), _bits(type_.item_type))
    return type_


def assert_arrow_equal(got: pa.Array, want: pa.Array, name: str) -> None:
    assert got.type == want.type, name
    if pa.types.is_dictionary(want.type):  # each file has a dictionary of its own: compare the values
        got, want = got.dictionary_decode(), want.dictionary_decode()
    if isinstance(want.type, pa.BaseExtensionType):
        got, want = got.storage, want.storage
    assert got.view(_bits(got.type)).equals(want.view(_bits(want.type))), (name, got, want)


def input_text(e: Expected) -> str:
    if e.shard.format == "parquet":
        value = e.shard.data.column("text")[e.record.index].as_py()
        return value.decode() if isinstance(value, bytes) else value
    return e.record.fields["text"]


def normalized(text: str) -> str:
    """The text as embedded (README): control characters but tab, LF and CR removed, NFC."""
    kept = "".join(c for c in text if unicodedata.category(c) != "Cc" or c in "\t\n\r")
    return unicodedata.normalize("NFC", kept)


def check(run: Run, run_cli, model_dir) -> None:
    with tempfile.TemporaryDirectory(prefix="input-properties-") as directory:
        code, err, out = run_job(run, run_cli, model_dir, Path(directory))
        observe(run, code, out)
        assert_run_as_documented(run, code, err, out)


def observe(run: Run, code: int, out: Path) -> None:
    """What the examples cover, shown by `pytest --hypothesis-show-statistics`: exit codes, dead-letter reasons,
    Parquet kept types (outermost type and the innermost values' type)."""
    event(f"exit {code}")
    for letter in read_dead_letters(out) if code == 0 else []:
        event(f"dead letter {letter['reason']}")
    for shard in run.shards:
        if shard.format == "parquet":
            for name in run.kept:
                type_ = shard.data.schema.field(name).type
                event(f"Parquet {type(type_).__name__ if type_.num_fields else type_}")
                while type_.num_fields:
                    type_ = type_.field(type_.num_fields - 1).type
                event(f"Parquet values {type_}")


@examples(30)
@given(run=runs(formats=("parquet",)))
def test_parquet_runs_of_every_arrow_type_are_accounted_for_and_kept_exactly(run, run_cli, tiny_bert_dir):
    check(run, run_cli, tiny_bert_dir)


@examples(30)
@given(run=runs(formats=("jsonl", "csv", "tsv")))
def test_json_lines_and_csv_runs_of_hostile_values_are_accounted_for_and_kept_as_documented(run, run_cli,
                                                                                          tiny_bert_dir):
    check(run, run_cli, tiny_bert_dir)


@examples(25)
@given(run=runs(formats=("jsonl", "csv", "parquet")))
def test_runs_mixing_formats_give_every_kept_field_one_documented_column(run, run_cli, tiny_bert_dir):
    check(run, run_cli, tiny_bert_dir)


@examples(4)
@given(run=runs(late_values=True))
def test_a_kind_change_after_the_sampling_window_is_a_dead_letter_not_a_crash(run, run_cli, tiny_bert_dir):
    check(run, run_cli, tiny_bert_dir)

