"""The Beam graph of the embedding job (list -> decide -> read -> embed -> commit), and running it."""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipeline.config import JobConfig
from pipeline.formats.manifest import Manifest
from pipeline.formats.output import SUCCESS_FILE, clear_previous_output
from pipeline.formats.spill import Packed, Spilled, spill_directory, stash_one
from pipeline.launch.progress import PROGRESS
from pipeline.stages.commit import Commit, CommitSettings, PrepareOutput
from pipeline.stages.embed import EmbedParts
from pipeline.stages.kept import DecideKeptColumns
from pipeline.stages.keys import CopyReused, DecideRecords
from pipeline.stages.read import REUSED_ROWS, SHARD_STATS, ListShards, Part, ProgressSettings, ReadParts


def build_pipeline(p: beam.Pipeline, config: JobConfig, started_at: float) -> beam.PCollection:
    """Add the job to pipeline p; returns the PCollection holding the manifest."""
    job, spec = config.job, config.encoder_spec
    ready = None
    if config.shards is None:
        # Submitted from a launcher that need not see the data: a worker lists the inputs and
        # prepares the output, and every write waits for the output to be ready.
        ready = beam.pvalue.AsSingleton(p | "PrepareOutput" >> PrepareOutput(job, spec, config.launch_dir))
    shards = p | "ListShards" >> ListShards(job, config.shards)
    # The output's extra columns, one type each for the whole run (`pipeline.stages.kept`).
    kept = beam.pvalue.AsSingleton(shards | "KeptColumns" >> DecideKeptColumns(job.input_format(), job.keep_text))
    decided = {}
    if job.id_field or job.skip_existing:
        decided = shards | "Decide" >> DecideRecords(job, spec, ready, spill_directory(job.output))
        to_read = decided["to_read"]
    else:
        to_read = shards | "NoDecisions" >> beam.MapTuple(lambda index, shard: (index, shard, None))
    progress = ProgressSettings(config.progress, sum(s.size for s in config.shards or ()))
    reused_rows = job.snapshot and bool(job.keep_fields or job.keep_text)
    read = to_read | "Read" >> ReadParts(job, progress, kept, reused_rows, ready)
    copied = None
    if "copies" in decided:
        rows = read[REUSED_ROWS] if reused_rows else None
        copied = decided["copies"] | "CopyReused" >> CopyReused(job, spec, kept, rows, ready)
    parts = read.parts
    embed = EmbedParts(spec, job, kept, stashed=config.distributed)
    if config.distributed:
        # Distributed runners shuffle on disk and spread a big shard's parts over workers.
        # Local runners hold a shuffled PCollection in memory, so there reading and
        # embedding stay fused and stream.
        # Stashed (`pipeline.formats.spill`): a runner holds what it shuffles; on a local disk each part waits in
        # the staging folder, on an object store it travels packed (text compresses about threefold).
        parts = (parts | "Stash" >> beam.Map(_stash_part, spill_directory(job.output))
                 | "SpreadParts" >> beam.Reshuffle())
        if job.embed_accelerator:
            # Right fitting (`pipeline.launch.placement`): only this step asks for GPU workers. Beam gives a hinted
            # transform an environment of its own, and never fuses stages of different environments, so
            # records cross from the default workers to the GPU ones at the reshuffle above. Not on local
            # runners: there the same split would end the streaming and hold every part in memory.
            embed = embed.with_resource_hints(accelerator=job.embed_accelerator)
    part_stats = parts | "EmbedAndStage" >> embed
    commit = Commit(CommitSettings(job, spec, started_at), read[SHARD_STATS], part_stats,
                    decided.get("existing"), copied)
    return p | "Commit" >> commit


def _stash_part(part: Part, directory: str | None) -> Spilled | Packed:
    return stash_one(directory, f"part-{part.shard_index:05d}-{part.part:05d}", part)


def run_job(config: JobConfig, options: PipelineOptions) -> Manifest:
    """Run the job here to completion; returns the manifest (also written to output/_SUCCESS).

    The launcher has run the storage checks (`pipeline.preflight`); this cleans the output first.
    """
    clear_previous_output(config.output)
    try:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, config, time.time())
    finally:
        PROGRESS.stop()
    return Manifest.read(FileSystems.join(config.output, SUCCESS_FILE))


def submit_job(config: JobConfig, options: PipelineOptions) -> PipelineResult:
    """Hand the job to a distributed runner and return without waiting (its workers list, clean and commit).

    With the DataflowRunner's --dry_run the result's `job` holds the job description, and nothing is sent.
    """
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, time.time())
    return p.run()
