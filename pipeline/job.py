"""The Beam graph of the embedding job, and running it."""

from __future__ import annotations

import json
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import encoders
from pipeline.config import JobConfig
from pipeline.output import SUCCESS_FILE, output_patterns
from pipeline.progress import PROGRESS
from pipeline.transforms import (
    SHARD_STATS,
    CommitOutput,
    EmbedPart,
    PartLimits,
    ProgressSettings,
    ReadIds,
    ReadShard,
    later_occurrences,
)

logger = logging.getLogger(__name__)


def file_metadata(config: JobConfig) -> dict[str, str]:
    """Key-value metadata stored in every Parquet file: what produced these vectors."""
    spec = config.encoder
    return {
        "model": spec.model,
        "backend": spec.backend,
        "pooling": spec.pooling,
        "normalize": str(spec.normalize).lower(),
        "dim": str(spec.dim),
        "max_seq_length": str(spec.max_seq_length),
        "long_text": spec.long_text,
        "chunk_overlap": str(spec.chunk_overlap),
        "version": encoders.__version__,
    }


def build_pipeline(p: beam.Pipeline, config: JobConfig, started_at: float) -> beam.PCollection:
    """Add the job to pipeline p; returns the PCollection holding the manifest."""
    spec = config.encoder
    progress = ProgressSettings(config.progress, sum(s.size for s in config.shards))
    input_format = config.input_format("text")
    reader = ReadShard(input_format, progress, PartLimits(config.records_per_file))
    shards = p | "Shards" >> beam.Create(list(enumerate(config.shards))) | "SpreadShards" >> beam.Reshuffle()
    side_inputs = {}
    if config.id_field:
        # Ids chosen by the user may repeat. A first pass reads only ids and positions (not
        # texts), so the grouping holds a few bytes per record; the main read then turns each
        # later occurrence into a dead letter naming the first.
        side_inputs["duplicates"] = beam.pvalue.AsDict(
            shards
            | "ReadIds" >> beam.ParDo(ReadIds(input_format))
            | "GroupById" >> beam.GroupByKey()
            | "LaterOccurrences" >> beam.FlatMap(later_occurrences)
        )
    read = shards | "Read" >> beam.ParDo(reader, **side_inputs).with_outputs(SHARD_STATS, main="parts")
    parts = read.parts
    if config.rebalance:
        # Distributed runners shuffle on disk and spread a big shard's parts over workers.
        # Local runners hold a shuffled PCollection in memory, so there reading and
        # embedding stay fused and stream.
        parts = parts | "SpreadParts" >> beam.Reshuffle()
    part_stats = parts | "EmbedAndStage" >> beam.ParDo(
        EmbedPart(spec, file_metadata(config), config.output, config.group_size)
    )
    return (
        p
        | "CommitTrigger" >> beam.Create([None])
        | "Commit" >> beam.ParDo(
            CommitOutput(config.output, config.settings(), started_at),
            shard_stats=beam.pvalue.AsList(read[SHARD_STATS]),
            part_stats=beam.pvalue.AsList(part_stats),
        )
    )


def clear_previous_output(output: str) -> None:
    """Remove what an earlier run, finished or killed, left in output (only our own file names)."""
    for pattern in output_patterns():  # _SUCCESS first: a half-cleaned directory never looks finished
        stale = [m.path for m in FileSystems.match([FileSystems.join(output, pattern)])[0].metadata_list]
        if stale:
            logger.info("removing %d files of an earlier run matching %s", len(stale), pattern)
            FileSystems.delete(stale)


def run_job(config: JobConfig, options: PipelineOptions) -> dict:
    """Run the job to completion; returns the manifest (also written to output/_SUCCESS)."""
    clear_previous_output(config.output)
    try:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, config, time.time())
    finally:
        PROGRESS.stop()
    with FileSystems.open(FileSystems.join(config.output, SUCCESS_FILE)) as f:
        return json.loads(f.read().decode("utf-8"))
