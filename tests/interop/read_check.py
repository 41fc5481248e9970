"""Run inside the interop virtualenv (not ours): read the job's output with DuckDB, Polars, pandas and datasets.

    python read_check.py OUTPUT_DIR VECTOR_COLUMN DIM OUT_JSON

Every reader reads all `embeddings-*.parquet` files of OUTPUT_DIR at once (the dead letters under failed/ and the
_SUCCESS manifest are not Parquet) and reports, rows in id order: the type it gives the vector column, the vectors,
and every other column as plain values, so the test can compare them with what pyarrow reads in our environment.
The libraries are imported inside their readers so the test can import `plain` without them.
"""

import datetime
import decimal
import json
import math
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

PATTERN = "embeddings-*.parquet"


def plain(value: object) -> object:
    """A JSON value that compares equal however a library spelled it: numpy scalars and arrays, NaN/NA/NaT as None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist())
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    return str(value)


def in_id_order(ids: list[str], vectors: list, columns: dict[str, list]) -> dict:
    """The reader's rows sorted by id in Python, so no library's string collation decides the order."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return {
        "rows": len(ids),
        "ids": [ids[i] for i in order],
        "vectors": [plain(vectors[i]) for i in order],
        "vector_lengths": sorted({len(v) for v in vectors}),
        "values": {name: [plain(values[i]) for i in order] for name, values in columns.items()},
        "columns": list(columns),
    }


def read_duckdb(output: Path, vector: str, dim: int) -> dict:
    import duckdb

    con = duckdb.connect()
    scan = f"read_parquet('{output / PATTERN}')"
    relation = con.sql(f"SELECT * FROM {scan}")
    names, types = relation.columns, [str(t) for t in relation.types]
    rows = relation.fetchall()
    others = {n: [row[i] for row in rows] for i, n in enumerate(names) if n != vector}
    seen = in_id_order(others["id"], [row[names.index(vector)] for row in rows], others)
    elements = con.sql(f"SELECT DISTINCT typeof({vector}[1]) FROM {scan}").fetchall()
    # Parquet's fixed-size list arrives as a list (FLOAT[]); the array_* functions want FLOAT[dim].
    array = f"{vector}::FLOAT[{dim}]"
    [(self_min, self_max)] = con.sql(f"SELECT min(c), max(c) FROM (SELECT array_cosine_similarity({array}, {array}) "
                                     f"AS c FROM {scan})").fetchall()
    first, second = seen["ids"][:2]
    [(pair,)] = con.sql(f"SELECT array_cosine_similarity(a.{array}, b.{array}) FROM {scan} a, {scan} b "
                        "WHERE a.id = $first AND b.id = $second", params={"first": first, "second": second}).fetchall()
    per_file = con.sql(f"SELECT parse_filename(filename), count(*) FROM read_parquet('{output / PATTERN}', "
                       "filename = true) GROUP BY ALL").fetchall()
    return {**seen, "library": f"duckdb {version('duckdb')}", "vector_type": types[names.index(vector)],
            "element_dtype": " ".join(t for (t,) in elements), "types": dict(zip(names, types, strict=True)),
            "cosine_self": [self_min, self_max], "cosine_pair": {"ids": [first, second], "value": pair},
            "rows_per_file": dict(per_file)}


def read_polars(output: Path, vector: str, dim: int) -> dict:
    import polars as pl

    frame = pl.read_parquet(output / PATTERN)
    vectors = frame[vector].to_numpy()
    others = {n: frame[n].to_list() for n in frame.columns if n != vector}
    return {**in_id_order(frame["id"].to_list(), list(vectors), others), "library": f"polars {version('polars')}",
            "vector_type": str(frame.schema[vector]), "element_dtype": str(vectors.dtype),
            "types": {n: str(t) for n, t in frame.schema.items()}}


def read_pandas(output: Path, vector: str, dim: int) -> dict:
    import pandas as pd

    # A list of files, not the directory: pyarrow would also try failed/*.jsonl as Parquet.
    frame = pd.read_parquet(sorted(str(p) for p in output.glob(PATTERN)))
    vectors = list(frame[vector])
    others = {n: frame[n].tolist() for n in frame.columns if n != vector}
    element_types = sorted({f"{type(v).__module__}.{type(v).__name__}[{getattr(v, 'dtype', '')}]" for v in vectors})
    return {**in_id_order(frame["id"].tolist(), vectors, others), "library": f"pandas {version('pandas')}",
            "vector_type": str(frame[vector].dtype), "element_dtype": " ".join(element_types),
            "types": {n: str(t) for n, t in frame.dtypes.items()}}


def read_datasets(output: Path, vector: str, dim: int) -> dict:
    import datasets

    datasets.disable_progress_bars()
    files = str(output / PATTERN)
    with tempfile.TemporaryDirectory() as cache:  # not the user's ~/.cache/huggingface
        try:
            datasets.Dataset.from_parquet(files, cache_dir=cache)
            without_batch_size = None
        except Exception as exc:  # recorded for the test; the read below is the one compared
            without_batch_size = f"{type(exc).__name__}: {exc} ({exc.__cause__!r})"
        # Given no batch size, datasets takes each file's first row group's row count: 0 in an empty part.
        table = datasets.Dataset.from_parquet(files, cache_dir=cache, batch_size=1000)
        vectors = table.with_format("numpy")[:][vector]  # a slice: one array, not a lazy Column
        others = {n: list(table[n]) for n in table.column_names if n != vector}
        seen = in_id_order(list(table["id"]), list(vectors), others)
        return {**seen, "library": f"datasets {version('datasets')}", "vector_type": str(table.features[vector]),
                "element_dtype": f"{vectors.dtype} shape {list(vectors.shape)}",
                "types": {n: str(f) for n, f in table.features.items()}, "without_batch_size": without_batch_size}


READERS: dict[str, Callable[[Path, str, int], dict]] = {
    "duckdb": read_duckdb, "polars": read_polars, "pandas": read_pandas, "datasets": read_datasets}


def main(output: str, vector: str, dim: str, out: str) -> None:
    seen = {name: read(Path(output), vector, int(dim)) for name, read in READERS.items()}
    with open(out, "w") as f:  # not stdout: the libraries may print there
        json.dump(seen, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
