"""Reading back a finished output of this job (for search and the report): its checked manifest, its files, its vectors.

One set of checks and messages for every tool that reads an output: no `_SUCCESS` (with files under
_temporary/: a run still going or stopped), a `_SUCCESS` that is not our manifest, a listed file that
is gone or damaged (a page that fails its checksum), an embedding column that does not hold vectors of
the recorded width. Any filesystem Beam or fsspec knows (`pipeline.formats.storage`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from encoders import OUTPUT_PRECISIONS, RANGED, dequantize, stored_width, value_type
from encoders.quantize import RANGES_SETTING
from pipeline.errors import NotAFinishedRun
from pipeline.formats import storage
from pipeline.formats.manifest import Manifest
from pipeline.formats.output import STAGING_DIR, SUCCESS_FILE, open_parquet
from pipeline.formats.storage import join, open_file

# Files looked at at once: on an object store each look is a round trip, so thousands of files need overlap.
LOOK_THREADS = 8
ROWS_PER_BATCH = 4096  # rows read at once: 4096 x 384 float32 is 6 MB


def read_manifest(output: str) -> Manifest:
    """The output's `_SUCCESS` manifest; raises NotAFinishedRun unless it is one this job wrote."""
    success = join(output, SUCCESS_FILE)
    if not storage.exists(success):
        if storage.has_files_under(join(output, STAGING_DIR)):
            raise NotAFinishedRun(f"{output} is not finished: {STAGING_DIR}/ holds files but there is no "
                                  f"{SUCCESS_FILE} (the job is still running or was stopped; rerun it)")
        raise NotAFinishedRun(f"{output} is not a finished output of this job: there is no {SUCCESS_FILE}")
    try:
        return Manifest.read(success)
    except (OSError, UnicodeError, json.JSONDecodeError) as exc:
        raise NotAFinishedRun(f"{success} cannot be read as this job's manifest ({exc})") from None
    except ValueError as exc:
        raise NotAFinishedRun(f"{success} is not this job's manifest ({exc})") from None


def embeddings_files(output: str, manifest: Manifest) -> tuple[str, ...]:
    """The paths of the embeddings files the manifest lists; NotAFinishedRun if one is gone."""
    return tuple(embeddings_file_sizes(output, manifest))


def embeddings_file_sizes(output: str, manifest: Manifest) -> dict[str, int]:
    """{path: size in bytes} of the embeddings files the manifest lists, in its order; NotAFinishedRun if one is
    gone.

    One listing of each directory they sit in (the output's own, as the job writes them) answers for
    all of them, sizes included: on an object store a listing returns a thousand names a request, where
    asking for each file costs a request each. A file the listing does not show is asked for on its own
    (a directory name a glob would misread lands there too).
    """
    files = tuple(join(output, name) for name in manifest.embeddings)
    sizes = storage.sizes_by_listing(files)
    unlisted = [file for file in files if file not in sizes]
    with ThreadPoolExecutor(max_workers=LOOK_THREADS) as pool:
        for file, found in zip(unlisted, pool.map(storage.exists, unlisted), strict=True):
            if not found:
                raise NotAFinishedRun(f"{file} is listed in {SUCCESS_FILE} but missing")
        sizes |= dict(zip(unlisted, pool.map(storage.size, unlisted), strict=True))
    return {file: sizes[file] for file in files}


def row_batches(file: str, columns: Sequence[str]) -> Iterator:
    """One embeddings file's rows, ROWS_PER_BATCH at a time, only these columns (so memory is bounded).

    Raises NotAFinishedRun, naming the file, when it lacks one of them or cannot be read: not Parquet,
    or a page that does not match its checksum (the file changed after the job wrote it).
    """
    try:
        with open_file(file) as f:
            parquet = open_parquet(f)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                raise NotAFinishedRun(f"{file} lacks the column(s) {', '.join(missing)}: not this job's output")
            yield from parquet.iter_batches(batch_size=ROWS_PER_BATCH, columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise NotAFinishedRun(f"{file} cannot be read: {' '.join(str(exc).split())}") from None


def recorded_dim(output: str, manifest: Manifest) -> int:
    """The width of the output's vectors, as its manifest records it (settings.dim); NotAFinishedRun if it does not.

    The manifest, not a file's schema, says it: a file rewritten by another tool keeps its vectors but
    may lose both the fixed width of its column and its key-value metadata.
    """
    dim = manifest.settings.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise NotAFinishedRun(f"{join(output, SUCCESS_FILE)} records no vector width (settings.dim is {dim!r})")
    return dim


@dataclass(frozen=True)
class StoredVectors:
    """How an output stores its vectors (`encoders.quantize`): their width, --output_precision, int8/uint8 ranges."""

    dim: int
    precision: str = "float32"
    ranges: tuple[tuple[float, ...], ...] | None = None  # [2][dim]: minimums, maximums

    @property
    def width(self) -> int:
        """Values stored a row: dim, or its bits packed into bytes."""
        return stored_width(self.dim, self.precision)

    @property
    def floats(self) -> bool:
        return self.precision in ("float32", "float16")

    def as_floats(self, values: np.ndarray) -> np.ndarray:
        """Stored values [rows, width] as approximate float vectors [rows, dim]."""
        return values if self.floats else dequantize(values, self.precision, self.dim, self.ranges)


def recorded_storage(output: str, manifest: Manifest) -> StoredVectors:
    """How the manifest says the output's vectors are stored; NotAFinishedRun if it does not say it coherently."""
    dim = recorded_dim(output, manifest)
    precision = manifest.settings.get("output_precision", "float32")
    ranges = manifest.settings.get(RANGES_SETTING)
    if precision not in OUTPUT_PRECISIONS or (precision in RANGED) != (ranges is not None):
        raise NotAFinishedRun(f"{join(output, SUCCESS_FILE)} records output_precision {precision!r} "
                              f"{'with' if ranges is not None else 'without'} quantize ranges")
    return StoredVectors(dim, precision, None if ranges is None else tuple(tuple(row) for row in json.loads(ranges)))


def check_embedding_type(file: str, embedding: pa.DataType, stored: StoredVectors) -> None:
    """Raise NotAFinishedRun unless a column of this type can hold the stored vectors (checkable from a footer).

    The job writes fixed_size_list<float32>[dim] (or its --output_precision's type and width); tools that
    rewrite Parquet write a variable-size list (DuckDB's `COPY ... TO` writes list<float>) or widen the values:
    any list of floats is read for float vectors, any list of integers for quantized ones.
    """
    listed = pa.types.is_fixed_size_list(embedding) or pa.types.is_list(embedding) or pa.types.is_large_list(
        embedding)
    wanted, kind = (pa.types.is_floating, "floats") if stored.floats else (pa.types.is_integer, "integers")
    if not listed or not wanted(embedding.value_type):
        held = f"lists of {embedding.value_type}" if listed else f"{embedding} values"
        raise NotAFinishedRun(f"{file}: the embedding column holds {held}, not lists of {kind}")
    if pa.types.is_fixed_size_list(embedding) and embedding.list_size != stored.width:
        raise NotAFinishedRun(f"{file}: its embeddings hold {embedding.list_size} values a row, but the output's "
                              f"{'dim' if stored.width == stored.dim else 'stored width'} is {stored.width}")


def embedding_values(file: str, embedding: pa.Array, stored: StoredVectors) -> np.ndarray:
    """A batch's embedding column as stored, [rows, width], in the column's own type.

    Raises NotAFinishedRun, naming the file, unless every row holds exactly width values and none is null:
    a ragged column cannot be a matrix, and reading it anyway would pair values with the wrong rows.
    """
    dim = stored.width
    check_embedding_type(file, embedding.type, stored)
    if embedding.null_count:
        raise NotAFinishedRun(f"{file}: {embedding.null_count} row(s) have a null embedding")
    if len(embedding) and not pa.types.is_fixed_size_list(embedding.type):
        lengths = pc.min_max(pc.list_value_length(embedding))
        shortest, longest = lengths["min"].as_py(), lengths["max"].as_py()
        if (shortest, longest) != (dim, dim):
            span = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
            raise NotAFinishedRun(f"{file}: its embeddings hold {span} values a row, but the output's dim is {dim}")
    values = embedding.flatten()  # only the rows of this slice of the column, nulls checked above
    if values.null_count:
        raise NotAFinishedRun(f"{file}: {values.null_count} null value(s) in its embeddings")
    values = values.to_numpy(zero_copy_only=False).reshape(len(embedding), dim)
    if not stored.floats:
        values = values.astype(value_type(stored.precision))  # a rewriting tool may have widened them
    return values


def embedding_vectors(file: str, embedding: pa.Array, stored: StoredVectors) -> np.ndarray:
    """A batch's embedding column as float vectors [rows, dim]: float ones in their own type (float16, float32 or
    float64), quantized ones as the middle of their steps or +1/-1 per bit (`encoders.quantize.dequantize`)."""
    return stored.as_floats(embedding_values(file, embedding, stored))
