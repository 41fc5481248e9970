"""The distributed path on one machine: Beam's job service and an SDK worker pool, then the job through them.

    python -m pipeline.portable --input 'examples/*' --output out [any job flag]

The job is submitted as Dataflow would get it: the pipeline crosses Beam's Job API as a proto, the
launcher returns to waiting, and the job runs in an SDK worker that is not the launcher's child and
has its own working directory; inputs are listed, the output prepared and the run committed there.
Both services ship in the apache-beam wheel (no Java, no download). What it does not show: more than
one worker (the local job service runs one SDK worker per job; `--direct_num_workers` is ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_JOB_SERVICE = "apache_beam.runners.portability.local_job_service_main"
_WORKER_POOL = "apache_beam.runners.worker.worker_pool_main"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class PortableServices:
    """A running job service and worker pool on loopback ports."""

    job_port: int
    pool_port: int
    pids: tuple[int, ...]
    workdir: str  # the services' (and so the SDK workers') working directory

    def runner_args(self) -> list[str]:
        """The Beam options that send a job to these services."""
        return ["--runner", "PortableRunner", "--job_endpoint", f"localhost:{self.job_port}",
                "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{self.pool_port}"]


def free_port() -> int:
    """A loopback TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def portable_services(workdir: str | None = None) -> Iterator[PortableServices]:
    """Start the job service and the worker pool, wait until both answer; stop them (and their workers) on exit.

    Each service runs in a process group of its own, so stopping it by pid also stops the SDK workers
    the pool started. The pool starts workers with the plain command `python`: this interpreter's
    directory goes first on their PATH, so they run in this environment.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="beam-portable-"))
        env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
        job_port, pool_port = free_port(), free_port()
        processes: list[subprocess.Popen] = []
        stack.callback(_stop, processes)
        for name, module, flag, port in (("job service", _JOB_SERVICE, "--port", job_port),
                                         ("worker pool", _WORKER_POOL, "--service_port", pool_port)):
            log = stack.enter_context(open(Path(workdir) / f"{name.replace(' ', '-')}.log", "wb"))
            processes.append(subprocess.Popen([sys.executable, "-m", module, flag, str(port)], cwd=workdir, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            _wait_until_listening(processes[-1], port, name, Path(log.name))
        logger.info("Beam job service on localhost:%d, SDK worker pool on localhost:%d (in %s)",
                    job_port, pool_port, workdir)
        yield PortableServices(job_port, pool_port, tuple(p.pid for p in processes), workdir)


def _wait_until_listening(process: subprocess.Popen, port: int, name: str, log: Path) -> None:
    """Return once a gRPC channel to the port is ready (the service answers), or raise with the service's log."""
    import grpc

    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                said = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the {name} exited with {process.returncode}: {said}")
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"the {name} did not answer on port {port} within {START_TIMEOUT_S:.0f} s; see {log}")


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each service's process group, SIGKILL what is left after a grace period."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group: a worker the pool started may outlive it
        process.wait()


def main(argv: list[str] | None = None) -> int:
    """Start the services, run `python -m pipeline ARGV` through them, stop them; returns the job's exit code."""
    from pipeline.cli import main as run_job
    from pipeline.command import configure_logging

    parser = argparse.ArgumentParser(prog="python -m pipeline.portable", description=__doc__.split("\n\n")[0],
                                     epilog="Every other flag is passed to python -m pipeline.", add_help=False)
    parser.add_argument("--help", "-h", action="help")
    _, rest = parser.parse_known_args(argv)
    configure_logging()
    with portable_services() as services:
        return run_job([*rest, *services.runner_args()])


if __name__ == "__main__":
    sys.exit(main())
