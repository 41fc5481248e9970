"""The Beam graph of the embedding job, and running it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipeline.config import JobConfig
from pipeline.output import SUCCESS_FILE, clear_previous_output
from pipeline.progress import PROGRESS
from pipeline.shards import Shard
from pipeline.transforms import (
    COPIES,
    EXISTING_STATS,
    SHARD_STATS,
    CommitOutput,
    CopyReused,
    EmbedPart,
    ListExisting,
    ListShards,
    PartLimits,
    PrepareOutput,
    ProgressSettings,
    ReadExistingKeys,
    ReadKeys,
    ReadShard,
    ResolveIds,
)

logger = logging.getLogger(__name__)


def build_pipeline(p: beam.Pipeline, config: JobConfig, started_at: float) -> beam.PCollection:
    """Add the job to pipeline p; returns the PCollection holding the manifest."""
    progress = ProgressSettings(config.progress, sum(s.size for s in config.shards or ()))
    input_format = config.input_format("text")
    reader = ReadShard(input_format, progress, PartLimits(config.records_per_file))
    side_inputs = {}
    commit_inputs = {}
    if config.shards is None:
        # Submitted from a launcher that need not see the data: a worker lists the inputs and
        # prepares the output, and reading waits for the output to be ready.
        listed = (
            p | "Inputs" >> beam.Create([None]) | "ListShards" >> beam.ParDo(ListShards(config.inputs, config.format))
        )
        side_inputs["ready"] = beam.pvalue.AsSingleton(
            p | "OutputTrigger" >> beam.Create([None]) | "PrepareOutput" >> beam.ParDo(PrepareOutput(config))
        )
    else:
        listed = p | "Shards" >> beam.Create(list(enumerate(config.shards)))
    shards = listed | "SpreadShards" >> beam.Reshuffle()
    if config.id_field or config.skip_existing:
        # Ids chosen by the user may repeat, and earlier outputs may hold some records already.
        # A first pass reads only ids, positions and text hashes (not texts), so the grouping
        # holds a few dozen bytes per record; the main read then dead-letters later occurrences
        # and leaves reused records out.
        keys = [shards | "ReadKeys" >> beam.ParDo(ReadKeys(input_format))]
        if config.skip_existing:
            existing = (
                p
                | "EarlierOutputs" >> beam.Create([None])
                | "ListEarlierFiles" >> beam.ParDo(ListExisting(config.skip_existing))
                | "SpreadEarlierFiles" >> beam.Reshuffle()
                | "ReadEarlierKeys" >> beam.ParDo(ReadExistingKeys(config)).with_outputs(
                    EXISTING_STATS, main="keys"
                )
            )
            keys.append(existing.keys)
            commit_inputs["existing"] = beam.pvalue.AsList(existing[EXISTING_STATS])
        resolved = (
            keys
            | "AllKeys" >> beam.Flatten()
            | "GroupById" >> beam.GroupByKey()
            | "ResolveIds" >> beam.ParDo(ResolveIds()).with_outputs(COPIES, main="decisions")
        )
        if config.snapshot:
            commit_inputs["copied"] = beam.pvalue.AsList(
                resolved[COPIES]
                | "GroupByEarlierFile" >> beam.GroupByKey()
                | "CopyReused" >> beam.ParDo(CopyReused(config), **side_inputs)  # writes: after PrepareOutput
            )
        # Each shard meets only its own decisions (not a job-wide side input: a nightly run may
        # reuse millions of records, and every worker would hold them all).
        to_read = (
            {
                "shard": shards | "ShardByName" >> beam.Map(lambda e: (e[1].name, e)),
                "decisions": resolved.decisions | "DecisionByShard" >> beam.MapTuple(
                    lambda position, decision: (position[0], (position[1], decision))
                ),
            }
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "WithDecisions" >> beam.FlatMap(with_decisions)
        )
    else:
        to_read = shards | "NoDecisions" >> beam.MapTuple(lambda index, shard: (index, shard, None))
    read = to_read | "Read" >> beam.ParDo(reader, **side_inputs).with_outputs(SHARD_STATS, main="parts")
    parts = read.parts
    if config.rebalance:
        # Distributed runners shuffle on disk and spread a big shard's parts over workers.
        # Local runners hold a shuffled PCollection in memory, so there reading and
        # embedding stay fused and stream.
        parts = parts | "SpreadParts" >> beam.Reshuffle()
    part_stats = parts | "EmbedAndStage" >> beam.ParDo(
        EmbedPart(config)
    )
    return (
        p
        | "CommitTrigger" >> beam.Create([None])
        | "Commit" >> beam.ParDo(
            CommitOutput(config, started_at),
            shard_stats=beam.pvalue.AsList(read[SHARD_STATS]),
            part_stats=beam.pvalue.AsList(part_stats),
            **commit_inputs,
        )
    )


def with_decisions(joined: tuple[str, dict]) -> Iterator[tuple[int, Shard, dict[int, tuple]]]:
    """(shard index, shard, {line: decision}) from a shard joined with its decisions."""
    _, groups = joined
    decisions = dict(groups["decisions"])
    for index, shard in groups["shard"]:
        yield index, shard, decisions


def run_job(config: JobConfig, options: PipelineOptions) -> dict:
    """Run the job here to completion; returns the manifest (also written to output/_SUCCESS)."""
    clear_previous_output(config.output)
    try:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, config, time.time())
    finally:
        PROGRESS.stop()
    with FileSystems.open(FileSystems.join(config.output, SUCCESS_FILE)) as f:
        return json.loads(f.read().decode("utf-8"))


def submit_job(config: JobConfig, options: PipelineOptions) -> PipelineResult:
    """Hand the job to a distributed runner and return without waiting (its workers list, clean and commit).

    With the DataflowRunner's --dry_run the result's `job` holds the job description, and nothing is sent.
    """
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, time.time())
    return p.run()
