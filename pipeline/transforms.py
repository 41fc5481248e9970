"""The job's DoFns: read shards into parts, embed and stage each part, commit the output."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from encoders import Embeddings, Encoder, EncoderSpec, build_encoder
from pipeline.incremental import NEW, OLD, REUSED, resolve_id, text_hash
from pipeline.manifest import PartStats, ShardStats, build_manifest, incremental_summary
from pipeline.output import (
    EMBEDDINGS_SUFFIX,
    FAILED_DIR,
    STAGING_DIR,
    SUCCESS_FILE,
    clear_previous_output,
    embeddings_schema,
    embeddings_table,
    parquet_bytes,
    part_file_names,
    reused_file_name,
    staged_name,
)
from pipeline.progress import PROGRESS
from pipeline.readers import read_records
from pipeline.records import DeadLetter, InputFormat, Record, raw_preview
from pipeline.shards import Shard, match_shards, open_shard

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "embedding_job"
SHARD_STATS = "shard_stats"
COPIES = "copies"
EXISTING_STATS = "existing_stats"


class ShardReadError(RuntimeError):
    """A whole shard cannot be read (corrupt compression, permissions): the job must fail."""


# What reading or decompressing a stream raises; anything else is a bug, not a bad shard.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zstandard.ZstdError)


def _shard_outcomes(shard: Shard, fmt: InputFormat) -> Iterator[tuple[object, object]]:
    """(outcome, raw stream) for every record of a shard; a stream that cannot be read fails the job, named."""
    try:
        stream, raw_stream = open_shard(shard.path)
        with stream:
            for outcome in read_records(stream, shard.name, fmt):
                yield outcome, raw_stream
    except _STREAM_ERRORS as exc:
        raise ShardReadError(f"cannot read shard {shard.path}: {exc}") from exc


@dataclass(frozen=True)
class ProgressSettings:
    """How workers report progress, and the total input size it is measured against."""

    mode: str = "off"
    total_bytes: int = 0


@dataclass(frozen=True)
class Part:
    """A run of consecutive records of one shard: the unit embedded, written and retried together."""

    shard_index: int  # position of the shard in the sorted input list
    source: str
    part: int
    records: tuple[Record, ...]
    dead_letters: tuple[DeadLetter, ...]  # what the reader rejected in the same stretch


@dataclass(frozen=True)
class PartLimits:
    """Where the reader cuts a shard into parts: bounds a part's file size and a worker's memory."""

    records: int = 10_000
    chars: int = 32_000_000


class ReadShard(beam.DoFn):
    """Stream one shard record by record and cut it into Parts; shard stats go to a tagged output.

    Records are numbered, so a shard is read sequentially by one worker; parallelism comes
    from the number of shards (and, on distributed runners, from the reshuffle after this).
    A shard always yields at least one part (possibly empty), so it always has a file.
    """

    def __init__(self, input_format: InputFormat, progress: ProgressSettings, limits: PartLimits) -> None:
        self._input_format = input_format
        self._progress = progress
        self._limits = limits
        self._lines = Metrics.counter(METRICS_NAMESPACE, "lines_read")

    def setup(self) -> None:
        PROGRESS.start(self._progress.mode, self._progress.total_bytes)

    def process(self, element: tuple[int, Shard, Mapping | None], ready: object = None) -> Iterator:
        """element: (shard index, shard, {line: decision} from duplicate and reuse detection, or None)."""
        shard_index, shard, decisions = element
        fmt = dataclasses.replace(self._input_format, format=shard.format)
        read = skipped = removed = parts = chars = reused = 0
        records: list[Record] = []
        dead: list[DeadLetter] = []

        def cut() -> Part:
            nonlocal parts, chars
            part = Part(shard_index, shard.name, parts, tuple(records), tuple(dead))
            records.clear()
            dead.clear()
            parts += 1
            chars = 0
            return part

        position = 0
        raw_stream = None
        for outcome, raw_stream in _shard_outcomes(shard, fmt):
            read += 1
            decision = decisions.get(outcome.line) if decisions else None
            if decision is not None and isinstance(outcome, Record):
                removed += outcome.removed_chars
                if decision[0] == REUSED:
                    reused += 1
                else:
                    dead.append(_duplicate(outcome, decision[1:]))
            elif isinstance(outcome, Record):
                removed += outcome.removed_chars
                records.append(outcome)
                chars += len(outcome.text)
            elif isinstance(outcome, DeadLetter):
                dead.append(outcome)
                chars += len(outcome.raw or "")
            else:
                removed += outcome.removed_chars
                skipped += 1
            if len(records) + len(dead) >= self._limits.records or chars >= self._limits.chars:
                yield cut()
            if read % 1000 == 0:
                position = self._report_position(raw_stream, position)
        self._report_position(raw_stream, position, at_end=shard.size)
        if records or dead or parts == 0:
            yield cut()
        self._lines.inc(read)
        yield beam.pvalue.TaggedOutput(SHARD_STATS, ShardStats(shard.name, read, skipped, removed, parts, reused))

    @staticmethod
    def _report_position(raw_stream, previous: int, at_end: int | None = None) -> int:
        try:
            position = at_end if at_end is not None else raw_stream.tell()
        except (OSError, ValueError, AttributeError):
            return previous
        PROGRESS.add(bytes_read=max(position - previous, 0))
        return position


class ListShards(beam.DoFn):
    """The job's first step when the launcher did not list the inputs: (index, Shard) of every match."""

    def __init__(self, inputs: tuple[str, ...], fmt: str) -> None:
        self._inputs = inputs
        self._format = fmt

    def process(self, _) -> Iterator[tuple[int, Shard]]:
        shards = match_shards(self._inputs, self._format)
        logger.info("%d shards match %s", len(shards), ", ".join(self._inputs))
        yield from enumerate(shards)


class PrepareOutput(beam.DoFn):
    """Refuse a finished run of other settings (unless --overwrite), then clean the output; before any write."""

    def __init__(self, config) -> None:
        self._config = config

    def process(self, _) -> Iterator[bool]:
        from pipeline.config import check_previous_run

        if not self._config.overwrite:
            check_previous_run(self._config)
        clear_previous_output(self._config.output)
        yield True


def _duplicate(record: Record, first: tuple[str, int]) -> DeadLetter:
    detail = f"id {record.id!r} was first seen at {first[0]}:{first[1]}, which is embedded"
    return DeadLetter(record.source, record.line, "duplicate_id", detail, id=record.id,
                      raw=raw_preview(record.text.encode("utf-8")))


class ReadKeys(beam.DoFn):
    """(id, (NEW, shard index, source, line, text hash)) of every record a shard would embed.

    The input to duplicate detection and reuse: a few dozen bytes per record, never the text.
    """

    def __init__(self, input_format: InputFormat) -> None:
        self._input_format = input_format

    def process(self, element: tuple[int, Shard]) -> Iterator[tuple[str, tuple]]:
        shard_index, shard = element
        fmt = dataclasses.replace(self._input_format, format=shard.format)
        for outcome, _ in _shard_outcomes(shard, fmt):
            if isinstance(outcome, Record):
                yield outcome.id, (NEW, shard_index, outcome.source, outcome.line, text_hash(outcome.text))


class ResolveIds(beam.DoFn):
    """Per id: decisions (duplicate, reused) keyed by (source, line); reused rows to copy go to COPIES."""

    def process(self, element: tuple[str, Iterable[tuple]]) -> Iterator:
        record_id, values = element
        for kind, value in resolve_id(record_id, values):
            yield value if kind == "decision" else beam.pvalue.TaggedOutput(COPIES, value)


class ListExisting(beam.DoFn):
    """(index, path) of every earlier output file matching --skip_existing, in sorted order."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern

    def process(self, _) -> Iterator[tuple[int, str]]:
        matched = FileSystems.match([self._pattern])[0].metadata_list
        paths = sorted(m.path for m in matched if m.path.endswith(EMBEDDINGS_SUFFIX))
        logger.info("%d earlier output files match %s", len(paths), self._pattern)
        yield from enumerate(paths)


class ReadExistingKeys(beam.DoFn):
    """(id, (OLD, file index, path, text hash)) of an earlier file made under the same fingerprint.

    Every file also reports (path, same fingerprint?, rows) to EXISTING_STATS, so the manifest
    can say why nothing was reused.
    """

    def __init__(self, config) -> None:
        self._config = config

    def setup(self) -> None:
        self._fingerprint = self._config.fingerprint

    def process(self, element: tuple[int, str]) -> Iterator:
        import pyarrow.parquet as pq

        index, path = element
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            parquet = pq.ParquetFile(f)
            metadata = parquet.schema_arrow.metadata or {}
            same = metadata.get(b"model_fingerprint", b"").decode() == self._fingerprint
            same = same and "text_hash" in parquet.schema_arrow.names
            yield beam.pvalue.TaggedOutput(EXISTING_STATS, (path, same, parquet.metadata.num_rows))
            if not same:
                return
            for batch in parquet.iter_batches(columns=["id", "text_hash"]):
                for record_id, digest in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                    yield record_id, (OLD, index, path, digest)


class CopyReused(beam.DoFn):
    """--snapshot: copy the reused rows of one earlier file into this run's output (staged, deterministic name)."""

    def __init__(self, config) -> None:
        self._config = config
        self._output = config.output

    def setup(self) -> None:
        self._schema = embeddings_schema(self._config.encoder.dim, self._config.file_metadata())

    def process(
        self, element: tuple[tuple[int, str], Iterable[str]], ready: object = None
    ) -> Iterator[tuple[str, int]]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        (index, path), ids = element
        wanted = pa.array(sorted(set(ids)), type=pa.string())
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            table = pq.read_table(f)
        rows = table.filter(pc.is_in(table.column("id"), value_set=wanted))
        rows = pa.Table.from_arrays([rows.column(n) for n in self._schema.names], schema=self._schema)
        name = reused_file_name(index)
        _write(FileSystems.join(self._output, staged_name(name)), parquet_bytes(rows))
        yield name, rows.num_rows


# One encoder per worker process, shared by all threads and bundles. We use a DoFn with
# shared.Shared rather than RunInference because we need per-record outputs (token
# counts, truncation, dead letters) and our own length-sorted token-budget batching;
# RunInference's TF handlers stack fixed-shape tensors and its weighted batching cannot
# be configured through a handler in Beam 2.77 (see NOTES.md).
_ENCODERS = shared.Shared()


class _SharedEncoder:
    """What the shared handle holds: the encoder and an id that tells one build from another."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.encoder = build_encoder(spec)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        self.build_id = f"{self.process_id}:{uuid.uuid4().hex[:8]}"


class EmbedPart(beam.DoFn):
    """Embed one part and stage its Parquet file (and its dead letters); yields the part's PartStats.

    The encoder sorts each group of records by token length and cuts it into batches by
    token budget, so larger groups mean less padding; the group size bounds the memory it holds.
    """

    def __init__(self, config) -> None:
        self._config = config
        self._output = config.output
        self._group_size = config.group_size
        self._shared: _SharedEncoder | None = None
        self._texts = Metrics.counter(METRICS_NAMESPACE, "texts_embedded")
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "real_tokens")
        self._padded = Metrics.counter(METRICS_NAMESPACE, "padded_tokens")
        self._batches = Metrics.counter(METRICS_NAMESPACE, "batches")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "texts_failed")
        self._group_latency = Metrics.distribution(METRICS_NAMESPACE, "group_latency_ms")
        self._batch_latency = Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms")
        self._build_time = Metrics.distribution(METRICS_NAMESPACE, "encoder_build_ms")

    def setup(self) -> None:
        spec = self._config.encoder  # on a worker this may read a remote model's config, once per process
        built = []

        def build() -> _SharedEncoder:
            built.append(True)
            return _SharedEncoder(spec)

        self._shared = _ENCODERS.acquire(build, tag=spec)
        self._report_build = bool(built)  # metrics from setup() are lost (NOTES.md): report in process
        self._schema = embeddings_schema(spec.dim, self._config.file_metadata())

    def process(self, part: Part) -> Iterator[PartStats]:
        encoder = self._shared.encoder
        if self._report_build:
            self._build_time.update(int(encoder.build_seconds * 1000))
            self._report_build = False
        tables = []
        dead_letters = list(part.dead_letters)
        real = padded = batches = embedded = 0
        seconds = 0.0
        for first in range(0, len(part.records), self._group_size):
            group = list(part.records[first:first + self._group_size])
            start = time.perf_counter()
            good, results, failed = self._encode(encoder, group)
            elapsed = time.perf_counter() - start
            seconds += elapsed
            self._group_latency.update(int(elapsed * 1000))
            dead_letters += failed
            if not good:
                continue
            ids = [r.id for r in good]
            hashes = [text_hash(r.text) for r in good]
            tables.append(embeddings_table(
                ids, results.vectors, results.n_tokens, results.truncated, results.n_chunks, hashes, self._schema
            ))
            group_real = int(results.n_tokens.sum())
            real += group_real
            padded += results.padded_tokens
            batches += results.batches
            embedded += len(good)
            self._batch_latency.update(int(elapsed * 1000 / max(results.batches, 1)))
            PROGRESS.add(texts=len(good), tokens=group_real)
        self._texts.inc(embedded)
        self._tokens.inc(real)
        self._padded.inc(padded)
        self._batches.inc(batches)
        self._failed.inc(len(dead_letters) - len(part.dead_letters))
        files = self._stage(part, tables, dead_letters)
        yield PartStats(
            source=part.source,
            part=part.part,
            embedded=embedded,
            failed=tuple(sorted(Counter(d.reason for d in dead_letters).items())),
            files=files,
            real_tokens=real,
            padded_tokens=padded,
            batches=batches,
            encode_seconds=seconds,
            encoder_build=self._shared.build_id,
            process=self._shared.process_id,
            build_seconds=encoder.build_seconds,
        )

    def _stage(self, part: Part, tables: list, dead_letters: list[DeadLetter]) -> tuple[str, ...]:
        """Write the part's files under the staging directory; same part, same names and bytes."""
        embeddings_name, failed_name = part_file_names(part.shard_index, part.part)
        table = pa.concat_tables(tables) if tables else self._schema.empty_table()
        _write(FileSystems.join(self._output, staged_name(embeddings_name)), parquet_bytes(table))
        if not dead_letters:
            return (embeddings_name,)
        lines = "".join(d.to_json() + "\n" for d in sorted(dead_letters, key=lambda d: d.line))
        _write(FileSystems.join(self._output, staged_name(failed_name)), lines.encode("utf-8"))
        return embeddings_name, failed_name

    @staticmethod
    def _encode(encoder: Encoder, records: list[Record]) -> tuple[list[Record], Embeddings | None, list[DeadLetter]]:
        """Encode the group; if it fails, retry record by record to isolate the bad ones."""
        try:
            return records, encoder.encode([r.text for r in records]), []
        except Exception:  # noqa: BLE001 - isolated below, each failure is recorded
            logger.warning("group of %d failed; retrying records one by one", len(records), exc_info=True)
        good, results, dead_letters = [], [], []
        for record in records:
            try:
                results.append(encoder.encode([record.text]))
                good.append(record)
            except Exception as exc:  # noqa: BLE001 - becomes a dead letter with its reason
                detail = f"{type(exc).__name__}: {exc}"
                raw = raw_preview(record.text.encode("utf-8"))
                dead_letters.append(
                    DeadLetter(record.source, record.line, "encode_error", detail, id=record.id, raw=raw)
                )
        if not good:
            return [], None, dead_letters
        combined = Embeddings(
            np.concatenate([r.vectors for r in results]),
            np.concatenate([r.n_tokens for r in results]),
            np.concatenate([r.truncated for r in results]),
            sum(r.padded_tokens for r in results),
            sum(r.batches for r in results),
            np.concatenate([r.n_chunks for r in results]),
        )
        return good, combined, dead_letters


class CommitOutput(beam.DoFn):
    """Check the counts, move every staged file into place, then write `_SUCCESS` last.

    Runs once, after every part is staged (its side inputs guarantee the order). A job that
    dies before or during this step leaves no `_SUCCESS`; the next run starts by cleaning up.
    """

    def __init__(self, config, started_at: float) -> None:
        self._config = config
        self._output = config.output
        self._started_at = started_at
        self._skip_existing = config.skip_existing
        self._snapshot = config.snapshot

    def process(self, _, shard_stats, part_stats, existing=(), copied=()) -> Iterator[dict]:
        join = FileSystems.join
        incremental = None
        if self._skip_existing:
            incremental = incremental_summary(self._skip_existing, existing, self._snapshot, copied)
        settings = self._config.settings()
        manifest = build_manifest(shard_stats, part_stats, settings, self._started_at, time.time(), incremental)
        names = [n for kind in ("embeddings", "failed") for n in manifest["files"][kind]]
        if manifest["files"]["failed"]:
            try:
                FileSystems.mkdirs(join(self._output, FAILED_DIR))
            except OSError:
                pass  # it exists (object stores have no directories and ignore this)
        if names:
            FileSystems.rename(
                [join(self._output, staged_name(n)) for n in names], [join(self._output, n) for n in names]
            )
        _write(join(self._output, SUCCESS_FILE), json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        staging = join(self._output, STAGING_DIR)
        leftovers = [m.path for m in FileSystems.match([join(staging, "*")])[0].metadata_list]
        if FileSystems.exists(staging):  # a local directory; object stores have none
            leftovers.append(staging)
        if leftovers:
            FileSystems.delete(leftovers)
        yield manifest


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
