"""Reading back a finished output of this job (for search and the report): its checked manifest, its files.

One set of checks and messages for every tool that reads an output: no `_SUCCESS` (with files under
_temporary/: a run still going or stopped), a `_SUCCESS` that is not our manifest, a listed file that
is gone. Local paths and everything Beam knows go through Beam's filesystems, other URLs (memory://,
...) through fsspec.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from pipeline.output import STAGING_DIR, SUCCESS_FILE
from pipeline.shards import beam_filesystem_knows, open_file

# Files looked at at once: on an object store each look is a round trip, so thousands of files need overlap.
LOOK_THREADS = 8
ROWS_PER_BATCH = 4096  # rows read at once: 4096 x 384 float32 is 6 MB


class NotAFinishedRun(Exception):
    """The path holds no finished output of this job (no `_SUCCESS`, not our manifest, or a listed file is gone)."""


def join(output: str, name: str) -> str:
    """A file of the output; output may be a local path or a URL."""
    return f"{output.rstrip('/')}/{name}"


def exists(path: str) -> bool:
    if beam_filesystem_knows(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    return fs.exists(inner)


def _has_files_under(directory: str) -> bool:
    if beam_filesystem_knows(directory):
        from apache_beam.io.filesystems import FileSystems

        return bool(FileSystems.match([join(directory, "*")])[0].metadata_list)
    import fsspec

    fs, inner = fsspec.core.url_to_fs(directory)
    return bool(fs.glob(join(inner, "*")))


def read_manifest(output: str) -> dict:
    """The output's `_SUCCESS` manifest; raises NotAFinishedRun unless it is one this job wrote."""
    success = join(output, SUCCESS_FILE)
    if not exists(success):
        if _has_files_under(join(output, STAGING_DIR)):
            raise NotAFinishedRun(f"{output} is not finished: {STAGING_DIR}/ holds files but there is no "
                                  f"{SUCCESS_FILE} (the job is still running or was stopped; rerun it)")
        raise NotAFinishedRun(f"{output} is not a finished output of this job: there is no {SUCCESS_FILE}")
    try:
        with open_file(success) as f:
            manifest = json.loads(f.read().decode("utf-8"))
        ok = (isinstance(manifest, dict) and isinstance(manifest.get("counts"), dict)
              and isinstance(manifest.get("settings"), dict) and isinstance(manifest.get("shards"), list)
              and isinstance(manifest.get("files"), dict) and isinstance(manifest["files"].get("embeddings"), list)
              and all(isinstance(name, str) for name in manifest["files"]["embeddings"]))
    except (OSError, ValueError) as exc:
        raise NotAFinishedRun(f"{success} cannot be read as this job's manifest ({exc})") from None
    if not ok:
        raise NotAFinishedRun(f"{success} is not this job's manifest (expected JSON with counts, settings, shards "
                              "and files)")
    return manifest


def embeddings_files(output: str, manifest: dict) -> tuple[str, ...]:
    """The paths of the embeddings files the manifest lists; NotAFinishedRun if one is gone."""
    files = tuple(join(output, name) for name in manifest["files"]["embeddings"])
    with ThreadPoolExecutor(max_workers=LOOK_THREADS) as pool:
        for file, found in zip(files, pool.map(exists, files), strict=True):
            if not found:
                raise NotAFinishedRun(f"{file} is listed in {SUCCESS_FILE} but missing")
    return files


def row_batches(file: str, columns: Sequence[str]) -> Iterator:
    """One embeddings file's rows, ROWS_PER_BATCH at a time, only these columns (so memory is bounded).

    Raises NotAFinishedRun when the file lacks one of them.
    """
    import pyarrow.parquet as pq

    with open_file(file) as f:
        parquet = pq.ParquetFile(f)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise NotAFinishedRun(f"{file} lacks the column(s) {', '.join(missing)}: not this job's output")
        yield from parquet.iter_batches(batch_size=ROWS_PER_BATCH, columns=list(columns))
