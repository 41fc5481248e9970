"""--keep_fields and --keep_text: input fields and the embedded text carried into the output rows."""

import datetime
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.formats.kept_policy import SAMPLE_RECORDS
from pipeline.stages.decisions import text_hash
from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def embed(tmp_path, tiny_bert_dir, run_cli):
    """Run the job with the tiny model; returns (exit code, stderr, output dir)."""

    def run(inputs, *extra, output="out"):
        out = tmp_path / output
        code, _, err = run_cli("--input", inputs, "--output", out, "--model", tiny_bert_dir, "--progress", "off",
                               *extra)
        return code, err, out

    return run


def rows_by_id(output):
    return {row["id"]: row for row in read_embeddings(output).drop(["embedding"]).to_pylist()}


def test_json_fields_keep_their_types_objects_become_json_text_and_missing_is_null(tmp_path, embed):
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "1", "text": "first", "n": 3, "x": 0.5, "ok": True, "tags": ["a", "é"], "meta": {"k": [1, 2]}},
        {"id": "2", "text": "second", "n": 4, "x": 2, "ok": False, "tags": [], "meta": None},
        {"id": "3", "text": "third"},
    ])
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "n,x,ok",
                           "--keep_fields", "tags,meta,absent")
    assert code == 0, err
    schema = read_embeddings(out).schema
    assert [(f.name, f.type) for f in schema][6:] == [
        ("n", pa.int64()), ("x", pa.float64()), ("ok", pa.bool_()), ("tags", pa.string()), ("meta", pa.string()),
        ("absent", pa.string())]
    rows = rows_by_id(out)
    assert {k: rows["1"][k] for k in ("n", "x", "ok", "tags", "meta", "absent")} == {
        "n": 3, "x": 0.5, "ok": True, "tags": '["a", "é"]', "meta": '{"k": [1, 2]}', "absent": None}
    assert (rows["2"]["x"], rows["2"]["tags"], rows["2"]["meta"]) == (2.0, "[]", None)
    assert all(rows["3"][k] is None for k in ("n", "x", "ok", "tags", "meta"))
    assert json.loads(schema.metadata[b"keep_fields"]) == ["n", "x", "ok", "tags", "meta", "absent"]
    assert schema.metadata[b"keep_text"] == b"false"
    assert read_manifest(out)["settings"]["keep_fields"] == ["n", "x", "ok", "tags", "meta", "absent"]


def test_a_field_of_mixed_kinds_is_text_and_the_schema_is_the_same_in_every_file(tmp_path, embed):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a {i}", "v": i, "w": None} for i in range(5)])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "b 0", "v": "seven", "w": 1.5}, {"text": "b 1", "v": True}])
    code, err, out = embed(tmp_path / "*.jsonl", "--keep_fields", "v,w", "--records_per_file", "2")
    assert code == 0, err
    files = [out / name for name in read_manifest(out)["files"]["embeddings"]]
    assert len(files) == 4
    schemas = {pq.read_schema(f).remove_metadata() for f in files}
    assert len(schemas) == 1
    (schema,) = schemas
    assert (schema.field("v").type, schema.field("w").type) == (pa.string(), pa.float64())
    values = sorted(pq.read_table(files).column("v").to_pylist())
    assert values == ["0", "1", "2", "3", "4", "seven", "true"]


def test_a_value_that_does_not_fit_its_column_after_the_sample_is_a_dead_letter(tmp_path, embed):
    rows = [{"id": f"r{i}", "text": f"text {i}", "year": 2000 + i} for i in range(SAMPLE_RECORDS)]
    rows += [{"id": "late", "text": "late text", "year": "unknown"}, {"id": "fine", "text": "ok", "year": 1999},
             {"id": "whole", "text": "a float", "year": 1998.0}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "year")
    assert code == 0, err
    (dead,) = read_dead_letters(out)
    assert dead["reason"] == "kept_field_type" and dead["id"] == "late"
    assert "'year'" in dead["detail"] and "int64" in dead["detail"]
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": SAMPLE_RECORDS + 3, "embedded": SAMPLE_RECORDS + 2, "skipped": 0,
                                  "failed": 1}
    assert read_embeddings(out).schema.field("year").type == pa.int64()
    assert (rows_by_id(out)["fine"]["year"], rows_by_id(out)["whole"]["year"]) == (1999, 1998)


def test_a_kept_field_type_dead_letter_holds_the_record_as_read_to_replay(tmp_path, embed):
    late = '{"id": "late", "text": "  Late\u0301 text ", "year": "unknown", "note": "not kept"}'
    lines = [json.dumps({"id": f"r{i}", "text": f"text {i}", "year": 2000 + i}) for i in range(SAMPLE_RECORDS)]
    (tmp_path / "a.jsonl").write_text("\n".join([*lines, late]) + "\n", encoding="utf-8")
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "year")
    assert code == 0, err
    (dead,) = read_dead_letters(out)
    assert (dead["reason"], dead["id"], dead["raw"]) == ("kept_field_type", "late", late)


def test_csv_columns_are_kept_as_strings_and_an_unknown_column_is_a_config_error(tmp_path, embed):
    (tmp_path / "a.csv").write_text("id,text,lang,stars\nc1,a csv row,en,5\nc2,another row,,\n", encoding="utf-8")
    code, err, out = embed(tmp_path / "a.csv", "--id_field", "id", "--keep_fields", "lang,stars")
    assert code == 0, err
    rows = rows_by_id(out)
    assert (rows["c1"]["lang"], rows["c1"]["stars"], rows["c2"]["lang"]) == ("en", "5", "")
    assert read_embeddings(out).schema.field("stars").type == pa.string()

    code, err, _ = embed(tmp_path / "a.csv", "--keep_fields", "lang,country", output="bad")
    assert code == 2
    assert err.strip().count("\n") == 0 and "--keep_fields 'country' not among its fields" in err
    assert not (tmp_path / "bad" / "_SUCCESS").exists()


def test_parquet_columns_keep_their_own_types_nested_included(tmp_path, embed):
    when = datetime.datetime(2026, 11, 27, 12, 30, tzinfo=datetime.UTC)
    table = pa.table({
        "text": ["alpha", "beta", "gamma"],
        "scores": pa.array([[1, 2], None, []], type=pa.list_(pa.int32())),
        "author": pa.array([{"name": "a", "age": 3}, {"name": "b", "age": None}, None],
                           type=pa.struct([("name", pa.string()), ("age", pa.int16())])),
        "at": pa.array([when, None, when], type=pa.timestamp("ms", tz="UTC")),
        "unused": [1, 2, 3],
    })
    pq.write_table(table, tmp_path / "a.parquet")
    code, err, out = embed(tmp_path / "a.parquet", "--keep_fields", "scores,author,at", "--keep_text")
    assert code == 0, err
    kept = read_embeddings(out)
    for name in ("scores", "author", "at"):
        assert kept.schema.field(name).type == table.schema.field(name).type
    assert "unused" not in kept.schema.names
    by_text = {row["text"]: row for row in kept.to_pylist()}
    assert by_text["alpha"]["scores"] == [1, 2] and by_text["alpha"]["author"] == {"name": "a", "age": 3}
    assert by_text["beta"]["scores"] is None and by_text["gamma"]["author"] is None
    assert by_text["alpha"]["at"] == when and by_text["beta"]["at"] is None


def test_parquet_shards_whose_types_unify_share_one_type_and_others_are_a_config_error(tmp_path, embed):
    (tmp_path / "ok").mkdir()
    pq.write_table(pa.table({"text": ["a"], "n": pa.array([1], pa.int32())}), tmp_path / "ok" / "a.parquet")
    pq.write_table(pa.table({"text": ["b"], "n": pa.array([2**40], pa.int64())}), tmp_path / "ok" / "b.parquet")
    code, err, out = embed(tmp_path / "ok" / "*.parquet", "--keep_fields", "n")
    assert code == 0, err
    assert sorted(read_embeddings(out).column("n").to_pylist()) == [1, 2**40]
    assert read_embeddings(out).schema.field("n").type == pa.int64()

    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"text": ["a"], "n": ["one"]}), tmp_path / "bad" / "a.parquet")
    pq.write_table(pa.table({"text": ["b"], "n": pa.array([{"x": 1}])}), tmp_path / "bad" / "b.parquet")
    code, err, _ = embed(tmp_path / "bad" / "*.parquet", "--keep_fields", "n", output="bad-out")
    assert code == 2 and "--keep_fields 'n' has Parquet types that do not widen losslessly" in err


def test_a_json_field_whose_type_no_parquet_shard_shares_becomes_json_text_not_a_failed_job(tmp_path, embed):
    author = pa.struct([("name", pa.string())])
    pq.write_table(pa.table({"text": ["from parquet"], "who": pa.array([{"name": "li"}], author)}),
                   tmp_path / "a.parquet")
    write_jsonl(tmp_path / "b.jsonl", [{"text": "from json", "who": "wang"}])
    code, err, out = embed(tmp_path / "*.*", "--keep_fields", "who", "--keep_text")
    assert code == 0, err
    table = read_embeddings(out)
    assert table.schema.field("who").type == pa.string()
    assert {row["text"]: row["who"] for row in table.to_pylist()} == {"from parquet": '{"name": "li"}',
                                                                       "from json": "wang"}


def test_keep_text_stores_the_text_as_embedded_and_a_chunked_document_whole(tmp_path, embed):
    long_text = " ".join(f"word{i}" for i in range(200))
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "ctrl", "text": "Cafe\u0301\x00 bar"},  # decomposed é and a NUL: NFC, control removed
        {"id": "long", "text": long_text},
    ])
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_text", "--long_text", "chunk",
                           "--max_seq_length", "16")
    assert code == 0, err
    rows = rows_by_id(out)
    assert rows["ctrl"]["text"] == "Caf\u00e9 bar"
    assert rows["long"]["text"] == long_text and rows["long"]["n_chunks"] > 1
    assert all(row["text_hash"] == text_hash(row["text"]) for row in rows.values())


def test_kept_values_count_against_max_chars(tmp_path, embed):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "big", "text": "short", "blob": "x" * 500},
                                       {"id": "small", "text": "short", "blob": "y"}])
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "blob", "--max_chars", "400")
    assert code == 0, err
    assert list(rows_by_id(out)) == ["small"]
    (dead,) = read_dead_letters(out)
    assert (dead["id"], dead["reason"]) == ("big", "too_long") and "kept fields" in dead["detail"]


@pytest.mark.parametrize(("args", "message"), [
    (["--keep_fields", "text"], "--keep_text stores the text"),
    (["--keep_fields", "id", "--id_field", "id"], "already the output's 'id'"),
    (["--keep_fields", "embedding"], "the output's own column 'embedding'"),
    (["--keep_fields", "ID"], "'ID' differs from the output's own column 'id' only in case"),
    (["--keep_fields", "a,Text_Hash"], "'Text_Hash' differs from the output's own column 'text_hash' only in case"),
    (["--keep_fields", "Name,a,name"], "names 'Name' and 'name', which differ only in case"),
    (["--keep_fields", "a,b,a"], "names 'a' more than once"),
    (["--keep_fields", "a,,b"], "empty field name"),
    (["--keep_fields", "a", "--format", "text"], "do not apply to --format text"),
])
def test_keep_fields_mistakes_are_one_line_config_errors(tmp_path, embed, args, message):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "t", "a": 1}])
    code, err, out = embed(tmp_path / "a.jsonl", *args)
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not (out / "_SUCCESS").exists()


def test_plain_text_shards_have_no_fields_to_keep(tmp_path, embed):
    (tmp_path / "a.txt").write_text("one line\n", encoding="utf-8")
    write_jsonl(tmp_path / "b.jsonl", [{"text": "t", "a": 1}])
    code, err, _ = embed(tmp_path / "*.*", "--keep_fields", "a")
    assert code == 2 and "--keep_fields is set but some matched shards are plain text" in err


def test_kept_fields_are_part_of_the_different_settings_check(tmp_path, embed):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "t", "a": 1, "b": 2}])
    assert embed(tmp_path / "a.jsonl", "--keep_fields", "a")[0] == 0
    assert embed(tmp_path / "a.jsonl", "--keep_fields", "a")[0] == 0  # the same settings replace it quietly
    code, err, _ = embed(tmp_path / "a.jsonl", "--keep_fields", "a,b")
    assert code == 2 and "keep_fields" in err and "--overwrite" in err
    code, err, _ = embed(tmp_path / "a.jsonl", "--keep_fields", "a", "--keep_text")
    assert code == 2 and "keep_text" in err


def test_a_snapshot_night_takes_kept_fields_of_reused_rows_from_the_current_input(tmp_path, embed):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    day1_rows = [{"id": f"a{i}", "text": f"document {i}", "views": i, "tag": "old"} for i in range(6)]
    write_jsonl(corpus / "a.jsonl", day1_rows)
    common = ["--id_field", "id", "--keep_fields", "views,tag", "--keep_text", "--records_per_file", "4"]
    code, err, day1 = embed(corpus / "a.jsonl", *common, output="dt1")
    assert code == 0, err

    # Day two: same texts with new field values, one changed text, one new record (without a tag).
    day2_rows = [{**r, "views": r["views"] * 10, "tag": "new"} for r in day1_rows]
    day2_rows[2]["text"] = "document two, edited"
    day2_rows.append({"id": "b0", "text": "brand new", "views": 7})
    write_jsonl(corpus / "a.jsonl", day2_rows)
    code, err, day2 = embed(corpus / "a.jsonl", *common, "--skip_existing", f"{day1}/*.parquet", "--snapshot",
                            output="dt2")
    assert code == 0, err
    manifest = read_manifest(day2)
    assert manifest["counts"] == {"read": 7, "embedded": 2, "skipped": 0, "failed": 0, "reused": 5}
    assert manifest["incremental"]["snapshot_rows"] == 5

    rows = rows_by_id(day2)
    assert sorted(rows) == ["a0", "a1", "a2", "a3", "a4", "a5", "b0"]
    for record in day2_rows:
        if record["id"] in rows:
            row = rows[record["id"]]
            assert (row["views"], row["tag"], row["text"]) == (record["views"], record.get("tag"), record["text"])
    files = [day2 / name for name in manifest["files"]["embeddings"]]
    assert any("reused" in f.name for f in files)
    assert len({pq.read_schema(f).remove_metadata() for f in files}) == 1
    assert all(json.loads(pq.read_schema(f).metadata[b"keep_fields"]) == ["views", "tag"] for f in files)
    assert all(pq.read_schema(f).metadata[b"keep_text"] == b"true" for f in files)
    assert pq.read_table(day2).num_rows == 7  # the directory reads as one table


def test_a_reused_record_whose_kept_value_does_not_fit_is_a_dead_letter_not_a_copy(tmp_path, embed):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [{"id": f"r{i}", "text": f"text {i}", "views": i} for i in range(SAMPLE_RECORDS + 1)]
    write_jsonl(corpus / "a.jsonl", rows)
    common = ["--id_field", "id", "--keep_fields", "views"]
    code, err, day1 = embed(corpus / "a.jsonl", *common, output="dt1")
    assert code == 0, err
    rows[-1]["views"] = "many"  # past the first records that decide the column's type
    write_jsonl(corpus / "a.jsonl", rows)
    code, err, day2 = embed(corpus / "a.jsonl", *common, "--skip_existing", f"{day1}/*.parquet", "--snapshot",
                            output="dt2")
    assert code == 0, err
    manifest = read_manifest(day2)
    assert manifest["counts"] == {"read": SAMPLE_RECORDS + 1, "embedded": 0, "skipped": 0, "failed": 1,
                                  "reused": SAMPLE_RECORDS}
    assert manifest["incremental"]["snapshot_rows"] == SAMPLE_RECORDS
    (dead,) = read_dead_letters(day2)
    assert (dead["id"], dead["reason"]) == (f"r{SAMPLE_RECORDS}", "kept_field_type")
    table = read_embeddings(day2)
    assert f"r{SAMPLE_RECORDS}" not in table.column("id").to_pylist()
    assert sorted(table.column("views").to_pylist()) == list(range(SAMPLE_RECORDS))


def test_a_run_of_a_version_before_these_settings_is_replaced_by_the_same_command(tmp_path, embed):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "t", "a": 1}])
    code, err, out = embed(tmp_path / "a.jsonl")
    assert code == 0, err
    manifest = read_manifest(out)
    for name in ("keep_fields", "keep_text", "hub_preprocessor"):  # what an earlier version did not record
        del manifest["settings"][name]
    (out / "_SUCCESS").write_text(json.dumps(manifest), encoding="utf-8")
    code, err, _ = embed(tmp_path / "a.jsonl")
    assert code == 0, err
    (out / "_SUCCESS").write_text(json.dumps(manifest), encoding="utf-8")
    code, err, _ = embed(tmp_path / "a.jsonl", "--keep_text")
    assert code == 2 and "keep_text: False -> True" in err


def test_a_kept_value_the_output_cannot_store_is_an_undecodable_dead_letter(tmp_path, embed):
    lines = [
        '{"id": "r1", "text": "alpha", "k": "fine", "o": {"a": ["b"]}}',
        '{"id": "r2", "text": "beta", "k": "x\\ud800y"}',  # a lone surrogate in a kept string
        '{"id": "r3", "text": "gamma", "o": {"\\udc80": 1}}',  # in a key of an object kept as JSON text
        '{"id": "r4", "text": "delta", "o": [1, ["\\udfff"]]}',  # nested in an array kept as JSON text
        '{"id": "r5", "text": "epsilon", "k": "caf\\u00e9"}',
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "k,o")
    assert code == 0, err
    assert list(rows_by_id(out)) == ["r1", "r5"]
    assert rows_by_id(out)["r5"]["k"] == "café"
    dead = {d["id"]: d for d in read_dead_letters(out)}
    assert {i: d["reason"] for i, d in dead.items()} == {"r2": "undecodable", "r3": "undecodable",
                                                          "r4": "undecodable"}
    assert "'k'" in dead["r2"]["detail"] and "'o'" in dead["r3"]["detail"] and "'o'" in dead["r4"]["detail"]
    assert [dead[i]["raw"] for i in ("r2", "r3", "r4")] == lines[1:4]

    # CSV: a byte --encoding cannot decode, in a kept column.
    (tmp_path / "b.csv").write_bytes(b"id,text,lang\nc1,a csv row,caf\xe9\nc2,another row,en\n")
    code, err, out = embed(tmp_path / "b.csv", "--id_field", "id", "--keep_fields", "lang", output="csv-out")
    assert code == 0, err
    assert rows_by_id(out)["c2"]["lang"] == "en" and list(rows_by_id(out)) == ["c2"]
    (dead,) = read_dead_letters(out)
    assert (dead["id"], dead["reason"], dead["raw"]) == ("c1", "undecodable", "c1,a csv row,caf\\xe9")
    assert "'lang'" in dead["detail"]


def test_every_late_kept_value_is_stored_exactly_or_is_a_kept_field_type_dead_letter(tmp_path, embed):
    """Through the whole job: the sample decides the columns, a later value is stored as its column holds it or
    its record is a dead letter naming the field. Which value fits which column: `test_kept_policy.py`."""
    # The first records decide: f float64 (ints and floats), i int64, b bool, s string (mixed kinds).
    first = [{"id": f"r{n}", "text": f"text {n}", "f": n if n % 2 else n + 0.5, "i": n, "b": n % 2 == 0,
              "s": "word" if n % 2 else n} for n in range(SAMPLE_RECORDS)]
    late = {  # id: (the JSON line's fields, the stored value or None for a dead letter)
        "f_huge_int": ('"f": ' + "1" + "0" * 400, None),  # float(int) overflows: never a crash
        "f_nan": ('"f": NaN', "nan"),
        "i_whole_float": ('"i": 3.0', 3),
        "b_int": ('"b": 1', None),
        "s_array": ('"s": [NaN, {"k": 2}]', '[NaN, {"k": 2}]'),
    }
    lines = [json.dumps(row) for row in first]
    lines += [f'{{"id": "{record_id}", "text": "late {record_id}", {field}}}' for record_id, (field, _) in late.items()]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, err, out = embed(tmp_path / "a.jsonl", "--id_field", "id", "--keep_fields", "f,i,b,s")
    assert code == 0, err
    schema = read_embeddings(out).schema
    assert [schema.field(n).type for n in "fibs"] == [pa.float64(), pa.int64(), pa.bool_(), pa.string()]
    rows = rows_by_id(out)
    dead = {d["id"]: d for d in read_dead_letters(out)}
    for record_id, (field, stored) in late.items():
        name = field[1]
        if stored is None:
            assert record_id not in rows and dead[record_id]["reason"] == "kept_field_type", record_id
            assert f"{name!r}" in dead[record_id]["detail"]
        elif stored == "nan":
            assert math.isnan(rows[record_id][name])
        else:
            assert rows[record_id][name] == stored and type(rows[record_id][name]) is type(stored), record_id
    assert len(rows) + len(dead) == SAMPLE_RECORDS + len(late)


def test_a_json_number_a_parquet_column_would_change_is_a_kept_field_type_dead_letter(tmp_path, embed):
    pq.write_table(pa.table({"id": ["p"], "text": ["from parquet"], "n": pa.array([1], pa.int32())}),
                   tmp_path / "a.parquet")
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(SAMPLE_RECORDS)]  # "n" only after the sample
    rows += [{"id": "half", "text": "a half", "n": 1.5}, {"id": "huge", "text": "too big", "n": 2**40},
             {"id": "whole", "text": "a whole float", "n": 2.0}, {"id": "seven", "text": "an int", "n": 7}]
    write_jsonl(tmp_path / "b.jsonl", rows)
    code, err, out = embed(tmp_path / "*.*", "--id_field", "id", "--keep_fields", "n")
    assert code == 0, err
    assert read_embeddings(out).schema.field("n").type == pa.int32()
    assert {d["id"]: d["reason"] for d in read_dead_letters(out)} == {"half": "kept_field_type",
                                                                      "huge": "kept_field_type"}
    rows = rows_by_id(out)
    assert (rows["p"]["n"], rows["whole"]["n"], rows["seven"]["n"]) == (1, 2, 7)


def not_utf8(values):
    """A Parquet string column holding the given bytes as they are, valid UTF-8 or not."""
    return pa.array(values, pa.binary()).view(pa.string())


def test_parquet_ids_and_kept_strings_that_are_not_utf8_cost_one_dead_letter_each(tmp_path, embed):
    tags = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4, 5], pa.int32()),
                                    not_utf8([b"a", b"b", b"c", b"\xff", b"e"]))
    pq.write_table(pa.table({
        "doc": not_utf8([b"p1", b"bad-\xe9", b"p3", b"p4", b"p5"]),
        "text": ["one", "two", "three", "four", "five"],
        "note": not_utf8([b"fine", b"fine", b"caf\xe9", b"fine", b"fine"]),
        "tags": tags,
    }), tmp_path / "a.parquet")
    code, err, out = embed(tmp_path / "a.parquet", "--id_field", "doc", "--keep_fields", "note,tags")
    assert code == 0, err
    assert sorted(rows_by_id(out)) == ["p1", "p5"]
    letters = {d["line"]: d for d in read_dead_letters(out)}
    assert {line: d["reason"] for line, d in letters.items()} == {2: "undecodable", 3: "undecodable",
                                                                   4: "undecodable"}
    assert "'doc'" in letters[2]["detail"] and "id" not in letters[2]
    assert "'note'" in letters[3]["detail"] and letters[3]["id"] == "p3"
    assert "'tags'" in letters[4]["detail"] and letters[4]["id"] == "p4"
    assert "\\xe9" in letters[3]["raw"]  # the bad bytes shown, escaped
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 5, "embedded": 2, "skipped": 0, "failed": 3}
    assert manifest["failed_by_reason"] == {"undecodable": 3}


def every_kind_of_parquet_column(n: int) -> pa.Table:
    """n rows of Parquet columns Python's datetime, float or str cannot hold exactly, nulls included."""
    import decimal

    def cycle(values, type_):
        return pa.array([values[i % len(values)] for i in range(n)], type_)

    item = pa.struct([("k", pa.int64()), ("names", pa.list_(pa.string()))])
    return pa.table({
        "id": [f"r{i:03d}" for i in range(n)],
        "text": [f"record number {i}" for i in range(n)],
        "ts_ns": cycle([1_700_000_000_123_456_789, -1, None, 2**62], pa.timestamp("ns")),
        "ts_paris": cycle([1_700_000_000_000_000_001, None], pa.timestamp("ns", tz="Europe/Paris")),
        "ts_offset": cycle([5, -86_400_000_001], pa.timestamp("us", tz="+05:30")),
        "day": cycle([2_932_897 + 1, -1_000_000, 0, None, 2**31 - 1], pa.date32()),
        "dec": cycle([decimal.Decimal("12345678901234567890.123456789012345678"), None,
                      decimal.Decimal("-0.000000000000000001")], pa.decimal128(38, 18)),
        "dec256": cycle([decimal.Decimal("1" * 60 + ".25"), decimal.Decimal("-3.75")], pa.decimal256(70, 2)),
        "nested": cycle([[{"k": 2**63 - 1, "names": ["é", None]}], [], None, [None]], pa.list_(item)),
        "attrs": cycle([[("a", 1), ("a", 2)], None, []], pa.map_(pa.string(), pa.int32())),
        "category": cycle(["red", "green", None], pa.string()).dictionary_encode(),
        "blob": cycle([b"\x00\xff\xe9", b"", None], pa.binary()),
        "big_text": cycle(["长文本", None], pa.large_string()),
        "half": cycle([1.5, -0.0, float("inf"), float("nan"), 65504.0, None], pa.float16()),
        "clock_ms": cycle([0, 86_399_999, None], pa.time32("ms")),
        "clock_ns": cycle([1, 86_399_999_999_999], pa.time64("ns")),
        "took": cycle([-1, 2**63 - 1, None], pa.duration("ns")),
        "pair": cycle([b"ab", b"\xff\x00"], pa.binary(2)),
        "wide": cycle([[1, 2], None], pa.large_list(pa.int8())),
    })


def assert_kept_exactly(output, source: pa.Table, names) -> None:
    got = read_embeddings(output)
    expected = source.sort_by("id")
    assert got.column("id").equals(expected.column("id"))
    for name in names:
        column, wanted = got.column(name), expected.column(name)
        assert column.type == wanted.type, name
        column, wanted = column.combine_chunks(), wanted.combine_chunks()
        if pa.types.is_dictionary(wanted.type):  # each file has a dictionary of its own: compare the values
            column, wanted = column.dictionary_decode(), wanted.dictionary_decode()
        if pa.types.is_floating(wanted.type):  # bit for bit: NaN equals itself, -0.0 differs from 0.0
            bits = {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[wanted.type.bit_width]
            column, wanted = column.view(bits), wanted.view(bits)
        assert column.equals(wanted), name


def test_parquet_kept_columns_keep_their_exact_types_and_values_python_cannot_hold(tmp_path, embed):
    pq.write_table(every_kind_of_parquet_column(12), tmp_path / "a.parquet")
    source = pq.read_table(tmp_path / "a.parquet")
    names = [n for n in source.column_names if n not in ("id", "text")]
    code, err, out = embed(tmp_path / "a.parquet", "--id_field", "id", "--keep_fields", ",".join(names),
                           "--records_per_file", "5")
    assert code == 0, err
    assert read_manifest(out)["counts"] == {"read": 12, "embedded": 12, "skipped": 0, "failed": 0}
    assert_kept_exactly(out, source, names)


def test_a_snapshot_night_copies_parquet_kept_values_of_reused_rows_exactly(tmp_path, embed):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    table = every_kind_of_parquet_column(8)
    names = [n for n in table.column_names if n not in ("id", "text")]
    pq.write_table(table, corpus / "a.parquet")
    common = ["--id_field", "id", "--keep_fields", ",".join(names)]
    code, err, day1 = embed(corpus / "a.parquet", *common, output="dt1")
    assert code == 0, err
    day2_table = every_kind_of_parquet_column(9).select(["id", "text"])  # a new record; kept values move one row
    for name in names:
        shifted = every_kind_of_parquet_column(10).column(name).slice(1)
        day2_table = day2_table.append_column(name, shifted)
    pq.write_table(day2_table, corpus / "a.parquet")
    code, err, day2 = embed(corpus / "a.parquet", *common, "--skip_existing", f"{day1}/*.parquet", "--snapshot",
                            output="dt2")
    assert code == 0, err
    manifest = read_manifest(day2)
    assert manifest["counts"] == {"read": 9, "embedded": 1, "skipped": 0, "failed": 0, "reused": 8}
    assert any("reused" in name for name in manifest["files"]["embeddings"])
    assert_kept_exactly(day2, pq.read_table(corpus / "a.parquet"), names)


@pytest.mark.parametrize(("first", "second"), [
    (pa.array([1], pa.int64()), pa.array(["one"])),
    (pa.array([2**53 + 1], pa.int64()), pa.array([0.5], pa.float64())),
    (pa.array([1], pa.timestamp("ms")), pa.array([1], pa.timestamp("ns"))),
])
def test_parquet_kept_types_that_do_not_widen_losslessly_stop_the_run_at_launch(tmp_path, embed, first, second):
    pq.write_table(pa.table({"text": ["a"], "n": first}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["b"], "n": second}), tmp_path / "b.parquet")
    code, err, out = embed(tmp_path / "*.parquet", "--keep_fields", "n")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "--keep_fields 'n'" in err
    assert f"{first.type} in a.parquet" in err and f"{second.type} in b.parquet" in err
    assert not (out / "_SUCCESS").exists()


def test_a_parquet_int_a_json_float_column_cannot_hold_exactly_is_a_dead_letter_not_rounded(tmp_path, embed):
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["a", "b"], "n": pa.array([5, 2**53 + 1], pa.int64())}),
                   tmp_path / "a.parquet")
    write_jsonl(tmp_path / "b.jsonl", [{"id": "j1", "text": "c", "n": 0.5}])
    code, err, out = embed(tmp_path / "*.*", "--id_field", "id", "--keep_fields", "n")
    assert code == 0, err
    assert read_embeddings(out).schema.field("n").type == pa.float64()
    assert {k: v["n"] for k, v in rows_by_id(out).items()} == {"p1": 5.0, "j1": 0.5}
    (dead,) = read_dead_letters(out)
    assert (dead["id"], dead["reason"]) == ("p2", "kept_field_type") and "'n'" in dead["detail"]
    assert json.loads(dead["raw"]) == {"text": "b", "id": "p2", "n": 2**53 + 1}  # the row as read, exact


@pytest.mark.parametrize("index", [pa.int8(), pa.int16(), pa.int32(), pa.int64()], ids=str)
def test_a_dictionary_value_that_is_not_utf8_leaves_with_its_dead_letter_not_in_the_output_dictionary(
        tmp_path, embed, index):
    # The good rows' values share the shard's dictionary, which holds the bad row's value too. Narrow indices
    # are what the file's Arrow schema declares; Parquet stores int32 ones, which pyarrow narrows when reading.
    encoded = not_utf8([b"ok", b"bad\xff", b"ok"]).dictionary_encode()
    tags = pa.DictionaryArray.from_arrays(encoded.indices.cast(index), encoded.dictionary)
    pq.write_table(pa.table({"id": ["r1", "r2", "r3"], "text": ["a", "b", "c"], "tag": tags}), tmp_path / "a.parquet")
    code, err, out = embed(tmp_path / "a.parquet", "--id_field", "id", "--keep_fields", "tag")
    assert code == 0, err
    assert [(d["id"], d["reason"]) for d in read_dead_letters(out)] == [("r2", "undecodable")]
    (name,) = read_manifest(out)["files"]["embeddings"]
    table = pq.read_table(out / name)
    table.validate(full=True)  # no string that is not UTF-8 anywhere, unused dictionary values included
    assert table.column("tag").combine_chunks().dictionary.to_pylist() == ["ok"]
    assert table.column("tag").to_pylist() == ["ok", "ok"]
    assert table.schema.field("tag").type == pa.dictionary(index, pa.string())


def test_string_and_binary_views_never_take_the_job_down_and_are_kept_exactly_between_stages_too(tmp_path, embed):
    # A snapshot night sends reused rows' kept values through a shuffle (pickled); Arrow cannot `take` views.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    table = pa.table({"id": ["r1", "r2", "r3"], "text": ["one", "two", "three"],
                      "sv": not_utf8([b"x", b"bad\xff", None]).cast(pa.string_view()),
                      "bv": pa.array([b"\x00\xff", b"", None], pa.binary_view()),
                      "nested": pa.array([{"s": "a"}, None, {"s": None}], pa.struct([("s", pa.string_view())]))})
    pq.write_table(table, corpus / "a.parquet")
    common = ["--id_field", "id", "--keep_fields", "sv,bv,nested"]
    for night in ("dt1", "dt2"):
        extra = ["--skip_existing", f"{tmp_path / 'dt1'}/*.parquet", "--snapshot"] if night == "dt2" else []
        code, err, out = embed(corpus / "a.parquet", *common, *extra, output=night)
        assert code == 0, err
        assert [(d["id"], d["reason"]) for d in read_dead_letters(out)] == [("r2", "undecodable")]
        kept = pa.concat_tables(pq.read_table(out / f) for f in read_manifest(out)["files"]["embeddings"])
        assert kept.column("id").to_pylist() == ["r1", "r3"]
    assert read_manifest(out)["counts"]["reused"] == 2
    for name in ("sv", "bv", "nested"):
        assert kept.column(name).type == table.column(name).type
        assert kept.column(name).to_pylist() == [table.column(name)[0].as_py(), table.column(name)[2].as_py()]


def test_json_text_of_arrows_json_type_that_is_not_utf8_is_an_undecodable_dead_letter(tmp_path, embed):
    notes = pa.ExtensionArray.from_storage(pa.json_(), not_utf8([b'{"a": 1}', b'"caf\xe9"']))
    pq.write_table(pa.table({"id": ["r1", "r2"], "text": ["a", "b"], "note": notes}), tmp_path / "a.parquet")
    code, err, out = embed(tmp_path / "a.parquet", "--id_field", "id", "--keep_fields", "note")
    assert code == 0, err
    (dead,) = read_dead_letters(out)
    assert (dead["id"], dead["reason"]) == ("r2", "undecodable") and "'note'" in dead["detail"]
    kept = read_embeddings(out)
    assert kept.column("id").to_pylist() == ["r1"] and kept.column("note").type == pa.json_()
    assert kept.column("note").combine_chunks().storage.to_pylist() == ['{"a": 1}']


def test_a_fixed_size_list_column_given_nulls_is_written_so_pyarrow_reads_it_back(tmp_path, embed):
    # Parquet stores fixed-size lists as lists; pyarrow before 26 cannot read back a fixed-size one holding a null,
    # as a record lacking the field gives it.
    pairs = pa.list_(pa.timestamp("s", tz="UTC"), 2)
    nested = pa.struct([("p", pairs)])
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["a", "b"],
                             "pair": pa.array([[3, 4], [-95, None]], pairs),
                             "box": pa.array([{"p": [5, 6]}, {"p": [1, 2]}], nested)}), tmp_path / "a.parquet")
    write_jsonl(tmp_path / "b.jsonl", [{"id": "j1", "text": "c"}])  # lacks both: nulls in its file
    code, err, out = embed(tmp_path / "*.*", "--id_field", "id", "--keep_fields", "pair,box",
                           "--records_per_file", "1")
    assert code == 0, err
    table = pa.concat_tables([pq.read_table(out / name) for name in read_manifest(out)["files"]["embeddings"]])
    assert pa.types.is_list(table.schema.field("pair").type)  # its items as pyarrow reads any list's back
    declared = table.schema.field("pair").metadata[b"declared_type"].decode()  # the column's type in the job
    assert declared.startswith("fixed_size_list<") and declared.endswith(">[2]"), declared
    assert pa.types.is_list(table.schema.field("box").type.field("p").type)
    ids = table.column("id").to_pylist()
    pair = dict(zip(ids, table.column("pair").cast(pairs).to_pylist(), strict=True))
    box = dict(zip(ids, table.column("box").cast(nested).to_pylist(), strict=True))
    assert pair == dict(zip(["p1", "p2", "j1"], pa.array([[3, 4], [-95, None], None], pairs).to_pylist(), strict=True))
    assert box == dict(zip(["p1", "p2", "j1"], pa.array([{"p": [5, 6]}, {"p": [1, 2]}, None], nested).to_pylist(),
                           strict=True))


def test_an_input_fixed_size_list_column_holding_a_null_stops_the_run_at_launch_naming_it(tmp_path, embed):
    # pyarrow before 26 cannot read it back at all (apache/arrow#35692): the shard would fail mid-run.
    pairs = pa.list_(pa.int32(), 2)
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["a", "b"], "pair": pa.array([[1, 2], None], pairs),
                             "box": pa.array([{"p": None}, {"p": [3, 4]}], pa.struct([("p", pairs)]))}),
                   tmp_path / "a.parquet")
    for field in ("pair", "box"):
        code, err, out = embed(tmp_path / "a.parquet", "--id_field", "id", "--keep_fields", field)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert "a.parquet" in lines[0] and f"kept field {field!r} holds a null fixed-size list" in lines[0]
        assert not (out / "_SUCCESS").exists()
    code, err, _ = embed(tmp_path / "a.parquet", "--id_field", "id", output="without")  # not kept: read as usual
    assert code == 0, err
