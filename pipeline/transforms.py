"""The job's DoFns: read shards into records, embed batches, write the manifest."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam
import zstandard
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from encoders import Embeddings, Encoder, EncoderSpec, build_encoder
from pipeline.manifest import ShardStats, build_manifest
from pipeline.output import embeddings_schema, embeddings_table
from pipeline.records import DeadLetter, LineFormat, Record, Skipped, parse_line, raw_preview
from pipeline.shards import Shard, open_shard

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "embedding_job"
DEAD_LETTERS = "dead_letters"
SHARD_STATS = "shard_stats"
EMBEDDED_PER_SHARD = "embedded_per_shard"


class ShardReadError(RuntimeError):
    """A whole shard cannot be read (corrupt compression, permissions): the job must fail."""


# What reading or decompressing a stream raises; anything else is a bug, not a bad shard.
_STREAM_ERRORS = (OSError, EOFError, ValueError, zstandard.ZstdError)


class ReadShard(beam.DoFn):
    """Stream one shard line by line into records; dead letters and stats go to tagged outputs.

    Lines are numbered, so a shard is read sequentially by one worker; parallelism comes
    from the number of shards and from everything downstream of the reshuffle.
    """

    def __init__(self, encoding: str, text_field: str, id_field: str | None) -> None:
        self._encoding = encoding
        self._text_field = text_field
        self._id_field = id_field
        self._lines = Metrics.counter(METRICS_NAMESPACE, "lines_read")

    def process(self, shard: Shard) -> Iterator:
        fmt = LineFormat(shard.format, self._encoding, self._text_field, self._id_field)
        read = skipped = 0
        try:
            with open_shard(shard.path) as stream:
                for raw in iter(stream.readline, b""):
                    read += 1
                    outcome = parse_line(raw.rstrip(b"\n").removesuffix(b"\r"), shard.name, read, fmt)
                    if isinstance(outcome, Record):
                        yield outcome
                    elif isinstance(outcome, DeadLetter):
                        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, outcome)
                    elif isinstance(outcome, Skipped):
                        skipped += 1
        except _STREAM_ERRORS as exc:
            raise ShardReadError(f"cannot read shard {shard.path}: {exc}") from exc
        self._lines.inc(read)
        yield beam.pvalue.TaggedOutput(SHARD_STATS, ShardStats(shard.name, read, skipped))


# One encoder per worker process, shared by all threads and bundles. We use a DoFn with
# shared.Shared rather than RunInference because we need per-record outputs (token
# counts, truncation, dead letters) and our own length-sorted token-budget batching;
# RunInference's TF handlers stack fixed-shape tensors and its weighted batching cannot
# be configured through a handler in Beam 2.77 (see NOTES.md).
_ENCODERS = shared.Shared()


class EmbedBatch(beam.DoFn):
    """Embed a list of records into one Arrow table; records that fail become dead letters."""

    def __init__(self, spec: EncoderSpec, metadata: dict[str, str]) -> None:
        self._spec = spec
        self._metadata = metadata
        self._encoder: Encoder | None = None
        self._embedded = Metrics.counter(METRICS_NAMESPACE, "texts_embedded")
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "texts_failed")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms")

    def setup(self) -> None:
        spec = self._spec
        self._encoder = _ENCODERS.acquire(lambda: build_encoder(spec), tag=spec)
        self._schema = embeddings_schema(spec.dim, self._metadata)

    def process(self, records: list[Record]) -> Iterator:
        start = time.perf_counter()
        good, results, dead_letters = self._encode(records)
        self._latency.update(int((time.perf_counter() - start) * 1000))
        if good:
            ids = [r.id for r in good]
            yield embeddings_table(ids, results.vectors, results.n_tokens, results.truncated, self._schema)
            self._embedded.inc(len(good))
            self._tokens.inc(int(results.n_tokens.sum()))
            for source, n in Counter(r.source for r in good).items():
                yield beam.pvalue.TaggedOutput(EMBEDDED_PER_SHARD, (source, n))
        for dead in dead_letters:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)

    def _encode(self, records: list[Record]) -> tuple[list[Record], Embeddings | None, list[DeadLetter]]:
        """Encode the batch; if it fails, retry record by record to isolate the bad ones."""
        try:
            return records, self._encoder.encode([r.text for r in records]), []
        except Exception:  # noqa: BLE001 - isolated below, each failure is recorded
            logger.warning("batch of %d failed; retrying records one by one", len(records), exc_info=True)
        good, dead_letters = [], []
        for record in records:
            try:
                self._encoder.encode([record.text])
                good.append(record)
            except Exception as exc:  # noqa: BLE001 - becomes a dead letter with its reason
                detail = f"{type(exc).__name__}: {exc}"
                raw = raw_preview(record.text.encode("utf-8"))
                dead_letters.append(
                    DeadLetter(record.source, record.line, "encode_error", detail, id=record.id, raw=raw)
                )
        results = self._encoder.encode([r.text for r in good]) if good else None
        return good, results, dead_letters


class WriteManifest(beam.DoFn):
    """Write `_SUCCESS` after every output file exists (its side inputs guarantee the order)."""

    def __init__(self, output: str, settings: dict, started_at: str) -> None:
        self._output = output
        self._settings = settings
        self._started_at = started_at

    def process(self, _, shard_stats, embedded, failed, parquet_files, failed_files) -> Iterator[dict]:
        files = {
            "embeddings": [_relative(self._output, f) for f in parquet_files],
            "failed": [_relative(self._output, f) for f in failed_files],
        }
        finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = build_manifest(
            shard_stats, embedded, failed, files, self._settings, self._started_at, finished_at
        )
        with FileSystems.create(FileSystems.join(self._output, "_SUCCESS")) as f:
            f.write(json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        yield manifest


def _relative(root: str, path: str) -> str:
    return path[len(root):].lstrip("/") if path.startswith(root) else path
