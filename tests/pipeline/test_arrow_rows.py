"""Parquet kept values as Arrow rows: pickled with only their own values, fitted by checked casts, checked for UTF-8."""

import pickle

import pyarrow as pa

from pipeline.formats.arrow_rows import ArrowRows, batch_rows, concat_rows, fit_row, undecodable_rows


def kept_batch(n: int) -> pa.RecordBatch:
    return pa.record_batch({
        "lang": pa.array(["en", "zh", "fr"] * (n // 3) + ["en"] * (n % 3)).dictionary_encode(),
        "tags": pa.array([[f"tag {i}", None] for i in range(n)], pa.list_(pa.string())),
        "at": pa.array(range(n), pa.timestamp("ns", tz="UTC")),
    })


def test_a_pickled_row_carries_its_own_values_not_its_batch():
    sizes = set()
    for n in (3, 1000, 100_000):
        row = batch_rows(kept_batch(n))[2]
        pickled = pickle.dumps(row)
        sizes.add(len(pickled))
        back = pickle.loads(pickled)
        assert back.batch.column("lang").dictionary_decode().to_pylist() == ["fr"]
        assert back.batch.column("tags").equals(row.batch.column("tags"))
        assert back.batch.column("at").equals(row.batch.column("at")) and back.size() == row.size()
    assert len(sizes) == 1 and sizes.pop() < 2000


def test_rows_join_into_one_batch_whose_pickle_grows_with_its_rows_only():
    rows = batch_rows(kept_batch(10_000))
    part = concat_rows([rows[i] for i in range(0, 10_000, 10)])
    assert len(part) == 1000 and part[5].batch.column("at").cast(pa.int64()).to_pylist() == [50]
    assert len(pickle.dumps(part)) < len(pickle.dumps(concat_rows(rows))) / 5


def test_a_row_is_cast_to_its_column_or_says_why_its_value_does_not_fit():
    fields = [pa.field("n", pa.float64())]
    (fits, too_big) = batch_rows(pa.record_batch({"n": pa.array([5, 2**53 + 1], pa.int64())}))
    fitted, misfit = fit_row(fields, fits)
    assert misfit is None and fitted.batch.column(0).type == pa.float64() and fitted.batch.column(0)[0].as_py() == 5.0
    unchanged, misfit = fit_row(fields, too_big)
    assert unchanged is too_big
    assert "'n'" in misfit and "int64 value (9007199254740993)" in misfit and "double column" in misfit


def test_a_value_in_a_string_column_becomes_its_exact_json_text():
    (row,) = batch_rows(pa.record_batch({"s": pa.array([{"at": 1}], pa.struct([("at", pa.timestamp("ns"))]))}))
    fitted, misfit = fit_row([pa.field("s", pa.string())], row)
    assert misfit is None and fitted.batch.column(0).to_pylist() == ['{"at": "1970-01-01T00:00:00.000000001"}']


def test_strings_that_are_not_utf8_are_found_by_row_nested_and_dictionary_encoded_included():
    bad = pa.array([b"ok", b"caf\xe9", b"ok", b"ok"], pa.binary()).view(pa.string())
    nested = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()),
                                      pa.array([b"a", b"b", b"c", b"\xff"]).view(pa.string()))
    dictionary = pa.DictionaryArray.from_arrays(pa.array([0, 0, 1, 0], pa.int8()), bad.slice(0, 2))
    batch = pa.record_batch({"plain": bad, "nested": nested, "coded": dictionary, "n": pa.array([1, 2, 3, 4])})
    assert undecodable_rows(batch) == {1: "plain", 2: "coded", 3: "nested"}
    assert undecodable_rows(batch.slice(3)) == {0: "nested"}
    assert undecodable_rows(batch.select(["coded"])) == {2: "coded"}


def test_equal_rows_compare_equal():
    a, b = batch_rows(kept_batch(2)), batch_rows(kept_batch(2))
    assert a[0] == b[0] and a[0] != b[1] and isinstance(a[0], ArrowRows)
