"""What the launcher tells the user at the end: a finished run's summary, a submitted job, a waited-for job's result.

A job handed to a runner that runs it elsewhere (PortableRunner, Dataflow, Flink, ...) is waited for by
default except on Dataflow, whose jobs outlive the launcher by design; the launcher then exits 0 or 1 by
the job's result, as a local run does, so a script or scheduler sees a failed job fail.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from pipeline.formats.manifest import Manifest
from pipeline.formats.output import SUCCESS_FILE
from pipeline.launch.placement import describe_hints

logger = logging.getLogger(__name__)

_CONSOLE = "https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"
# The last line of a worker's traceback that names an exception, e.g.
# "pipeline.errors.JobConfigError: no file matches --input x/* [while running 'ListShards/List']".
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure)): (.+)$")


def summary(manifest: Manifest, seconds: float, output: str) -> str:
    """A few lines for the terminal: counts, throughput, where the output is."""
    counts = manifest.counts
    settings = manifest.settings
    reused = f", {counts['reused']} reused" if counts.get("reused") else ""
    rate = counts["embedded"] / seconds if seconds > 0 else 0.0
    lines = [
        f"embedded {counts['embedded']} of {counts['read']} records "
        f"({counts['skipped']} skipped, {counts['failed']} failed{reused}) in {seconds:.1f} s ({rate:.1f} texts/s)",
        f"model {settings['model']} ({settings['backend']}, {settings['pooling']} pooling, dim {settings['dim']})",
        f"output: {output} ({len(manifest.embeddings)} Parquet files)",
    ]
    perf = manifest.performance
    if perf.get("batches"):
        lines.insert(1, f"{perf['real_tokens_per_second']:,.0f} real tokens/s, padding efficiency "
                        f"{perf['padding_efficiency']:.2f}, {perf['batches']} batches, encoder built "
                        f"{perf['encoder_builds']}x in {perf['worker_processes']} worker process(es)")
    if counts["failed"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in manifest.failed_by_reason.items())
        lines.append(f"failed records ({reasons}) are listed in {output}/failed/")
    return "\n".join(lines)


def is_dry_run(result) -> bool:
    """Whether a Dataflow result is a --dry_run's: the job was built, not sent."""
    proto = getattr(getattr(result, "job", None), "proto", None)
    return proto is not None and not getattr(proto, "id", "")


def submitted(result, output: str, options) -> str:
    """What to tell the user after handing the job to a runner that runs it elsewhere."""
    if is_dry_run(result):
        job = result.job
        transforms = job.proto_pipeline.components.transforms.values()
        steps = sorted(t.unique_name for t in transforms if t.unique_name and "/" not in t.unique_name
                       and not t.unique_name.startswith("ref_"))
        hints = describe_hints(job.proto_pipeline)
        return (f"dry run: built Dataflow job {job.proto.name!r} with steps {', '.join(steps)}; "
                f"{hints + '; ' if hints else ''}nothing was submitted")
    job_id = job_id_of(result)
    line = f"submitted job {job_id}".rstrip() + f"; {output}/{SUCCESS_FILE} appears when it has finished"
    console = console_url(job_id, options)
    return f"{line}\n{console}" if console else line


def runner_name(options) -> str | None:
    """The runner the Beam options choose, by name (None: Beam's default, the DirectRunner)."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) or runner is None else type(runner).__name__


def is_dataflow(options) -> bool:
    """Whether the Beam options choose Google Cloud Dataflow."""
    return runner_name(options) in ("DataflowRunner", "dataflow")


def console_url(job_id: str, options) -> str | None:
    """The Dataflow console page of a submitted job, or None for other runners."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    if not job_id or not is_dataflow(options):
        return None
    cloud = options.view_as(GoogleCloudOptions)
    return _CONSOLE.format(region=cloud.region, job_id=job_id, project=cloud.project)


def waits(wait: bool | None, dataflow: bool, result) -> bool:
    """Whether the launcher waits for a submitted job: --wait/--no_wait, else on every runner but Dataflow."""
    if is_dry_run(result):
        return False
    return not dataflow if wait is None else wait


def wait_for_job(result, output: str, started: float, console: str | None = None) -> int:
    """Wait for a submitted job's end; print its summary (exit code 0) or one line on why it failed (1).

    started: `time.monotonic()` when the launcher started, for the summary's texts/s. console: the job's
    Dataflow page, whose jobs go on when the launcher is stopped; a job on any other runner is cancelled
    on Ctrl-C (it would otherwise run on, unwatched). Raises `JobInterrupted` on Ctrl-C.
    """
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.runners.runner import PipelineState

    from pipeline.launch.interrupt import caused_by_interrupt

    job_id = job_id_of(result)
    committed = FileSystems.join(output, SUCCESS_FILE)
    try:
        state = result.wait_until_finish()
    except BaseException as exc:  # the runner's report of a failed job: exit 1 with its cause
        if isinstance(exc, KeyboardInterrupt) or caused_by_interrupt(exc):
            raise stopped_waiting(result, output, console) from None
        if not isinstance(exc, Exception):
            raise
        logger.debug("job %s failed", job_id, exc_info=True)
        return _failed(f"job {job_id} failed: {failure_line(str(exc))}", committed)
    if state != PipelineState.DONE:
        return _failed(f"job {job_id} ended in state {state}", committed)
    try:
        manifest = Manifest.read(committed)
    except (OSError, ValueError) as exc:
        print(f"error: job {job_id} finished but {committed} cannot be read: {exc}")
        return 1
    print(summary(manifest, time.monotonic() - started, output))
    return 0


def stopped_waiting(result, output: str, console: str | None) -> Exception:
    """The JobInterrupted for a Ctrl-C after submitting: the job is cancelled, or on Dataflow left running."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline.launch.interrupt import JobInterrupted

    job_id, committed = job_id_of(result), FileSystems.join(output, SUCCESS_FILE)

    if console:
        return JobInterrupted(f"stopped waiting; job {job_id} goes on ({console}); {committed} appears when it "
                              "has finished")
    try:
        result.cancel()
    except Exception as exc:  # noqa: BLE001 - the job service may be gone: say so instead of a traceback
        return JobInterrupted(f"interrupted; job {job_id} could not be cancelled ({exc}); it may still write "
                              f"{committed}")
    # Beam 2.77's local job service marks a job cancelled but lets it run to its end (its cancel is a TODO).
    return JobInterrupted(f"interrupted; asked the runner to cancel job {job_id}; nothing is committed yet (a runner "
                          f"that cannot stop it, such as Beam's local job service, still writes {committed})")


def _failed(line: str, committed: str) -> int:
    from apache_beam.io.filesystems import FileSystems

    try:
        finished = FileSystems.exists(committed)
    except Exception:  # noqa: BLE001 - an unreachable store: do not claim either way
        finished = None
    after = {True: f"; {committed} is from an earlier run", False: f"; nothing was committed (no {committed})",
             None: ""}[finished]
    print(f"error: {line}{after}", file=sys.stderr)
    return 1


def failure_line(text: str) -> str:
    """One line from a runner's failure report: the last exception a worker raised, else the report's last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _EXCEPTION_LINE.match(line)
        if found:
            return f"{found.group(1)}: {found.group(2)}"
    return lines[-1] if lines else "no reason given"


def job_id_of(result) -> str:
    """A submitted job's id on any runner ("" when it has none)."""
    job_id = getattr(result, "job_id", None)
    return (job_id() if callable(job_id) else getattr(result, "_job_id", None)) or ""
