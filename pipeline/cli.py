"""`python -m pipeline`: embed text shards into Parquet with a BERT encoder.

Exit codes: 0 success; 2 configuration error (one line on stderr, found before the
pipeline starts); 1 the pipeline failed; 130 interrupted by Ctrl-C (one line, nothing committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import re
import sys
import time

from encoders import EncoderSpec
from encoders.declare import AUTO, Setting, declared, from_mapping, local_paths, parse_auto_int, with_absolute_paths
from pipeline.calibration import with_ranges
from pipeline.command import MISTAKES, OneLineErrorParser, configure_logging, said
from pipeline.config import JobConfig, compared_settings, job_config
from pipeline.errors import JobConfigError
from pipeline.launch.interrupt import JobInterrupted, interruptible
from pipeline.launch.outcome import (
    console_url,
    is_dataflow,
    job_id_of,
    runner_name,
    stopped_waiting,
    submitted,
    summary,
    wait_for_job,
    waits,
)
from pipeline.launch.placement import check_placement
from pipeline.preflight import preflight_checks
from pipeline.settings import SETTINGS_CLASSES, JobSettings

logger = logging.getLogger(__name__)

EPILOG = """Any standard Apache Beam pipeline option is accepted too, e.g. --runner DirectRunner,
--direct_num_workers 2 --direct_running_mode multi_processing, or the DataflowRunner's options."""


GROUPS = ("input and output", "model", "batching", "running", "Dataflow")  # --help's sections, in this order


def build_parser() -> argparse.ArgumentParser:
    """The job's own flags, derived from the settings declarations; Beam's are passed through untouched."""
    parser = OneLineErrorParser(
        error_type=JobConfigError,
        prog="python -m pipeline",
        description="Embed every text of some shards with a BERT encoder and write the vectors as Parquet.",
        epilog=EPILOG,
    )
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for cls in SETTINGS_CLASSES:
        for item in declared(cls):
            if item.flag:
                _add_flag(groups[item.declaration.group], item)
    return parser


def _add_flag(group: argparse._ArgumentGroup, item: Setting) -> None:
    """One setting as argparse flags: a value, a repeatable value, a switch, or a --x/--no_x pair."""
    declaration = item.declaration
    flag = f"--{item.flag}"
    if item.kind is bool:
        if declaration.negation is None:
            group.add_argument(flag, dest=item.name, action="store_true", help=declaration.help)
            return
        negation, negation_help = declaration.negation
        pair = group.add_mutually_exclusive_group()
        pair.add_argument(flag, dest=item.name, action="store_true", default=None, help=declaration.help)
        pair.add_argument(f"--{negation}", dest=item.name, action="store_false", help=negation_help)
        return
    options: dict = {"dest": item.name, "help": declaration.help, "metavar": declaration.metavar}
    if item.kind is tuple:  # repeatable, and several values at once: what the shell makes of an unquoted glob
        options.update(action="extend", nargs="+", default=None)
    elif declaration.auto:
        options.update(type=_auto_int, default=item.default, metavar=f"{declaration.metavar or 'N'}|{AUTO}")
    else:
        options.update(type=item.kind, default=item.default, choices=declaration.allowed())
        if options["choices"]:
            del options["metavar"]
    group.add_argument(flag, **options)


def _auto_int(text: str) -> int | None:
    try:
        return parse_auto_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or {AUTO}, got {text!r}") from None


def settings_from_args(args: argparse.Namespace, base: str | None = None) -> tuple[JobSettings, EncoderSpec]:
    """The typed settings from parsed flags, with {run_date}/{previous_date} filled in the paths.

    Local paths are made absolute from base (default: the working directory), so a worker that runs
    in another directory reads the same files and the manifest says where they were.
    """
    base = base or os.getcwd()
    given = vars(args)
    run_date = parse_run_date(given.get("run_date"))
    dated = {}
    for item in declared(JobSettings):
        value = given.get(item.name)
        if item.declaration.dated and value:
            dated[item.name] = (tuple(expand_dates(v, run_date) for v in value) if isinstance(value, (tuple, list))
                                else expand_dates(value, run_date))
    given = {**given, **dated, "run_date": run_date.isoformat()}
    job = from_mapping(JobSettings, with_absolute_paths(given, JobSettings, base))
    return job, from_mapping(EncoderSpec, with_absolute_paths(given, EncoderSpec, base))


def prepare(argv: list[str]) -> tuple[JobConfig, object, bool]:
    """(JobConfig, Beam PipelineOptions, runs locally) from the command line.

    Local runs also pass every storage check here (`pipeline.preflight`); a distributed job's
    workers run the same checks as its first steps. Raises JobConfigError or EncoderConfigError.
    """
    args, beam_args = build_parser().parse_known_args(argv)
    options = _beam_options(beam_args)
    local, progress = _execution(options, args.progress)
    _check_dataflow_options(options)
    base = os.getcwd()
    job, spec = settings_from_args(args, base)
    if is_dataflow(options):
        _refuse_local_paths((job, spec), base)
    _check_embed_accelerator(job, options, local)
    config = job_config(job, spec, distributed=not local, progress=progress, launch_dir=base)
    config = dataclasses.replace(config, encoder_spec=with_ranges(config.encoder_spec, job))  # int8/uint8
    if local:
        compared = compared_settings(config.settings(), base)
        config = dataclasses.replace(config, shards=preflight_checks(job, compared, base))
    if is_dataflow(options) and spec.model is None:
        from apache_beam.options.pipeline_options import WorkerOptions

        if not options.view_as(WorkerOptions).sdk_container_image:
            logger.warning("the default model is installed by the worker image (deploy/worker/Dockerfile), not by "
                           "--setup_file: pass --sdk_container_image, or --model with a gs:// model directory")
    return config, options, local


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    try:
        with interruptible():
            config, options, local = prepare(argv)
    except MISTAKES as exc:
        return said(exc)
    except JobInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    from pipeline.stages.graph import run_job, submit_job

    started = time.monotonic()
    try:
        with interruptible(config.output):
            if not local:
                result = submit_job(config, options)
                return follow_job(result, config, options, started)
            manifest = run_job(config, options)
    except JobInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: exit 1 with the cause
        logger.exception("pipeline failed")
        print(f"error: pipeline failed: {exc}", file=sys.stderr)
        return 1
    print(summary(manifest, time.monotonic() - started, config.output))
    return 0


def follow_job(result, config: JobConfig, options, started: float) -> int:
    """After submitting: say so, then wait for the job's end unless told not to; returns the exit code.

    From the moment the job exists, a Ctrl-C asks its runner to cancel it (Dataflow: stops waiting) and
    says what became of it, however early it comes.
    """
    console = console_url(job_id_of(result), options)
    try:
        print(submitted(result, config.output, options), flush=True)  # flushed: a scheduler's log shows it now
        if not waits(config.job.wait, is_dataflow(options), result):
            return 0
        return wait_for_job(result, config.output, started, console)
    except KeyboardInterrupt:
        raise stopped_waiting(result, config.output, console) from None


def _refuse_local_paths(settings: tuple[object, ...], base: str) -> None:
    """Dataflow's workers cannot read the launcher's disk: a local path is a config error, found before submitting."""
    for instance in settings:
        for item, value in local_paths(instance, base):
            raise JobConfigError(f"--{item.flag} {value} is on this machine's disk, which Dataflow's workers "
                                 "cannot read: copy it to Cloud Storage and give its gs:// path")


def _check_dataflow_options(options) -> None:
    """What Dataflow would reject after the job is built, checked offline (Beam's validator calls GCS)."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    if not is_dataflow(options):
        return
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.project or not re.fullmatch(r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]", cloud.project):
        raise JobConfigError(f"the DataflowRunner needs --project with a project ID, got {cloud.project!r}")
    if not cloud.region:
        raise JobConfigError("the DataflowRunner needs --region, e.g. --region us-central1")
    if not (cloud.temp_location or "").startswith("gs://"):
        raise JobConfigError("the DataflowRunner needs --temp_location gs://BUCKET/tmp")
    for flag, location in (("--temp_location", cloud.temp_location), ("--staging_location", cloud.staging_location)):
        # Beam reacts to a bucket name GCS would refuse by creating a default bucket over the network (it hangs
        # offline); one line here instead. Names: lower case letters, digits, -, _ and ., 3 to 63 between dots.
        if location and not _GCS_LOCATION.fullmatch(location):
            raise JobConfigError(f"{flag} {location} is not a Cloud Storage location (gs://bucket/path, the bucket "
                                 "name in lower case letters, digits, -, _ and .)")


def _check_embed_accelerator(job: JobSettings, options, local: bool) -> None:
    """--embed_accelerator against the Beam options it must not be combined with (`pipeline.launch.placement`)."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions, WorkerOptions

    check_placement(job.embed_accelerator, local=local,
                    service_options=options.view_as(GoogleCloudOptions).dataflow_service_options or (),
                    resource_hints=options.view_as(StandardOptions).resource_hints or (),
                    machine_type=options.view_as(WorkerOptions).machine_type)


def parse_run_date(value: str | None) -> datetime.date:
    """--run_date as a date; today in UTC when unset (a nightly scheduler's run date)."""
    if value is None:
        return datetime.datetime.now(datetime.UTC).date()
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise JobConfigError(f"--run_date must be a date like 2026-11-25, got {value!r}") from None


def expand_dates(pattern: str, run_date: datetime.date) -> str:
    """Fill {run_date} and {previous_date} (the day before) as YYYY-MM-DD; other braces are left alone."""
    previous = run_date - datetime.timedelta(days=1)
    return pattern.replace("{run_date}", run_date.isoformat()).replace("{previous_date}", previous.isoformat())


def _beam_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    unknown = [a for a in beam_args if a.startswith("-") and a.split("=")[0] not in _beam_flags()]
    if unknown:
        raise JobConfigError(f"unknown option {unknown[0]} (see --help; Beam options are accepted too)")
    # A word that is no flag's value: most often the second file of a glob the shell expanded
    # (--skip_existing out/*.parquet unquoted), which Beam would drop with a warning, running on the first alone.
    stray = [a for i, a in enumerate(beam_args)
             if not a.startswith("-") and not (i and beam_args[i - 1].startswith("-") and "=" not in beam_args[i - 1])]
    if stray:
        raise JobConfigError(f"unexpected argument {stray[0]} ({len(stray)} in all): quote glob patterns so the "
                             "shell leaves them to the job, e.g. --skip_existing 'out/*.parquet'")
    return PipelineOptions(beam_args)


_GCS_LOCATION = re.compile(r"gs://[a-z0-9](?:[a-z0-9_.-]{1,220})?[a-z0-9](?:/.*)?")
LOCAL_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "PrismRunner",
                 "FnApiRunner"}


def _execution(options, progress: str) -> tuple[bool, str]:
    """(runs on this machine, progress mode) from the Beam options."""
    from apache_beam.options.pipeline_options import DirectOptions

    local = runner_name(options) in LOCAL_RUNNERS
    if progress != "auto":
        return local, progress
    if not local:
        return local, "off"
    in_process = options.view_as(DirectOptions).direct_running_mode in (None, "in_memory")
    return local, "terminal" if in_process and sys.stderr.isatty() else "log"


def _beam_flags() -> set[str]:
    """Every flag some Beam PipelineOptions class defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # a flag defined twice by two classes; the first definition is enough
    return {flag for action in parser._actions for flag in action.option_strings}
