"""The embedding stage: encode each part with one shared encoder per worker process and stage its files.

We use a DoFn with `shared.Shared` rather than RunInference because we need per-record outputs
(token counts, truncation, dead letters) and our own length-sorted token-budget batching;
RunInference's TF handlers stack fixed-shape tensors and its weighted batching cannot be
configured through a handler in Beam 2.77 (docs/dependencies.md).
"""

from __future__ import annotations

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
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from encoders import Embeddings, Encoder, EncoderSpec, build_encoder, resolved_once
from pipeline.incremental import text_hash
from pipeline.manifest import PartStats
from pipeline.output import embeddings_table, output_schema, parquet_bytes, part_file_names, staged_name, write_file
from pipeline.progress import PROGRESS
from pipeline.read import METRICS_NAMESPACE, Part
from pipeline.records import DeadLetter, Record, raw_preview

logger = logging.getLogger(__name__)

# One encoder per worker process, shared by all threads and bundles.
_ENCODERS = shared.Shared()


@dataclass(frozen=True)
class Staging:
    """Where a part's files wait for the commit, and how many records are encoded together."""

    output: str
    group_size: int  # records sorted together before batching; bounds worker memory


class EmbedParts(beam.PTransform):
    """Parts -> PartStats: each part embedded and its Parquet (and dead-letter) file staged."""

    def __init__(self, encoder: EncoderSpec, staging: Staging) -> None:
        super().__init__()
        self._encoder = encoder
        self._staging = staging

    def expand(self, parts: beam.PCollection) -> beam.PCollection:
        return parts | "EmbedPart" >> beam.ParDo(_EmbedPartFn(self._encoder, self._staging))


class _SharedEncoder:
    """What the shared handle holds: the encoder and an id that tells one build from another."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.encoder = build_encoder(spec)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        self.build_id = f"{self.process_id}:{uuid.uuid4().hex[:8]}"


class _EmbedPartFn(beam.DoFn):
    """Embed one part and stage its files; yields the part's PartStats.

    The encoder sorts each group of records by token length and cuts it into batches by
    token budget, so larger groups mean less padding; the group size bounds the memory it holds.
    """

    def __init__(self, encoder: EncoderSpec, staging: Staging) -> None:
        self._spec = encoder
        self._staging = staging
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
        spec = resolved_once(self._spec)  # on a worker this may read a remote model's config, once per process
        built = []

        def build() -> _SharedEncoder:
            built.append(True)
            return _SharedEncoder(spec)

        self._shared = _ENCODERS.acquire(build, tag=spec)
        # Metrics updated in setup() are lost (docs/dependencies.md): the build is reported in process.
        self._report_build = bool(built)
        self._schema = output_schema(spec)

    def process(self, part: Part) -> Iterator[PartStats]:
        encoder = self._shared.encoder
        if self._report_build:
            self._build_time.update(int(encoder.build_seconds * 1000))
            self._report_build = False
        group_size = self._staging.group_size
        tables = []
        dead_letters = list(part.dead_letters)
        real = padded = batches = embedded = 0
        seconds = 0.0
        for first in range(0, len(part.records), group_size):
            group = list(part.records[first:first + group_size])
            start = time.perf_counter()
            good, results, failed = _encode(encoder, group)
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
        output = self._staging.output
        embeddings_name, failed_name = part_file_names(part.shard_index, part.part)
        table = pa.concat_tables(tables) if tables else self._schema.empty_table()
        write_file(FileSystems.join(output, staged_name(embeddings_name)), parquet_bytes(table))
        if not dead_letters:
            return (embeddings_name,)
        lines = "".join(d.to_json() + "\n" for d in sorted(dead_letters, key=lambda d: d.line))
        write_file(FileSystems.join(output, staged_name(failed_name)), lines.encode("utf-8"))
        return embeddings_name, failed_name


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
            dead_letters.append(DeadLetter(record.source, record.line, "encode_error", detail, id=record.id, raw=raw))
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
