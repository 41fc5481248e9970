"""The keys stage: which records to embed, given repeated ids (--id_field) and earlier outputs (--skip_existing).

A first pass reads only (id, position, text hash) of every record, never the text; grouping by bucket
of ids (with the ids and hashes of earlier output files) decides, per record, whether it is a later
occurrence of an id (dead-lettered as duplicate_id) or already embedded earlier (reused, and with
--snapshot copied). Keys travel as Arrow tables, one per shard (or earlier file) and bucket, and a
bucket is resolved with a sort and a join (`pipeline.stages.decisions`): Beam's cost per element is paid a
few thousand times a night, not once per record, on every runner. Each shard then meets only its own
decisions, not a job-wide side input: a nightly run may reuse millions of records, and every worker
would hold them all. On a local disk, keys, decisions and ids to copy wait in the output's staging folder and
the groupings carry where (`pipeline.formats.spill`): local runners hold what they group. The bucket count
grows with the input (`pipeline.stages.decisions.key_buckets`): a bucket is resolved whole on one worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from encoders import EncoderSpec
from encoders.declare import escaped
from pipeline.formats.kept_policy import KeptColumns
from pipeline.formats.output import (
    BASE_COLUMNS,
    EMBEDDINGS_SUFFIX,
    open_parquet,
    parquet_bytes,
    reused_file_name,
    staged_name,
    table_of,
    write_file,
)
from pipeline.formats.readers import shard_outcomes
from pipeline.formats.records import InputFormat, Record
from pipeline.formats.shards import Shard
from pipeline.formats.spill import Held, Spilled, stash
from pipeline.identity import identity_of
from pipeline.settings import JobSettings
from pipeline.stages import metrics
from pipeline.stages.decisions import (
    NewKeys,
    OldKeys,
    by_bucket,
    decisions_by_line,
    key_buckets,
    resolve_keys,
    text_hash,
)

logger = logging.getLogger(__name__)
Stashed = Spilled | Held  # where a grouped value waits (`pipeline.formats.spill.stash`)

COPIES = "copies"
EXISTING_STATS = "existing_stats"


class DecideRecords(beam.PTransform):
    """(index, Shard) -> {"to_read": (index, Shard, {line: decision}), and with reuse "existing", "copies"}.

    "existing" holds (earlier file, same fingerprint?, rows), with --skip_existing, for the manifest;
    "copies" ((earlier file index, path), ids), with --snapshot, the earlier rows to copy (`CopyReused`).
    Keys travel as arrays, one element per shard or earlier file and bucket of ids (`pipeline.stages.decisions`).
    """

    def __init__(self, job: JobSettings, spec: EncoderSpec, ready: beam.pvalue.AsSingleton | None = None,
                 spill_to: str | None = None) -> None:
        super().__init__()
        self._job = job
        self._spec = spec  # possibly unresolved; resolved once per worker process (`pipeline.identity`)
        # Where grouped values wait (`pipeline.formats.spill.spill_directory`; None: in the shuffle). Spilling
        # writes to the output's staging folder: on a worker-prepared output, not before it is ready.
        self._spill_to = spill_to
        self._ready = {"ready": ready} if ready is not None else {}

    def expand(self, shards: beam.PCollection) -> dict[str, beam.PCollection]:
        p = shards.pipeline
        job = self._job
        buckets = beam.pvalue.AsSingleton(
            shards
            | "ShardBytes" >> beam.MapTuple(lambda _, shard: shard.size)
            | "InputBytes" >> beam.CombineGlobally(sum)
            | "BucketCount" >> beam.Map(key_buckets)
        )
        side = {"buckets": buckets, **self._ready}
        keys = [shards | "ReadKeys" >> beam.ParDo(_ReadKeysFn(job.input_format(), self._spill_to), **side)]
        outputs = {}
        if job.skip_existing:
            earlier = (
                p
                | "EarlierOutputs" >> beam.Create([None])
                | "ListEarlierFiles" >> beam.ParDo(_ListExistingFn(job.skip_existing))
                | "SpreadEarlierFiles" >> beam.Reshuffle()
                | "ReadEarlierKeys" >> beam.ParDo(_ReadExistingKeysFn(self._spec, self._spill_to), **side)
                .with_outputs(EXISTING_STATS, main="keys")
            )
            keys.append(earlier.keys)
            outputs["existing"] = earlier[EXISTING_STATS]
        resolved = (
            keys
            | "AllKeys" >> beam.Flatten()
            | "GroupByBucket" >> beam.GroupByKey()
            | "ResolveBuckets" >> beam.ParDo(_ResolveBucketFn(self._spill_to)).with_outputs(COPIES, main="decisions")
        )
        if job.skip_existing and job.snapshot:
            outputs["copies"] = resolved[COPIES]
        to_read = (
            {
                "shard": shards | "ShardByIndex" >> beam.Map(lambda e: (e[0], e)),
                "decisions": resolved.decisions,
            }
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "WithDecisions" >> beam.FlatMap(with_decisions)
        )
        return {"to_read": to_read, **outputs}


def with_decisions(joined: tuple[str, dict]) -> Iterator[tuple[int, Shard, dict[int, tuple]]]:
    """(shard index, shard, {line: decision}) from a shard joined with its stashed decisions."""
    _, groups = joined
    decisions = decisions_by_line([stashed.load() for stashed in groups["decisions"]])
    for index, shard in groups["shard"]:
        yield index, shard, decisions


class _ReadKeysFn(beam.DoFn):
    """(bucket, stashed NewKeys) of a shard's records that would be embedded, one element per bucket.

    A few dozen bytes per record, never the text, in one staging file per shard.
    """

    def __init__(self, input_format: InputFormat, spill_to: str | None) -> None:
        self._input_format = input_format
        self._spill_to = spill_to

    def process(self, element: tuple[int, Shard], buckets: int, ready: object = None) -> Iterator[tuple[int, Stashed]]:
        shard_index, shard = element
        fmt = dataclasses.replace(self._input_format, format=shard.format)
        ids, lines, hashes, removed = [], [], [], []
        with metrics.timed(metrics.KEYS_MS):
            for outcome, _ in shard_outcomes(shard, fmt):
                if isinstance(outcome, Record):
                    ids.append(outcome.id)
                    lines.append(outcome.line)
                    hashes.append(text_hash(outcome.text))
                    removed.append(outcome.removed_chars)
            keys = NewKeys.of(shard_index, shard.name, ids, lines, hashes, removed)
            cut = list(by_bucket(keys, buckets))
        metrics.counter(metrics.KEYS_RECORDS).inc(len(ids))
        metrics.counter(metrics.KEY_BYTES).inc(keys.nbytes)
        yield from stash(self._spill_to, f"keys-{shard_index:05d}", cut)


class _ResolveBucketFn(beam.DoFn):
    """One bucket's stashed keys -> (shard index, stashed ShardDecisions) per shard; ((file, path), stashed ids)
    to COPIES. Spilled, both go to one staging file per bucket."""

    def __init__(self, spill_to: str | None) -> None:
        self._spill_to = spill_to

    def process(self, element: tuple[int, Iterable[Stashed]]) -> Iterator:
        bucket, found = element
        found = [stashed.load() for stashed in found]
        resolved = resolve_keys([k for k in found if isinstance(k, NewKeys)],
                                [k for k in found if isinstance(k, OldKeys)])
        items = [*(((None, shard), decided) for shard, decided in resolved.decisions.items()),
                 *(((COPIES, earlier), ids) for earlier, ids in resolved.copies.items())]
        for (tag, key), where in stash(self._spill_to, f"bucket-{bucket:05d}", items):
            yield (key, where) if tag is None else beam.pvalue.TaggedOutput(COPIES, (key, where))


class EarlierOutputError(RuntimeError):
    """An earlier output file (--skip_existing) cannot be read: not Parquet, or damaged: the job must fail."""


@contextlib.contextmanager
def _reading_earlier(path: str) -> Iterator[None]:
    """Turn what reading an earlier output file raises into EarlierOutputError naming it (a page that fails its
    checksum is an OSError): reusing rows from a damaged file would carry its changed vectors on."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        detail = " ".join(str(exc).split())
        raise EarlierOutputError(f"cannot read earlier output {escaped(path)} (--skip_existing): {detail}") from exc


class _ListExistingFn(beam.DoFn):
    """(index, path) of every earlier output file matching --skip_existing, in sorted order."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern

    def process(self, _) -> Iterator[tuple[int, str]]:
        matched = FileSystems.match([self._pattern])[0].metadata_list
        paths = sorted(m.path for m in matched if m.path.endswith(EMBEDDINGS_SUFFIX))
        logger.info("%d earlier output files match %s", len(paths), self._pattern)
        yield from enumerate(paths)


class _ReadExistingKeysFn(beam.DoFn):
    """(bucket, OldKeys) of an earlier file made under the same fingerprint, one element per bucket.

    Only its id and text_hash columns are read.

    Every file also reports (path, same fingerprint?, rows) to EXISTING_STATS, so the manifest
    can say why nothing was reused.
    """

    def __init__(self, spec: EncoderSpec, spill_to: str | None) -> None:
        self._spec = spec
        self._spill_to = spill_to

    def setup(self) -> None:
        self._fingerprint = identity_of(self._spec).fingerprint

    def process(self, element: tuple[int, str], buckets: int, ready: object = None) -> Iterator:
        index, path = element
        with (metrics.timed(metrics.EARLIER_KEYS_MS), _reading_earlier(path),
              FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f):
            parquet = open_parquet(f)
            metadata = parquet.schema_arrow.metadata or {}
            same = metadata.get(b"model_fingerprint", b"").decode() == self._fingerprint
            same = same and "text_hash" in parquet.schema_arrow.names
            yield beam.pvalue.TaggedOutput(EXISTING_STATS, (path, same, parquet.metadata.num_rows))
            if not same:
                return
            metrics.counter(metrics.EARLIER_ROWS).inc(parquet.metadata.num_rows)
            table = parquet.read(columns=["id", "text_hash"])
            keys = OldKeys.of(index, path, table.column("id").combine_chunks(),
                              table.column("text_hash").combine_chunks())
            cut = list(by_bucket(keys, buckets))
        yield from stash(self._spill_to, f"earlier-{index:05d}", cut)


class CopyReused(beam.PTransform):
    """--snapshot: copies ((earlier file index, path), ids) -> (file name, rows) copied into this output.

    Each earlier file's reused rows become one file of this output (staged, deterministic name). With
    kept columns, the rows take them from this run's input, not the earlier output: `rows` holds
    (id, (kept values, text)) of every reused record from the reading stage (`pipeline.stages.read.REUSED_ROWS`);
    a reused record that became a dead letter there has none and is not copied. kept is a side input
    holding the run's `KeptColumns`; `ready` holds back writes until the output is prepared.
    """

    def __init__(self, job: JobSettings, spec: EncoderSpec, kept: beam.pvalue.AsSingleton,
                 rows: beam.PCollection | None = None,
                 ready: beam.pvalue.AsSingleton | None = None) -> None:
        super().__init__()
        self._output = job.output  # where the copies are staged
        self._spec = spec
        self._rows = rows
        self._side_inputs = {"kept": kept, **({"ready": ready} if ready is not None else {})}

    def expand(self, copies: beam.PCollection) -> beam.PCollection:
        if self._rows is None:
            by_file = copies
        else:
            by_id = copies | "ById" >> beam.FlatMapTuple(
                lambda earlier, ids: ((record_id, earlier) for record_id in ids.load().to_pylist()))
            by_file = (
                {"earlier": by_id,
                 "row": self._rows}
                | "JoinKeptValues" >> beam.CoGroupByKey()
                | "WithKeptValues" >> beam.FlatMap(_with_row)
            )
        copy = _CopyReusedFn(self._spec, self._output, with_rows=self._rows is not None)
        return (
            by_file
            | "GroupByEarlierFile" >> beam.GroupByKey()
            | "CopyRows" >> beam.ParDo(copy, **self._side_inputs)
        )


def _with_row(joined: tuple[str, dict]) -> Iterator[tuple[tuple[int, str], tuple[str, tuple]]]:
    record_id, groups = joined
    for earlier in groups["earlier"]:
        for row in groups["row"]:
            yield earlier, (record_id, row)


class _CopyReusedFn(beam.DoFn):
    """Copy the reused rows of one earlier file into this run's output, kept columns from this run's input.

    Its element holds the file's reused ids as stashed Arrow arrays (one per bucket), or with_rows (id, (kept
    values, text)) pairs.
    """

    def __init__(self, spec: EncoderSpec, output: str, with_rows: bool = False) -> None:
        self._spec = spec
        self._output = output
        self._with_rows = with_rows

    def process(self, element: tuple[tuple[int, str], Iterable], kept: KeptColumns,
                ready: object = None) -> Iterator[tuple[str, int]]:
        with metrics.timed(metrics.SNAPSHOT_COPY_MS):
            copied = self._copy(element, kept)
        yield copied

    def _copy(self, element: tuple[tuple[int, str], Iterable[tuple[str, tuple | None]]],
              kept: KeptColumns) -> tuple[str, int]:
        import pyarrow.compute as pc

        schema = identity_of(self._spec).schema(kept.output_fields())
        (index, path), found = element
        if self._with_rows:
            values = dict(found)
            wanted = pa.array(sorted(values), type=pa.string())
        else:
            wanted = pa.concat_arrays([stashed.load() for stashed in found])
        with _reading_earlier(path), FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            table = open_parquet(f).read(columns=list(BASE_COLUMNS))
        rows = table.filter(pc.is_in(table.column("id"), value_set=wanted))
        ids = rows.column("id").to_pylist()
        extra = []
        if kept.fields or kept.text:
            extra = kept.arrays([values[i][0] for i in ids], [values[i][1] for i in ids])
        rows = table_of([*(rows.column(n) for n in BASE_COLUMNS), *extra], schema)
        name = reused_file_name(index)
        write_file(FileSystems.join(self._output, staged_name(name)), parquet_bytes(rows))
        return name, rows.num_rows
