"""Every check that touches storage: run by the launcher for local runs, by the job's first steps elsewhere.

One code path and one set of messages whichever runner runs the job. On the launcher a problem
is a `JobConfigError` (exit 2 before anything starts); on a worker the same exception fails the
job before anything is written.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from encoders.declare import escaped
from pipeline.config import compared_settings
from pipeline.errors import JobConfigError
from pipeline.formats.kept_policy import decide_columns, merge_observed, observe_shard
from pipeline.formats.kept_types import KeptTypeError
from pipeline.formats.manifest import Manifest
from pipeline.formats.output import SUCCESS_FILE, clear_previous_output
from pipeline.formats.readers import HEADED_FORMATS, STRUCTURED_FORMATS
from pipeline.formats.records import InputFormat
from pipeline.formats.shards import Shard, match_shards, open_shard
from pipeline.formats.structure import structure_problem
from pipeline.settings import JobSettings

logger = logging.getLogger(__name__)


def preflight_checks(job: JobSettings, compared: dict[str, object], base: str) -> tuple[Shard, ...]:
    """What the launcher of a local run checks before anything starts; returns the input shards.

    compared: `pipeline.config.compared_settings` of this run, for the finished-run check; base: the
    launcher's working directory.
    """
    check_output_writable(job.output)
    shards = list_shards(job)
    if not job.overwrite:
        check_previous_run(job.output, compared, base)
    return shards


def list_shards(job: JobSettings) -> tuple[Shard, ...]:
    """Every input shard, after checking that --text_field/--id_field fit what was matched."""
    shards = tuple(match_shards(job.inputs, job.format))
    _check_fields_apply(shards, job.text_field, job.id_field, job.keep_fields)
    _check_structure(shards, job.input_format())
    if job.keep_fields:
        _check_kept_types(shards, job.input_format())
    return shards


def check_output_writable(output: str) -> None:
    """Create a local output directory and write a probe file, so a bad path fails now, not after embedding."""
    if "://" in output:
        return  # object stores: the first write tells, and the job's first step writes nothing before it
    try:
        Path(output).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise JobConfigError(f"--output {output} is not writable: {exc.strerror or exc}") from None


def check_previous_run(output: str, compared: dict[str, object], base: str) -> None:
    """Refuse to replace a finished run whose compared settings differ (the caller skips this for --overwrite).

    compared: `pipeline.config.compared_settings` of this run; base: the launcher's working directory, which
    relative paths in an earlier manifest are read from. A `_SUCCESS` that cannot be read
    (a crash while writing it, a hand edit) does not prove a finished run: it is treated as an
    unfinished one, which the run cleans up.
    """
    path = FileSystems.join(output, SUCCESS_FILE)
    if not FileSystems.exists(path):
        return
    try:
        previous = Manifest.read(path).settings
    except (OSError, ValueError) as exc:
        logger.warning("%s cannot be read (%s); treating --output as an unfinished run and starting over", path, exc)
        return
    before = compared_settings(previous, base)
    changed = [k for k, v in compared.items() if before[k] != v]
    if changed:
        shown = ", ".join(f"{k}: {before[k]!r} -> {compared[k]!r}" for k in changed[:3])
        raise JobConfigError(
            f"--output {output} holds a finished run with different settings ({shown}); pass --overwrite to replace it"
        )


def prepare_output(output: str, compared: dict[str, object], overwrite: bool, base: str) -> None:
    """Check the previous run (unless overwrite), then remove what it left: before anything is written."""
    if not overwrite:
        check_previous_run(output, compared, base)
    clear_previous_output(output)


def _check_fields_apply(shards: tuple[Shard, ...], text_field: str | None, id_field: str | None,
                        keep_fields: tuple[str, ...] = ()) -> None:
    structured = any(s.format in STRUCTURED_FORMATS for s in shards)
    if (text_field or id_field or keep_fields) and not structured:
        raise JobConfigError("--text_field/--id_field/--keep_fields apply to JSON Lines, CSV/TSV and Parquet input, "
                             "but every matched shard is plain text")
    for flag, given in (("--id_field", id_field), ("--keep_fields", keep_fields)):
        if given and any(s.format == "text" for s in shards):
            raise JobConfigError(f"{flag} is set but some matched shards are plain text, which has no fields")


def _check_kept_types(shards: tuple[Shard, ...], fmt: InputFormat) -> None:
    """Parquet shards whose kept columns' types do not unify are a config error now, not a failed job."""
    headed = [s for s in shards if s.format in HEADED_FORMATS]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            observed = merge_observed(pool.map(lambda shard: observe_shard(shard, fmt), headed))
        decide_columns(fmt.keep_fields, observed, text=False)
    except KeptTypeError as exc:
        raise JobConfigError(str(exc)) from None


def _check_structure(shards: tuple[Shard, ...], fmt: InputFormat) -> None:
    """Read each CSV/TSV header and Parquet footer now: a missing --text_field is a config error, not a failed job."""
    checked = [s for s in shards if s.format in HEADED_FORMATS]

    def problem(shard: Shard) -> str | None:
        try:
            stream, _ = open_shard(shard.path)
            with stream:
                return structure_problem(stream, dataclasses.replace(fmt, format=shard.format))
        except (OSError, EOFError, ValueError) as exc:
            return f"cannot read it: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        for shard, found in zip(checked, pool.map(problem, checked), strict=True):
            if found:
                raise JobConfigError(f"{escaped(shard.path)} ({shard.format}): {found}")
