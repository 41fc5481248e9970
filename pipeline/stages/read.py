"""The reading stage: list the input shards, read each into parts of records, count what each shard held."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.formats.arrow_rows import ArrowRows, concat_rows
from pipeline.formats.kept_policy import KeptColumns
from pipeline.formats.manifest import ShardStats
from pipeline.formats.readers import shard_outcomes
from pipeline.formats.records import DeadLetter, InputFormat, Record, Unread, kept_chars, text_preview
from pipeline.formats.shards import Shard
from pipeline.launch.progress import PROGRESS
from pipeline.preflight import list_shards
from pipeline.settings import JobSettings
from pipeline.stages.decisions import Decision, Duplicate, Reused
from pipeline.stages.metrics import METRICS_NAMESPACE

logger = logging.getLogger(__name__)

SHARD_STATS = "shard_stats"
REUSED_ROWS = "reused_rows"


@dataclass(frozen=True)
class ProgressSettings:
    """How workers report progress, and the total input size it is measured against."""

    mode: str = "off"
    total_bytes: int = 0


@dataclass(frozen=True)
class Part:
    """A run of consecutive records of one shard: the unit embedded, written and retried together.

    Columns rather than record objects: the embedding stage wants the texts as one list.
    """

    shard_index: int  # position of the shard in the sorted input list
    source: str
    part: int
    ids: tuple[str, ...]
    texts: tuple[str, ...]  # as embedded (normalised)
    lines: tuple[int, ...]  # line or row number of each record in its shard
    dead_letters: tuple[DeadLetter, ...]  # what the reader rejected in the same stretch
    # Per record, its --keep_fields values as their columns hold them; a Parquet shard's as one Arrow batch.
    kept: tuple[tuple, ...] | ArrowRows = ()


@dataclass(frozen=True)
class PartLimits:
    """Where the reader cuts a shard into parts: bounds a part's file size and a worker's memory."""

    records: int = 10_000
    chars: int = 32_000_000


class ListShards(beam.PTransform):
    """(index, Shard) of every input shard, spread over workers.

    Listed on the launcher for local runs (shards given); otherwise by the job's first step on a
    worker, with the same checks (`pipeline.preflight.list_shards`).
    """

    def __init__(self, job: JobSettings, shards: tuple[Shard, ...] | None) -> None:
        super().__init__()
        self._job = job
        self._shards = shards

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._shards is not None:
            listed = pbegin | "Shards" >> beam.Create(list(enumerate(self._shards)))
        else:
            listed = pbegin | "Start" >> beam.Create([None]) | "List" >> beam.ParDo(_ListShardsFn(self._job))
        return listed | "Spread" >> beam.Reshuffle()


class _ListShardsFn(beam.DoFn):
    def __init__(self, job: JobSettings) -> None:
        self._job = job

    def process(self, _) -> Iterator[tuple[int, Shard]]:
        shards = list_shards(self._job)
        logger.info("%d shards match %s", len(shards), ", ".join(self._job.inputs))
        yield from enumerate(shards)


class ReadParts(beam.PTransform):
    """(shard index, Shard, decisions or None) -> Parts (main), ShardStats (tag SHARD_STATS), reused rows.

    decisions, {line: decision} from `pipeline.stages.keys`, leave out reused records (not parsed again where
    nothing of them is kept) and turn later
    occurrences of an id into dead letters. kept is a side input holding the run's `KeptColumns`
    (`pipeline.stages.kept.DecideKeptColumns`). With reused_rows (--snapshot with kept columns), each reused
    record's own values go to REUSED_ROWS as (id, (kept values, text)): its copy takes them from this
    run's input. `ready`, when given, is a side input the reading waits for (the output prepared by a worker).
    """

    def __init__(self, job: JobSettings, progress: ProgressSettings, kept: beam.pvalue.AsSingleton,
                 reused_rows: bool = False, ready: beam.pvalue.AsSingleton | None = None) -> None:
        super().__init__()
        self._fn = _ReadShardFn(job.input_format(), progress, PartLimits(job.records_per_file), reused_rows)
        self._side_inputs = {"kept": kept, **({"ready": ready} if ready is not None else {})}

    def expand(self, shards: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        read = beam.ParDo(self._fn, **self._side_inputs).with_outputs(SHARD_STATS, REUSED_ROWS, main="parts")
        return shards | "ReadShard" >> read


class _ReadShardFn(beam.DoFn):
    """Stream one shard record by record and cut it into Parts; shard stats go to a tagged output.

    Records are numbered, so a shard is read sequentially by one worker; parallelism comes
    from the number of shards (and, on distributed runners, from the reshuffle after this).
    A shard always yields at least one part (possibly empty), so it always has a file.
    """

    def __init__(self, input_format: InputFormat, progress: ProgressSettings, limits: PartLimits,
                 reused_rows: bool) -> None:
        self._input_format = input_format
        self._progress = progress
        self._limits = limits
        self._reused_rows = reused_rows
        self._lines = Metrics.counter(METRICS_NAMESPACE, "lines_read")

    def setup(self) -> None:
        PROGRESS.start(self._progress.mode, self._progress.total_bytes)

    def process(self, element: tuple[int, Shard, Mapping[int, Decision] | None], kept: KeptColumns,
                ready: object = None) -> Iterator:
        shard_index, shard, decisions = element
        decisions = decisions or {}
        fmt = dataclasses.replace(self._input_format, format=shard.format)
        counts = ShardCounts()
        part = PartBuffer(shard_index, shard.name, self._limits)
        unread: set[int] = set()
        if decisions and not kept.fields and not self._reused_rows:
            # A reused record needs nothing of its line but to be counted, with the control characters the
            # keys pass saw normalisation remove: the reader need not parse it again.
            unread = {line for line, decision in decisions.items() if isinstance(decision, Reused)}
        outcomes = _Timed(shard_outcomes(shard, fmt, unread))  # the reader's own time, not the fused stages'
        position, raw_stream = 0, None
        for outcome, raw_stream in outcomes:
            counts.read += 1
            reused = _take(outcome, decisions.get(outcome.line), kept, counts, part)
            if reused is not None and self._reused_rows:
                yield beam.pvalue.TaggedOutput(REUSED_ROWS, reused)
            if part.full():
                yield part.cut()
            if counts.read % 1000 == 0:
                position = _report_position(raw_stream, position)
        _report_position(raw_stream, position, at_end=shard.size)
        if part.held() or part.parts == 0:
            yield part.cut()
        self._lines.inc(counts.read)
        yield beam.pvalue.TaggedOutput(SHARD_STATS, counts.stats(shard.name, part.parts, outcomes.seconds))


@dataclass
class ShardCounts:
    """What one shard held, counted as it is read (the manifest's per-shard row)."""

    read: int = 0
    skipped: int = 0
    removed: int = 0  # control characters normalisation took out
    reused: int = 0

    def stats(self, source: str, parts: int, read_seconds: float) -> ShardStats:
        return ShardStats(source, self.read, self.skipped, self.removed, parts, self.reused, read_seconds=read_seconds)


class PartBuffer:
    """The records and dead letters of the part being filled, cut into a `Part` when full (`PartLimits`)."""

    def __init__(self, shard_index: int, source: str, limits: PartLimits) -> None:
        self._shard_index, self._source, self._limits = shard_index, source, limits
        self.parts = 0  # parts cut so far
        self._clear()

    def _clear(self) -> None:
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._lines: list[int] = []
        self._dead: list[DeadLetter] = []
        self._rows: list[tuple | ArrowRows] = []
        self._chars = 0

    def add_record(self, record: Record, row: tuple | ArrowRows) -> None:
        self._ids.append(record.id)
        self._texts.append(record.text)
        self._lines.append(record.line)
        self._rows.append(row)
        self._chars += len(record.text) + kept_chars(row)

    def add_dead(self, dead: DeadLetter, chars: int = 0) -> None:
        self._dead.append(dead)
        self._chars += chars

    def held(self) -> int:
        return len(self._texts) + len(self._dead)

    def full(self) -> bool:
        return self.held() >= self._limits.records or self._chars >= self._limits.chars

    def cut(self) -> Part:
        rows = self._rows
        kept_rows = concat_rows(rows) if rows and isinstance(rows[0], ArrowRows) else tuple(rows)
        part = Part(self._shard_index, self._source, self.parts, tuple(self._ids), tuple(self._texts),
                    tuple(self._lines), tuple(self._dead), kept_rows)
        self.parts += 1
        self._clear()
        return part


def _take(outcome: object, decision: Decision | None, kept: KeptColumns, counts: ShardCounts,
          part: PartBuffer) -> tuple[str, tuple] | None:
    """Count one outcome of the reader or put it in the part; a reused record's (id, (kept values, text))."""
    if isinstance(outcome, Unread):  # reused, not parsed again
        counts.reused += 1
        counts.removed += decision.removed
    elif isinstance(outcome, DeadLetter):
        part.add_dead(outcome, len(outcome.raw or ""))
    elif not isinstance(outcome, Record):  # a line with no text
        counts.removed += outcome.removed_chars
        counts.skipped += 1
    else:
        counts.removed += outcome.removed_chars
        row, misfit = kept.fit(outcome.kept)
        if isinstance(decision, Duplicate):
            part.add_dead(_duplicate(outcome, decision))
        elif misfit is not None:
            part.add_dead(_misfit(outcome, misfit))
        elif isinstance(decision, Reused):
            counts.reused += 1
            return outcome.id, (row, outcome.text)
        else:
            part.add_record(outcome, row)
    return None


class _Timed:
    """An iterator that adds up the time spent getting its items (`seconds`)."""

    def __init__(self, items: Iterator) -> None:
        self._items = items
        self.seconds = 0.0

    def __iter__(self) -> Iterator:
        while True:
            started = time.perf_counter()
            item = next(self._items, None)
            self.seconds += time.perf_counter() - started
            if item is None:
                return
            yield item


def _report_position(raw_stream, previous: int, at_end: int | None = None) -> int:
    try:
        position = at_end if at_end is not None else raw_stream.tell()
    except (OSError, ValueError, AttributeError):
        return previous
    PROGRESS.add(bytes_read=max(position - previous, 0))
    return position


def _misfit(record: Record, detail: str) -> DeadLetter:
    return DeadLetter(record.source, record.line, "kept_field_type", detail, id=record.id, raw=_as_read(record))


def _duplicate(record: Record, first: Duplicate) -> DeadLetter:
    detail = f"id {record.id!r} was first seen at {first.first_source}:{first.first_line}, which is embedded"
    return DeadLetter(record.source, record.line, "duplicate_id", detail, id=record.id, raw=_as_read(record))


def _as_read(record: Record) -> str:
    """A dead letter's raw: the record as read, so it can be fixed and replayed (the text where none was kept)."""
    return text_preview(record.raw if record.raw is not None else record.text)
