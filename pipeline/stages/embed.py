"""The embedding stage: encode each part with one shared encoder per worker process and stage its files.

We use a DoFn with `shared.Shared` rather than RunInference because we need per-record outputs
(token counts, truncation, dead letters) and our own length-sorted token-budget batching;
RunInference's TF handlers stack fixed-shape tensors and its weighted batching cannot be
configured through a handler in Beam 2.77 (docs/dependencies.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from encoders import Embeddings, Encoder, EncoderSpec, build_encoder
from pipeline.formats.kept_policy import KeptColumns
from pipeline.formats.manifest import PartStats
from pipeline.formats.output import embeddings_table, parquet_bytes, part_file_names, staged_name, write_file
from pipeline.formats.records import DeadLetter, raw_preview
from pipeline.formats.spill import Packed, Spilled
from pipeline.identity import identity_of
from pipeline.launch.progress import PROGRESS
from pipeline.settings import JobSettings
from pipeline.stages.decisions import text_hash
from pipeline.stages.read import METRICS_NAMESPACE, Part

logger = logging.getLogger(__name__)

# One encoder per worker process, shared by all threads and bundles.
_ENCODERS = shared.Shared()
# Groups a host thread tokenizes and pads ahead of the device (0: none, in series); bounds memory.
PREFETCH_GROUPS = 2


class EmbedParts(beam.PTransform):
    """Parts -> PartStats: each part embedded and its Parquet (and dead-letter) file staged.

    kept: a side input holding the run's `KeptColumns` (the output's extra columns). stashed: the parts arrive
    as where they wait (`pipeline.formats.spill.stash_one`, across a distributed runner's reshuffle), loaded in
    this step's own environment.
    """

    def __init__(self, spec: EncoderSpec, job: JobSettings, kept: beam.pvalue.AsSingleton,
                 stashed: bool = False) -> None:
        super().__init__()
        self._spec = spec
        self._job = job
        self._kept = kept
        self._stashed = stashed

    def expand(self, parts: beam.PCollection) -> beam.PCollection:
        if self._stashed:
            parts = parts | "Load" >> beam.Map(_load)
        return parts | "EmbedPart" >> beam.ParDo(_EmbedPartFn(self._spec, self._job), kept=self._kept)


def _load(stashed: Spilled | Packed) -> Part:
    return stashed.load()


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

    def __init__(self, spec: EncoderSpec, job: JobSettings) -> None:
        self._spec = spec  # resolved on the launcher, or once per worker process (`pipeline.identity`)
        self._job = job  # its output (where files are staged) and group_size
        self._schemas: dict[KeptColumns, pa.Schema] = {}
        self._shared: _SharedEncoder | None = None
        self._writes: _Writes | None = None
        self._texts = Metrics.counter(METRICS_NAMESPACE, "texts_embedded")
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "real_tokens")
        self._padded = Metrics.counter(METRICS_NAMESPACE, "padded_tokens")
        self._batches = Metrics.counter(METRICS_NAMESPACE, "batches")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "texts_failed")
        self._group_latency = Metrics.distribution(METRICS_NAMESPACE, "group_latency_ms")
        self._batch_latency = Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms")
        self._build_time = Metrics.distribution(METRICS_NAMESPACE, "encoder_build_ms")

    def setup(self) -> None:
        self._identity = identity_of(self._spec)  # may read a remote model's config, once per process
        spec = self._identity.spec
        built = []

        def build() -> _SharedEncoder:
            built.append(True)
            return _SharedEncoder(spec)

        self._shared = _ENCODERS.acquire(build, tag=spec)
        # Metrics updated in setup() are lost (docs/dependencies.md): the build is reported in process.
        self._report_build = bool(built)
        self._writes = _Writes(max_pending=2)

    def _schema(self, kept: KeptColumns) -> pa.Schema:
        if kept not in self._schemas:
            self._schemas[kept] = self._identity.schema(kept.output_fields(), self._shared.encoder.spec.precision)
        return self._schemas[kept]

    def process(self, part: Part, kept: KeptColumns) -> Iterator[PartStats]:
        schema = self._schema(kept)
        encoder = self._shared.encoder
        if self._report_build:
            self._build_time.update(int(encoder.build_seconds * 1000))
            self._report_build = False
        group_size = self._job.group_size
        spans = [(first, min(first + group_size, len(part.texts))) for first in range(0, len(part.texts), group_size)]
        tables = []
        dead_letters = list(part.dead_letters)
        real = padded = batches = embedded = 0
        seconds: Counter[str] = Counter()
        waited = time.perf_counter()
        results = encoder.encode_groups((part.texts[first:end] for first, end in spans), depth=PREFETCH_GROUPS)
        for (first, end), result in zip(spans, results, strict=True):
            if isinstance(result, Exception):
                logger.warning("group of %d failed; retrying records one by one", end - first, exc_info=result)
                embedded_at, result, failed = _isolate(encoder, part, range(first, end))
                dead_letters += failed
            else:
                embedded_at = range(first, end)
            now = time.perf_counter()
            self._group_latency.update(int((now - waited) * 1000))
            waited = now
            if result is None:
                continue
            seconds.update(result.seconds)
            started = time.perf_counter()
            ids = [part.ids[i] for i in embedded_at]
            texts = [part.texts[i] for i in embedded_at]
            extra = kept.arrays([part.kept[i] for i in embedded_at] if kept.fields else [], texts)
            stored = self._identity.stored(result.vectors)  # --output_precision
            tables.append(embeddings_table(ids, stored, result.n_tokens, result.truncated, result.n_chunks,
                                           [text_hash(t) for t in texts], schema, extra))
            seconds["arrow"] += time.perf_counter() - started
            group_real = int(result.n_tokens.sum())
            real += group_real
            padded += result.padded_tokens
            batches += result.batches
            embedded += len(ids)
            self._batch_latency.update(int(result.seconds.get("device", 0.0) * 1000 / max(result.batches, 1)))
            PROGRESS.add(texts=len(ids), tokens=group_real)
        self._texts.inc(embedded)
        self._tokens.inc(real)
        self._padded.inc(padded)
        self._batches.inc(batches)
        self._failed.inc(len(dead_letters) - len(part.dead_letters))
        stats = PartStats(
            source=part.source,
            part=part.part,
            embedded=embedded,
            failed=tuple(sorted(Counter(d.reason for d in dead_letters).items())),
            files=(),
            real_tokens=real,
            padded_tokens=padded,
            batches=batches,
            encode_seconds=sum(seconds[k] for k in ("device", "copy")),
            encoder_build=self._shared.build_id,
            process=self._shared.process_id,
            build_seconds=encoder.build_seconds,
            stage_seconds=tuple(sorted(seconds.items())),
            chosen=tuple(encoder.chosen.items()),
        )
        yield from self._stage(part, tables, dead_letters, stats, schema)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        # A part's stats are emitted once its files are written; the bundle ends when all are.
        for stats in self._writes.drain():
            yield WindowedValue(stats, MIN_TIMESTAMP, [GlobalWindow()])

    def teardown(self) -> None:
        if self._writes is not None:
            self._writes.close()

    def _stage(self, part: Part, tables: list, dead_letters: list[DeadLetter], stats: PartStats,
               schema: pa.Schema) -> list[PartStats]:
        """Hand the part's files to the writer thread; returns the stats of parts whose files are written.

        Parquet encoding and writing run while the next part is embedded; a failed write fails
        (and so retries) the bundle. Same part, same names and rows.
        """
        output = self._job.output
        embeddings_name, failed_name = part_file_names(part.shard_index, part.part)
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        files = [(FileSystems.join(output, staged_name(embeddings_name)), table)]
        if dead_letters:
            lines = "".join(d.to_json() + "\n" for d in sorted(dead_letters, key=lambda d: d.line))
            files.append((FileSystems.join(output, staged_name(failed_name)), lines.encode("utf-8")))
        names = (embeddings_name, failed_name) if dead_letters else (embeddings_name,)
        return self._writes.submit(files, dataclasses.replace(stats, files=names))


class _Writes:
    """One writer thread and the parts waiting for it: at most max_pending, which bounds memory."""

    def __init__(self, max_pending: int) -> None:
        self._max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-writer")
        self._pending: deque[tuple[Future, PartStats]] = deque()

    def submit(self, files: list[tuple[str, pa.Table | bytes]], stats: PartStats) -> list[PartStats]:
        """Queue a part's files; returns the stats of earlier parts now written (waits while too many are queued)."""
        self._pending.append((self._executor.submit(_write_files, files), stats))
        done = []
        while self._pending and (len(self._pending) > self._max_pending or self._pending[0][0].done()):
            done.append(self._finish(*self._pending.popleft()))
        return done

    def drain(self) -> list[PartStats]:
        """Wait for every queued part; their stats, in order. Raises what a write raised."""
        done = []
        while self._pending:
            done.append(self._finish(*self._pending.popleft()))
        return done

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    @staticmethod
    def _finish(future: Future, stats: PartStats) -> PartStats:
        seconds = dict(stats.stage_seconds)
        seconds["parquet"] = seconds.get("parquet", 0.0) + future.result()
        return dataclasses.replace(stats, stage_seconds=tuple(sorted(seconds.items())))


def _write_files(files: list[tuple[str, pa.Table | bytes]]) -> float:
    """Encode (tables as Parquet) and write; returns the seconds it took."""
    started = time.perf_counter()
    for path, content in files:
        write_file(path, parquet_bytes(content) if isinstance(content, pa.Table) else content)
    return time.perf_counter() - started


def _isolate(encoder: Encoder, part: Part, positions: range) -> tuple[list[int], Embeddings | None, list[DeadLetter]]:
    """Encode a failed group's records one by one: (positions embedded, their results, dead letters)."""
    kept, results, dead_letters = [], [], []
    for i in positions:
        try:
            results.append(encoder.encode([part.texts[i]]))
            kept.append(i)
        except Exception as exc:  # noqa: BLE001 - becomes a dead letter with its reason
            detail = f"{type(exc).__name__}: {exc}"
            raw = raw_preview(part.texts[i].encode("utf-8"))
            dead_letters.append(DeadLetter(part.source, part.lines[i], "encode_error", detail, id=part.ids[i], raw=raw))
    if not kept:
        return [], None, dead_letters
    combined = Embeddings(
        np.concatenate([r.vectors for r in results]),
        np.concatenate([r.n_tokens for r in results]),
        np.concatenate([r.truncated for r in results]),
        sum(r.padded_tokens for r in results),
        sum(r.batches for r in results),
        np.concatenate([r.n_chunks for r in results]),
        dict(sum((Counter(r.seconds) for r in results), Counter())),
    )
    return kept, combined, dead_letters
