"""The output's two ends: prepare it before anything is written; commit it (counts reconciled, `_SUCCESS` last)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from encoders import EncoderSpec
from pipeline.config import compared_settings
from pipeline.formats.manifest import build_manifest, incremental_summary
from pipeline.formats.output import FAILED_DIR, STAGING_DIR, SUCCESS_FILE, staged_name, write_file
from pipeline.identity import identity_of
from pipeline.preflight import prepare_output
from pipeline.settings import JobSettings
from pipeline.stages import metrics


@dataclass(frozen=True)
class CommitSettings:
    """What the manifest records: the run's settings (the encoder's resolved where it commits) and its start."""

    job: JobSettings
    spec: EncoderSpec  # resolved where the output is committed, once per process (`pipeline.identity`)
    started_at: float  # Unix seconds


class PrepareOutput(beam.PTransform):
    """A distributed job's first step: refuse a finished run of other settings, then clean the output.

    Yields True when done; writers take it as a side input so nothing is written before.
    Local runs do the same from the launcher (`pipeline.preflight`).
    """

    def __init__(self, job: JobSettings, spec: EncoderSpec, launch_dir: str) -> None:
        super().__init__()
        self._job = job
        self._spec = spec
        self._launch_dir = launch_dir

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (pbegin | "Start" >> beam.Create([None])
                | "Prepare" >> beam.Map(_prepare, self._job, self._spec, self._launch_dir))


def _prepare(_, job: JobSettings, spec: EncoderSpec, launch_dir: str) -> bool:
    compared = compared_settings(identity_of(spec).recorded(job), launch_dir)
    prepare_output(job.output, compared, job.overwrite, launch_dir)
    return True


class Commit(beam.PTransform):
    """Runs once, after every part is staged (its side inputs guarantee the order).

    A job that dies before or during this step leaves no `_SUCCESS`; the next run starts by
    cleaning up. Yields the manifest.
    """

    def __init__(self, commit: CommitSettings, shard_stats: beam.PCollection, part_stats: beam.PCollection,
                 existing: beam.PCollection | None = None, copied: beam.PCollection | None = None) -> None:
        super().__init__()
        self._commit = commit
        self._side_inputs = {"shard_stats": shard_stats, "part_stats": part_stats}
        for name, collection in (("existing", existing), ("copied", copied)):
            if collection is not None:
                self._side_inputs[name] = collection

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        side_inputs = {name: beam.pvalue.AsList(c) for name, c in self._side_inputs.items()}
        return (
            pbegin
            | "Trigger" >> beam.Create([None])
            | "CommitOutput" >> beam.ParDo(_CommitFn(self._commit), **side_inputs)
        )


class _CommitFn(beam.DoFn):
    def __init__(self, commit: CommitSettings) -> None:
        self._commit = commit

    def process(self, _, shard_stats, part_stats, existing=(), copied=()) -> Iterator[dict]:
        with metrics.timed(metrics.COMMIT_MS):
            manifest = self._commit_output(shard_stats, part_stats, existing, copied)
        yield manifest

    def _commit_output(self, shard_stats, part_stats, existing, copied) -> dict:
        """Build the manifest, move the staged files into place, write `_SUCCESS`, clean the staging area."""
        job = self._commit.job
        output = job.output
        join = FileSystems.join
        incremental = None
        if job.skip_existing:
            incremental = incremental_summary(job.skip_existing, existing, job.snapshot, copied)
        settings = identity_of(self._commit.spec).recorded(job)
        manifest = build_manifest(shard_stats, part_stats, settings, self._commit.started_at, time.time(),
                                  incremental)
        names = [n for kind in ("embeddings", "failed") for n in manifest["files"][kind]]
        if manifest["files"]["failed"]:
            try:
                FileSystems.mkdirs(join(output, FAILED_DIR))
            except OSError:
                pass  # it exists (object stores have no directories and ignore this)
        if names:
            FileSystems.rename([join(output, staged_name(n)) for n in names], [join(output, n) for n in names])
        write_file(join(output, SUCCESS_FILE), json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        staging = join(output, STAGING_DIR)
        leftovers = [m.path for m in FileSystems.match([join(staging, "*")])[0].metadata_list]
        if FileSystems.exists(staging):  # a local directory; object stores have none
            leftovers.append(staging)
        if leftovers:
            FileSystems.delete(leftovers)
        metrics.counter(metrics.COMMIT_FILES).inc(len(names))
        return manifest
