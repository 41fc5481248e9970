"""Other tools read the job's output as pyarrow does: DuckDB, Polars, pandas and Hugging Face datasets.

They live in a virtualenv of their own (`make test` builds .venv-interop from tests/interop/requirements.txt and sets
INTEROP_PYTHON); the job does not depend on them. read_check.py reads the output there, pyarrow reads it here, and
each test compares one thing. Columns other than the vector are compared generically, whatever the job writes.
"""

import datetime
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from tests.interop.read_check import PATTERN, READERS, plain

VECTOR = "embedding"
RECORDS = [
    {"id": "doc-00", "text": "hello world", "lang": "en"},
    {"id": "doc-01", "text": "今天天气很好", "lang": "zh"},
    {"id": "doc-02", "text": "the job runs", "lang": "en"},
    {"id": "doc-03", "text": "向量", "lang": "zh"},
    {"id": "doc-04", "text": "a longer line of plain English text", "lang": "en"},
    {"id": "doc-05", "text": "naïve café", "lang": "fr"},
    {"id": "doc-06", "text": "第二天", "lang": "zh"},
    {"id": "doc-07", "text": "parquet files", "lang": "en"},
]


@pytest.fixture(scope="module")
def interop_python() -> str:
    python = os.environ.get("INTEROP_PYTHON")
    if not python:
        pytest.skip("INTEROP_PYTHON is not set; `make test` installs the readers in .venv-interop and sets it")
    return python


@pytest.fixture(scope="module")
def output(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished run written as several Parquet files, one of them empty, with dead letters beside them."""
    corpus = tmp_path_factory.mktemp("interop-in")
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    lines[3:3] = ["{broken", json.dumps({"id": "no-text", "lang": "en"})]
    (corpus / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "b.jsonl").write_text(json.dumps({"id": "doc-00", "text": "repeated id"}) + "\n"
                                    + json.dumps({"id": "doc-99", "text": "another shard"}) + "\n", encoding="utf-8")
    (corpus / "c.jsonl").write_text("\n   \n", encoding="utf-8")  # nothing to embed: a file with the schema alone
    out = tmp_path_factory.mktemp("interop") / "out"
    code = main([
        "--input", str(corpus / "*.jsonl"), "--output", str(out), "--model", str(tiny_bert_dir), "--id_field", "id",
        "--normalize", "--records_per_file", "3", "--keep_fields", "lang", "--keep_text", "--progress", "off"])
    assert code == 0
    assert len(list(out.glob(PATTERN))) > 3 and list((out / "failed").glob("*.jsonl"))
    assert min(pq.read_metadata(path).num_rows for path in out.glob(PATTERN)) == 0
    return out


def read_elsewhere(python: str, output: Path, seen_file: Path) -> dict:
    """What each reader in the interop virtualenv made of an output directory (read_check.py's JSON)."""
    dim = pq.read_schema(next(output.glob(PATTERN))).field(VECTOR).type.list_size
    done = subprocess.run([python, str(Path(__file__).with_name("read_check.py")), str(output), VECTOR, str(dim),
                           str(seen_file)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(seen_file.read_text())


def read_here(output: Path) -> dict:
    """pyarrow's reading in our environment, rows in id order: ids, float32 vectors, other columns as plain values."""
    table = pa.concat_tables([pq.read_table(path) for path in sorted(output.glob(PATTERN))])
    table = table.take(sorted(range(table.num_rows), key=table.column("id").to_pylist().__getitem__))
    vector_type = table.schema.field(VECTOR).type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.value_type == pa.float32()
    vectors = table.column(VECTOR).combine_chunks().flatten().to_numpy().reshape(table.num_rows, vector_type.list_size)
    return {"ids": table.column("id").to_pylist(), "dim": vector_type.list_size, "vectors": vectors,
            "values": {name: plain(table.column(name).to_pylist()) for name in table.column_names if name != VECTOR}}


@pytest.fixture(scope="module")
def seen(interop_python, output, tmp_path_factory) -> dict:
    return read_elsewhere(interop_python, output, tmp_path_factory.mktemp("interop-seen") / "seen.json")


@pytest.fixture(scope="module")
def expected(output) -> dict:
    return read_here(output)


def test_every_file_has_the_same_schema_so_the_directory_reads_as_one_table(output):
    schemas = [pq.read_schema(path) for path in sorted(output.glob(PATTERN))]
    assert all(schema.equals(schemas[0], check_metadata=True) for schema in schemas)


def test_every_reader_reads_all_files_as_one_table_with_the_same_ids(seen, expected, output):
    assert set(seen) == set(READERS)
    assert expected["ids"] == sorted({r["id"] for r in RECORDS} | {"doc-99"})  # dead letters are not rows
    for reader, got in seen.items():
        assert (got["rows"], got["ids"]) == (len(expected["ids"]), expected["ids"]), reader
    rows_per_file = {path.name: pq.read_metadata(path).num_rows for path in output.glob(PATTERN)}
    assert seen["duckdb"]["rows_per_file"] == {name: rows for name, rows in rows_per_file.items() if rows}


def test_every_reader_gives_the_vectors_bit_for_bit(seen, expected):
    """JSON carries each float32 exactly (as a double); the float64 comparison also catches a reader that widened."""
    want = expected["vectors"].astype(np.float64)
    for reader, got in seen.items():
        assert got["vector_lengths"] == [expected["dim"]], reader
        vectors = np.array(got["vectors"], dtype=np.float64)
        assert vectors.shape == want.shape and np.abs(vectors - want).max() == 0, reader


def test_each_reader_maps_the_vector_column_to_float32_of_the_model_dimension(seen, expected):
    """What each pinned reader makes of fixed_size_list<float>[dim] (README "Reading the output elsewhere")."""
    dim, rows = expected["dim"], len(expected["ids"])
    assert {reader: (got["vector_type"], got["element_dtype"]) for reader, got in seen.items()} == {
        "duckdb": ("FLOAT[]", "FLOAT"),  # a list, not FLOAT[dim]: cast for the array_* functions
        "polars": (f"Array(Float32, shape=({dim},))", "float32"),
        "pandas": ("object", "numpy.ndarray[float32]"),  # one float32 array of length dim per row
        "datasets": (f"List(Value('float32'), length={dim})", f"float32 shape [{rows}, {dim}]"),
    }


def test_duckdb_cosine_similarity_works_on_the_vector_cast_to_a_fixed_size_array(seen, expected):
    got = seen["duckdb"]
    assert got["cosine_self"] == pytest.approx([1.0, 1.0], abs=1e-6)  # --normalize: unit vectors
    first, second = (expected["vectors"][expected["ids"].index(i)].astype(np.float64)
                     for i in got["cosine_pair"]["ids"])
    cosine = first @ second / (np.linalg.norm(first) * np.linalg.norm(second))
    assert got["cosine_pair"]["value"] == pytest.approx(cosine, abs=1e-6)


def test_every_other_column_has_the_same_values_in_every_reader(seen, expected):
    for reader, got in seen.items():
        assert got["columns"] == list(expected["values"]), reader
        for name, values in expected["values"].items():
            assert got["values"][name] == values, (reader, name)



def test_datasets_reads_the_glob_without_being_given_a_batch_size(seen):
    """An empty part (a shard with nothing to embed) has no row group: datasets would batch by 0 rows."""
    assert seen["datasets"]["without_batch_size"] is None, seen["datasets"]["without_batch_size"]


def test_kept_columns_reach_every_reader_whatever_their_type(interop_python, tiny_bert_dir, tmp_path):
    """--keep_fields/--keep_text columns of several Arrow types (nulls included) as each reader sees them."""
    n = 7
    shard = pa.table({
        "text": [f"行 {i} ünïcode" for i in range(n)],
        "stars": pa.array([i if i % 2 else None for i in range(n)], pa.int64()),
        "score": pa.array([i / 3 if i % 3 else None for i in range(n)], pa.float64()),
        "tags": pa.array([["a", "b", "c"][: i % 3] for i in range(n)], pa.list_(pa.string())),
        "seen_at": pa.array([datetime.datetime(2026, 11, 25, 2, i) for i in range(n)], pa.timestamp("us")),
    })
    pq.write_table(shard, tmp_path / "in.parquet")
    kept = ["stars", "score", "tags", "seen_at"]
    out = tmp_path / "out"
    assert main(["--input", str(tmp_path / "in.parquet"), "--output", str(out), "--model", str(tiny_bert_dir),
                 "--keep_fields", ",".join(kept), "--keep_text", "--records_per_file", "3", "--progress", "off"]) == 0
    expected = read_here(out)
    assert [*kept, "text"] == list(expected["values"])[-5:]
    seen = read_elsewhere(interop_python, out, tmp_path / "seen.json")
    for reader, got in seen.items():
        assert got["columns"] == list(expected["values"]), reader
        for name, values in expected["values"].items():
            assert got["values"][name] == values, (reader, name)
    # Values compare equal across int/float, so the types each reader gives are checked too (pandas has no
    # nullable int by default: an int64 column with nulls becomes float64 there, as the README says).
    assert {reader: [got["types"][name] for name in (*kept, "text")] for reader, got in seen.items()} == {
        "duckdb": ["BIGINT", "DOUBLE", "VARCHAR[]", "TIMESTAMP", "VARCHAR"],
        "polars": ["Int64", "Float64", "List(String)", "Datetime(time_unit='us', time_zone=None)", "String"],
        "pandas": ["float64", "float64", "object", "datetime64[us]", "str"],
        "datasets": ["Value('int64')", "Value('float64')", "List(Value('string'))", "Value('timestamp[us]')",
                     "Value('string')"],
    }


@pytest.mark.parametrize("precision", ["float16", "int8", "uint8", "binary", "ubinary"])
def test_every_reader_reads_compact_vectors_as_stored(interop_python, tiny_bert_dir, tmp_path, precision):
    """--output_precision's columns (README "Models"): every reader gets the stored values exactly, in its type."""
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    np.save(tmp_path / "ranges.npy", np.array([[-0.2] * 32, [0.2] * 32], dtype=np.float32))
    ranges = ["--quantize_ranges", str(tmp_path / "ranges.npy")] if precision == "int8" else []  # uint8 calibrates
    out = tmp_path / "out"
    assert main(["--input", str(corpus), "--output", str(out), "--model", str(tiny_bert_dir), "--id_field", "id",
                 "--normalize", "--output_precision", precision, *ranges, "--progress", "off"]) == 0
    table = pa.concat_tables([pq.read_table(path) for path in sorted(out.glob(PATTERN))]).sort_by("id")
    column = table.column(VECTOR).combine_chunks()
    want = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float64)
    seen = read_elsewhere(interop_python, out, tmp_path / "seen.json")
    for reader, got in seen.items():
        assert got["ids"] == table.column("id").to_pylist(), reader
        assert np.array_equal(np.array(got["vectors"], dtype=np.float64), want), reader
    types = {reader: got["vector_type"] for reader, got in seen.items()}
    width = column.type.list_size
    element = {"float16": ("FLOAT", "Float16", "float16"), "int8": ("TINYINT", "Int8", "int8"),
               "uint8": ("UTINYINT", "UInt8", "uint8"), "binary": ("TINYINT", "Int8", "int8"),
               "ubinary": ("UTINYINT", "UInt8", "uint8")}[precision]
    assert types["duckdb"] == f"{element[0]}[]" and types["polars"] == f"Array({element[1]}, shape=({width},))"
