"""The job's DoFns: read shards into records, embed groups of records, write the manifest."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import zstandard
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from encoders import Embeddings, Encoder, EncoderSpec, build_encoder
from pipeline.manifest import EmbedStats, ShardStats, build_manifest
from pipeline.output import SUCCESS_FILE, embeddings_schema, embeddings_table
from pipeline.progress import PROGRESS
from pipeline.readers import read_records
from pipeline.records import DeadLetter, InputFormat, Record, raw_preview
from pipeline.shards import Shard, open_shard

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "embedding_job"
DEAD_LETTERS = "dead_letters"
SHARD_STATS = "shard_stats"
EMBED_STATS = "embed_stats"


class ShardReadError(RuntimeError):
    """A whole shard cannot be read (corrupt compression, permissions): the job must fail."""


# What reading or decompressing a stream raises; anything else is a bug, not a bad shard.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zstandard.ZstdError)


@dataclass(frozen=True)
class ProgressSettings:
    """How workers report progress, and the total input size it is measured against."""

    mode: str = "off"
    total_bytes: int = 0


class ReadShard(beam.DoFn):
    """Stream one shard record by record; dead letters and stats go to tagged outputs.

    Records are numbered, so a shard is read sequentially by one worker; parallelism comes
    from the number of shards (and, on distributed runners, from the reshuffle after this).
    """

    def __init__(self, input_format: InputFormat, progress: ProgressSettings) -> None:
        self._input_format = input_format
        self._progress = progress
        self._lines = Metrics.counter(METRICS_NAMESPACE, "lines_read")

    def setup(self) -> None:
        PROGRESS.start(self._progress.mode, self._progress.total_bytes)

    def process(self, shard: Shard) -> Iterator:
        fmt = dataclasses.replace(self._input_format, format=shard.format)
        read = skipped = removed = 0
        try:
            stream, raw_stream = open_shard(shard.path)
            position = 0
            with stream:
                for outcome in read_records(stream, shard.name, fmt):
                    read += 1
                    if isinstance(outcome, Record):
                        removed += outcome.removed_chars
                        yield outcome
                    elif isinstance(outcome, DeadLetter):
                        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, outcome)
                    else:
                        removed += outcome.removed_chars
                        skipped += 1
                    if read % 1000 == 0:
                        position = self._report_position(raw_stream, position)
                self._report_position(raw_stream, position, at_end=shard.size)
        except _STREAM_ERRORS as exc:
            raise ShardReadError(f"cannot read shard {shard.path}: {exc}") from exc
        self._lines.inc(read)
        yield beam.pvalue.TaggedOutput(SHARD_STATS, ShardStats(shard.name, read, skipped, removed))

    @staticmethod
    def _report_position(raw_stream, previous: int, at_end: int | None = None) -> int:
        try:
            position = at_end if at_end is not None else raw_stream.tell()
        except (OSError, ValueError, AttributeError):
            return previous
        PROGRESS.add(bytes_read=max(position - previous, 0))
        return position


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


class EmbedBatch(beam.DoFn):
    """Embed a group of records into one Arrow table; records that fail become dead letters.

    The encoder sorts the group by token length and cuts it into batches by token budget,
    so larger groups mean less padding; the group size bounds the memory it holds.
    """

    def __init__(self, spec: EncoderSpec, metadata: dict[str, str]) -> None:
        self._spec = spec
        self._metadata = metadata
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
        spec = self._spec
        built = []

        def build() -> _SharedEncoder:
            built.append(True)
            return _SharedEncoder(spec)

        self._shared = _ENCODERS.acquire(build, tag=spec)
        self._report_build = bool(built)  # metrics from setup() are lost (NOTES.md): report in process
        self._schema = embeddings_schema(spec.dim, self._metadata)

    def process(self, records: list[Record]) -> Iterator:
        encoder = self._shared.encoder
        if self._report_build:
            self._build_time.update(int(encoder.build_seconds * 1000))
            self._report_build = False
        start = time.perf_counter()
        good, results, dead_letters = self._encode(encoder, records)
        seconds = time.perf_counter() - start
        self._group_latency.update(int(seconds * 1000))
        real = padded = batches = 0
        if good:
            ids = [r.id for r in good]
            yield embeddings_table(ids, results.vectors, results.n_tokens, results.truncated, self._schema)
            real, padded, batches = int(results.n_tokens.sum()), results.padded_tokens, results.batches
            self._texts.inc(len(good))
            self._tokens.inc(real)
            self._padded.inc(padded)
            self._batches.inc(batches)
            self._batch_latency.update(int(seconds * 1000 / max(batches, 1)))
            PROGRESS.add(texts=len(good), tokens=real)
        yield beam.pvalue.TaggedOutput(
            EMBED_STATS,
            EmbedStats(
                embedded=tuple(Counter(r.source for r in good).items()),
                real_tokens=real,
                padded_tokens=padded,
                batches=batches,
                encode_seconds=seconds,
                encoder_build=self._shared.build_id,
                process=self._shared.process_id,
                build_seconds=encoder.build_seconds,
            ),
        )
        for dead in dead_letters:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)

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
        )
        return good, combined, dead_letters


class WriteManifest(beam.DoFn):
    """Write `_SUCCESS` after every output file exists (its side inputs guarantee the order)."""

    def __init__(self, output: str, settings: dict, started_at: float) -> None:
        self._output = output
        self._settings = settings
        self._started_at = started_at

    def process(self, _, shard_stats, embed_stats, failed, parquet_files, failed_files) -> Iterator[dict]:
        files = {
            "embeddings": [_relative(self._output, f) for f in parquet_files],
            "failed": [_relative(self._output, f) for f in failed_files],
        }
        manifest = build_manifest(
            shard_stats, embed_stats, failed, files, self._settings, self._started_at, time.time()
        )
        with FileSystems.create(FileSystems.join(self._output, SUCCESS_FILE)) as f:
            f.write(json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        yield manifest


def _relative(root: str, path: str) -> str:
    return path[len(root):].lstrip("/") if path.startswith(root) else path
