"""The checked configuration of one run: job settings, encoder settings and where the job runs. Plain data.

Built once on the launcher (`job_config`) and carried to workers; storage is touched only by
`pipeline.preflight`, never here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from encoders import EncoderSpec, check_settings, resolve_spec
from encoders.declare import RECORDS, VECTORS, declared, json_value, names, with_absolute_paths
from pipeline.errors import JobConfigError
from pipeline.formats.shards import Shard
from pipeline.formats.storage import beam_knows
from pipeline.identity import identity_of
from pipeline.settings import SETTINGS_CLASSES, JobSettings


@dataclass(frozen=True)
class JobConfig:
    """Everything the pipeline needs; travels to workers inside the transforms."""

    job: JobSettings
    encoder_spec: EncoderSpec  # resolved on the launcher when the model is local; else on each worker, once
    shards: tuple[Shard, ...] | None = None  # None: listed by the job's first step, on a worker
    distributed: bool = False  # a distributed runner: reshuffle between stages, list and prepare on workers
    progress: str = "off"  # terminal | log | off
    launch_dir: str = "/"  # the launcher's working directory: relative paths an earlier run recorded are from it

    @property
    def output(self) -> str:
        return self.job.output

    def settings(self) -> dict[str, object]:
        """What this run was asked to do, as recorded in the manifest (JSON values)."""
        return identity_of(self.encoder_spec).recorded(self.job)


def compared_settings(settings: Mapping[str, object], base: str) -> dict[str, object]:
    """The part of a manifest's settings that a rerun must match to replace a finished run quietly.

    A setting the manifest lacks (written by a version before the setting existed) counts as its
    declared default, so a rerun that does not use it replaces that run as before. Local paths are
    compared as absolute paths, relative ones taken from base (the launcher's working directory):
    earlier versions recorded them as given.
    """
    compared = [name for cls in SETTINGS_CLASSES for name in names(cls, [VECTORS, RECORDS])]
    defaults = {item.name: json_value(item.default) for cls in SETTINGS_CLASSES for item in declared(cls)}
    found = {k: settings.get(k, defaults[k]) for k in compared}
    for cls in SETTINGS_CLASSES:
        found = with_absolute_paths(found, cls, base)
    return found


def job_config(job: JobSettings, spec: EncoderSpec, distributed: bool = False, progress: str = "off",
               shards: tuple[Shard, ...] | None = None, launch_dir: str | None = None) -> JobConfig:
    """Check what needs no storage and resolve the encoder when its model is local.

    A job for a distributed runner with a remote model resolves it on its workers (the launcher
    may have no access to it). Raises JobConfigError or EncoderConfigError.
    """
    if not beam_knows(job.output):
        raise JobConfigError(f"--output {job.output} is not on a filesystem Beam can write (local, gs://, s3://)")
    source = check_settings(spec)
    if not distributed or source.is_local:
        spec = resolve_spec(spec)
    return JobConfig(job, spec, shards, distributed, progress, launch_dir or os.getcwd())
