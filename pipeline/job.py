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
from pipeline.output import (
    EMBEDDINGS_PREFIX,
    EMBEDDINGS_SUFFIX,
    FAILED_DIR,
    FAILED_PREFIX,
    FAILED_SUFFIX,
    SUCCESS_FILE,
    embeddings_schema,
)
from pipeline.progress import PROGRESS
from pipeline.transforms import (
    DEAD_LETTERS,
    EMBED_STATS,
    SHARD_STATS,
    EmbedBatch,
    ProgressSettings,
    ReadShard,
    WriteManifest,
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
        "version": encoders.__version__,
    }


def build_pipeline(p: beam.Pipeline, config: JobConfig, started_at: float) -> beam.PCollection:
    """Add the job to pipeline p; returns the PCollection holding the manifest."""
    spec = config.encoder
    metadata = file_metadata(config)
    join = FileSystems.join
    progress = ProgressSettings(config.progress, sum(s.size for s in config.shards))
    input_format = config.input_format("text")
    read = (
        p
        | "Shards" >> beam.Create(list(config.shards))
        | "SpreadShards" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadShard(input_format, progress)).with_outputs(
            DEAD_LETTERS, SHARD_STATS, main="records"
        )
    )
    records = read.records
    if config.rebalance:
        # Distributed runners shuffle on disk and spread a big shard's records over workers.
        # Local runners hold a shuffled PCollection in memory, so there reading, embedding
        # and writing stay fused and stream.
        records = records | "SpreadRecords" >> beam.Reshuffle()
    embedded = (
        records
        # Fixed-size groups: the encoder sorts each group by length and cuts it by token budget.
        | "Group" >> beam.BatchElements(min_batch_size=config.group_size, max_batch_size=config.group_size)
        | "Embed" >> beam.ParDo(EmbedBatch(spec, metadata)).with_outputs(DEAD_LETTERS, EMBED_STATS, main="tables")
    )
    parquet_files = embedded.tables | "WriteParquet" >> beam.io.WriteToParquetBatched(
        join(config.output, EMBEDDINGS_PREFIX),
        schema=embeddings_schema(spec.dim, metadata),
        file_name_suffix=EMBEDDINGS_SUFFIX,
    )
    dead_letters = (read[DEAD_LETTERS], embedded[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
    failed_files = (
        dead_letters
        | "DeadLetterJson" >> beam.Map(lambda d: d.to_json())
        | "WriteDeadLetters" >> beam.io.WriteToText(
            join(config.output, FAILED_DIR, FAILED_PREFIX), file_name_suffix=FAILED_SUFFIX, num_shards=1
        )
    )
    failed_counts = (
        dead_letters
        | "FailureKey" >> beam.Map(lambda d: ((d.source, d.reason), 1))
        | "CountFailures" >> beam.CombinePerKey(sum)
    )
    settings = {**spec.describe(), "version": encoders.__version__, "inputs": list(config.inputs)}
    return (
        p
        | "ManifestTrigger" >> beam.Create([None])
        | "WriteManifest" >> beam.ParDo(
            WriteManifest(config.output, settings, started_at),
            shard_stats=beam.pvalue.AsList(read[SHARD_STATS]),
            embed_stats=beam.pvalue.AsList(embedded[EMBED_STATS]),
            failed=beam.pvalue.AsList(failed_counts),
            parquet_files=beam.pvalue.AsList(parquet_files),
            failed_files=beam.pvalue.AsList(failed_files),
        )
    )


def clear_previous_output(output: str) -> None:
    """Remove what an earlier run of this job left in output (only our own file names)."""
    join = FileSystems.join
    patterns = [
        join(output, SUCCESS_FILE),
        join(output, f"{EMBEDDINGS_PREFIX}-*{EMBEDDINGS_SUFFIX}"),
        join(output, FAILED_DIR, f"{FAILED_PREFIX}-*{FAILED_SUFFIX}"),
    ]
    for pattern in patterns:  # _SUCCESS first: a half-cleaned directory never looks finished
        stale = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
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
