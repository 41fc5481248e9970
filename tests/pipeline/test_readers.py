"""Per-format readers: every input record gives exactly one outcome, bad ones a reason."""

import gzip
import io
import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.formats.readers import ShardFormatError, ShardReadError, read_records, shard_outcomes
from pipeline.formats.records import DeadLetter, InputFormat, Record, Skipped, Unread
from pipeline.formats.shards import Shard
from pipeline.formats.structure import structure_problem


def outcomes(data: bytes, fmt: InputFormat, source: str = "s") -> list:
    return list(read_records(io.BytesIO(data), source, fmt))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


CSV = InputFormat("csv", text_field="body", id_field="doc")


def test_csv_quoted_field_spans_lines_and_the_record_starts_where_its_row_starts():
    data = b'doc,body\n1,"first\nstill first"\n2,second\n'
    got = outcomes(data, CSV)
    assert got == [Record("1", "first\nstill first", "s", 2), Record("2", "second", "s", 4)]


def test_csv_without_id_field_numbers_records_by_their_first_line():
    got = outcomes(b'\xef\xbb\xbftext,other\n"a\nb",x\nc,y\n', InputFormat("csv"))
    assert [r.id for r in got] == ["s:2", "s:4"]  # the BOM is not part of the first column's name


def test_csv_bad_rows_become_dead_letters_and_the_rest_is_read():
    data = b"doc,body\n1,ok\n2,bad \xff byte\n,no id\n4\n\n5,fine\n"
    got = outcomes(data, CSV)
    assert [type(o).__name__ for o in got] == ["Record", "DeadLetter", "DeadLetter", "DeadLetter", "Skipped",
                                               "Record"]
    assert [o.reason for o in got if isinstance(o, DeadLetter)] == ["undecodable", "missing_id", "missing_text"]
    assert "\\xff" in got[1].raw and got[1].line == 3
    assert got[-1] == Record("5", "fine", "s", 7)


def test_tsv_reads_tab_separated_rows():
    got = outcomes(b"doc\tbody\n7\thello, world\n", InputFormat("tsv", text_field="body", id_field="doc"))
    assert got == [Record("7", "hello, world", "s", 2)]


def test_csv_header_without_the_text_field_fails_the_shard():
    with pytest.raises(ShardFormatError, match="--text_field 'body' not among its fields"):
        outcomes(b"doc,text\n1,x\n", CSV)
    assert "--text_field 'body'" in structure_problem(io.BytesIO(b"doc,text\n1,x\n"), CSV)
    assert structure_problem(io.BytesIO(b"doc,body\n"), CSV) is None


@pytest.mark.parametrize(("header", "flag"), [
    (b"doc,body,lang,body", "--text_field 'body'"),
    (b"doc,lang,body,doc", "--id_field 'doc'"),
    (b"lang,doc,body,lang", "--keep_fields 'lang'"),
])
def test_a_csv_header_repeating_a_column_the_job_reads_fails_the_shard_naming_the_name(header, flag):
    """The csv module's dict would silently take the last of them."""
    fmt = InputFormat("csv", text_field="body", id_field="doc", keep_fields=("lang",))
    data = header + b"\n" + b",".join([b"x"] * header.count(b",")) + b",x\n"
    with pytest.raises(ShardFormatError, match=re.escape(f"{flag} names 2 of its columns")):
        outcomes(data, fmt)
    assert f"{flag} names 2 of its columns" in structure_problem(io.BytesIO(data), fmt)


def test_a_parquet_schema_repeating_the_text_column_fails_the_shard_as_a_csv_header_does():
    data = parquet_bytes(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["text", "text"]))
    assert "--text_field 'text' names 2 of its columns" in structure_problem(io.BytesIO(data), InputFormat("parquet"))
    with pytest.raises(ShardFormatError, match="--text_field 'text' names 2 of its columns"):
        outcomes(data, InputFormat("parquet"))


def test_a_shard_met_while_running_whose_header_repeats_a_column_it_reads_fails_the_job_naming_it(tmp_path):
    (tmp_path / "late.csv").write_text("doc,body,body\n1,a,b\n", encoding="utf-8")
    shard = Shard(str(tmp_path / "late.csv"), "late.csv", "csv")
    expected = f"cannot read shard {tmp_path}/late.csv: --text_field 'body' names 2 of its columns"
    with pytest.raises(ShardReadError, match=re.escape(expected)):
        list(shard_outcomes(shard, CSV))


def test_a_csv_header_repeating_a_column_the_job_does_not_read_is_read_as_usual():
    got = outcomes(b"doc,note,body,note\n1,a,hello,b\n", CSV)
    assert got == [Record("1", "hello", "s", 2)]
    assert structure_problem(io.BytesIO(b"doc,note,body,note\n"), CSV) is None


def test_a_csv_row_with_more_fields_than_its_header_is_a_dead_letter_holding_the_row_as_read():
    """An unquoted delimiter inside a value shifts the row; its last fields would be dropped without a word."""
    got = outcomes(b'doc,body\n1,hello, world\n2,"two\nlines",x\n3,fine\n', CSV)
    assert [(o.reason, o.line, o.raw) for o in got[:2]] == [
        ("extra_fields", 2, "1,hello, world"), ("extra_fields", 3, '2,"two\nlines",x')]
    assert "3 fields, but its header has 2" in got[0].detail
    assert got[2] == Record("3", "fine", "s", 5)


def test_a_csv_row_with_fewer_fields_than_its_header_lacks_its_last_fields():
    fmt = InputFormat("csv", text_field="body", id_field="doc", keep_fields=("lang", "stars"))
    got = outcomes(b"doc,body,lang,stars\n1,hello,en\n2\n", fmt)
    assert got[0] == Record("1", "hello", "s", 2, kept=("en", None))
    assert (got[1].reason, got[1].id) == ("missing_text", "2")


def test_csv_field_longer_than_max_chars_is_too_long():
    fmt = InputFormat("csv", max_chars=10)
    got = outcomes(b"text\n" + b"x" * 11 + b"\nshort\n", fmt)
    assert [getattr(o, "reason", None) for o in got] == ["too_long", None]


def test_parquet_rows_with_their_row_numbers_and_reasons():
    table = pa.table({"doc": pa.array([10, 11, None, 13]), "body": pa.array(["一", None, "三", "   "])})
    got = outcomes(parquet_bytes(table), InputFormat("parquet", text_field="body", id_field="doc"))
    assert got[0] == Record("10", "一", "s", 1)
    assert (got[1].reason, got[1].line, got[1].id) == ("missing_text", 2, "11")
    assert (got[2].reason, got[2].line) == ("missing_id", 3)
    assert got[3] == Skipped("s", 4)


def test_parquet_binary_text_that_is_not_utf8_is_undecodable():
    table = pa.table({"text": pa.array([b"ok", b"\xff\xfe"], type=pa.binary())})
    got = outcomes(parquet_bytes(table), InputFormat("parquet"))
    assert isinstance(got[0], Record) and got[1].reason == "undecodable"


def test_a_parquet_dead_letter_shows_the_row_read_as_json_with_exact_values():
    table = pa.table({
        "doc": pa.array([7, 8]), "body": pa.array(["fine", None]),
        "at": pa.array([1, 1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC")),
        "day": pa.array([0, 2**31 - 1], pa.date32()),
        "blob": pa.array([b"", b"\xff"]), "note": pa.array([b"", b"caf\xe9"]).view(pa.string()),
    })
    fmt = InputFormat("parquet", text_field="body", id_field="doc", keep_fields=("at", "day", "blob", "note"))
    (_, dead) = outcomes(parquet_bytes(table), fmt)
    assert (dead.reason, dead.line, dead.id) == ("missing_text", 2, "8")
    assert dead.raw == ('{"body": null, "doc": 8, "at": "2023-11-14T22:13:20.123456789Z", "day": "+5881580-07-11", '
                        '"blob": "/w==", "note": "caf\\xe9"}')


def test_parquet_ids_of_any_type_are_read_exactly_and_bad_ones_are_dead_letters():
    ids = pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns"))
    bad = pa.array([b"ok", b"\xe9"]).view(pa.string())
    got = outcomes(parquet_bytes(pa.table({"id": ids, "text": ["a", "b"]})), InputFormat("parquet", id_field="id"))
    assert got[0].id == "2023-11-14T22:13:20.123456789" and got[1].reason == "missing_id"
    got = outcomes(parquet_bytes(pa.table({"id": bad, "text": ["a", "b"]})), InputFormat("parquet", id_field="id"))
    assert got[0].id == "ok" and (got[1].reason, got[1].raw) == ("undecodable", '{"text": "b", "id": "\\xe9"}')


def test_parquet_text_column_of_numbers_is_rejected():
    data = parquet_bytes(pa.table({"text": pa.array([1, 2])}))
    assert "is a int64 column" in structure_problem(io.BytesIO(data), InputFormat("parquet"))
    with pytest.raises(ShardFormatError):
        outcomes(data, InputFormat("parquet"))


def test_a_line_longer_than_max_chars_is_dead_lettered_without_reading_it_whole():
    fmt = InputFormat("text", max_chars=100)
    got = outcomes(b"a" * 5000 + b"\nnext\n", fmt)
    assert got[0].reason == "too_long" and got[0].line == 1 and len(got[0].raw) < 1000
    assert got[1] == Record("s:2", "next", "s", 2)


def test_a_first_line_too_long_to_read_shows_its_record_without_the_byte_order_mark():
    line = json.dumps({"id": "a", "text": "word " * 100})
    (got,) = outcomes(b"\xef\xbb\xbf" + line.encode() + b"\n", InputFormat("jsonl", max_chars=100))
    assert got.reason == "too_long" and got.raw.startswith('{"id": "a"')


def test_json_lone_surrogate_is_undecodable_not_a_crash():
    got = outcomes(json.dumps({"text": "bad \ud800"}).encode() + b"\n", InputFormat("jsonl"))
    assert got[0].reason == "undecodable"


def test_json_lines_already_decided_are_passed_over_unparsed_and_the_others_read_as_usual():
    fmt = InputFormat("jsonl", id_field="id")
    data = b'{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\nnot json\n{"id": "c", "text": "three"}\n'
    got = list(read_records(io.BytesIO(data), "s", fmt, unread={2, 4}))
    assert got[0] == Record("a", "one", "s", 1) and got[1] == Unread("s", 2) and got[3] == Unread("s", 4)
    assert got[2].reason == "invalid_json"


def test_csv_rows_are_parsed_even_when_already_decided():
    assert outcomes(b"doc,body\n1,x\n", CSV) == list(read_records(io.BytesIO(b"doc,body\n1,x\n"), "s", CSV, {2}))


def test_crlf_and_lone_cr():
    got = outcomes(b"one\r\ntwo\rstill two\n", InputFormat("text"))
    assert [r.text for r in got] == ["one", "two\rstill two"]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=400), fmt=st.sampled_from(["csv", "tsv", "text", "jsonl"]))
def test_readers_never_raise_and_give_unique_stable_ids(body, fmt):
    header = {"csv": b"id,text\n", "tsv": b"id\ttext\n"}.get(fmt, b"")
    data = header + body
    fmt = InputFormat(fmt, id_field=None)
    first = outcomes(data, fmt)
    assert all(isinstance(o, Record | DeadLetter | Skipped) for o in first)
    ids = [o.id for o in first if isinstance(o, Record)]
    assert len(ids) == len(set(ids))
    assert outcomes(data, fmt) == first
    lines = [o.line for o in first]
    assert lines == sorted(lines) and len(lines) == len(set(lines))


def test_a_shard_that_cannot_be_read_is_named_with_its_undecodable_bytes_escaped(tmp_path):
    """The message travels in runners' error reports, which hold UTF-8 text only."""
    directory = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(directory)
    with open(directory + b"/cut.txt.gz", "wb") as f:
        f.write(gzip.compress(b"line\n" * 5000)[:40])
    shard = Shard(os.fsdecode(directory + b"/cut.txt.gz"), "cut.txt.gz", "text")
    with pytest.raises(ShardReadError, match=re.escape(f"cannot read shard {tmp_path}/caf\\xe9/cut.txt.gz: ")):
        list(shard_outcomes(shard, InputFormat("text")))
