"""The Dataflow Flex Template face of the CLI: metadata.json, launch requests, and the launcher's entry point.

Everything here is derived from the settings declarations (`pipeline.settings`, `encoders.spec`)
and from deploy/dataflow-gpu.flags, so the template, the Cloud Scheduler request and the Airflow
DAG cannot drift from the flags the job takes.

    python -m pipeline.template metadata               > deploy/flex-template/metadata.json
    python -m pipeline.template launch-body [options]  > deploy/scheduler/launch-body.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from encoders.declare import Setting, declared
from pipeline.cli import SETTINGS_CLASSES

TEMPLATE_NAME = "bert-embedding-job"
GPU_FLAGS_FILE = Path(__file__).resolve().parents[1] / "deploy" / "dataflow-gpu.flags"
# Beam options a template run passes to the program as parameters (the runtime environment has no field
# for them); the rest of the GPU flags map onto the launch request's environment.
PASS_THROUGH = {
    "dataflow_service_options": "Dataflow service options, e.g. "
                                "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
}
REQUIRED = ("inputs", "output")  # settings a template run must be given
_ENVIRONMENT_FIELDS = {"machine_type": "machineType", "disk_size_gb": "diskSizeGb",
                       "sdk_container_image": "sdkContainerImage", "max_num_workers": "maxWorkers"}
_TRUE_FALSE = "^(true|false)$"


def _flagged() -> list[Setting]:
    return [item for cls in SETTINGS_CLASSES for item in declared(cls) if item.flag]


def _regex(item: Setting) -> str | None:
    declaration = item.declaration
    if item.kind is bool:
        return _TRUE_FALSE
    if declaration.allowed():
        return "^(" + "|".join(re.escape(str(c)) for c in declaration.allowed()) + ")$"
    if item.kind is int:
        return "^[0-9]+$" if (declaration.minimum or 0) >= 0 else "^-?[0-9]+$"
    if declaration.pattern:
        return f"^{declaration.pattern}$"
    return None


def template_parameters() -> list[dict]:
    """One Flex Template parameter per declared setting (booleans take true/false), plus the Beam pass-throughs."""
    parameters = []
    for item in _flagged():
        parameter = {
            "name": item.flag,
            "label": item.flag.replace("_", " ").capitalize(),
            "helpText": re.sub(r"\s+", " ", item.declaration.help.replace("%%", "%")),
            "isOptional": item.name not in REQUIRED,
        }
        regex = _regex(item)
        if regex:
            parameter["regexes"] = [regex]
        parameters.append(parameter)
    for name, help_text in PASS_THROUGH.items():
        parameters.append({"name": name, "label": name.replace("_", " ").capitalize(), "helpText": help_text,
                           "isOptional": True})
    return parameters


def template_metadata() -> dict:
    """The Flex Template's metadata.json."""
    return {
        "name": TEMPLATE_NAME,
        "description": "Embed every text of some shards with a BERT encoder and write the vectors as Parquet "
                       "(one file per shard part, dead letters in failed/, a _SUCCESS manifest written last).",
        "parameters": template_parameters(),
    }


def launcher_argv(argv: Sequence[str]) -> list[str]:
    """Turn a template run's `--flag=true|false` into the CLI's switches.

    Dataflow passes every parameter as `--name=value`; argparse switches take no value. `true`
    gives `--flag`; `false` gives the setting's negation (`--normalize=false` -> `--no_normalize`)
    or, for a plain switch whose default is off, nothing. A template always runs on Dataflow, so
    the runner defaults to it rather than to the local DirectRunner.
    """
    switches = {f"--{item.flag}": item for item in _flagged() if item.kind is bool}
    out = []
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag in switches and value.lower() in ("true", "false"):
            negation = switches[flag].declaration.negation
            if value.lower() == "true":
                out.append(flag)
            elif negation is not None:
                out.append(f"--{negation[0]}")
            continue
        out.append(arg)
    if not any(a == "--runner" or a.startswith("--runner=") for a in out):
        out.append("--runner=DataflowRunner")
    return out


def read_gpu_flags(path: Path = GPU_FLAGS_FILE) -> list[str]:
    """The Beam flags for GPU workers, one per line (comments and blank lines skipped)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def launch_body(job_name: str, template_path: str, parameters: dict[str, str], flags: Sequence[str],
                temp_location: str | None = None) -> dict:
    """A flexTemplates:launch request body: parameters for the program, GPU flags split into environment fields."""
    parameters = dict(parameters)
    environment: dict[str, object] = {}
    experiments = []
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name == "experiments":
            experiments.append(value)
        elif name in _ENVIRONMENT_FIELDS:
            environment[_ENVIRONMENT_FIELDS[name]] = int(value) if name in ("disk_size_gb", "max_num_workers") \
                else value
        elif name in PASS_THROUGH:
            parameters[name] = value
        else:
            raise ValueError(f"no place in a Flex Template launch for {flag}")
    if experiments:
        environment["additionalExperiments"] = experiments
    if temp_location:
        environment["tempLocation"] = temp_location
    return {"launchParameter": {"jobName": job_name, "containerSpecGcsPath": template_path,
                                "parameters": parameters, "environment": environment}}


def main(argv: list[str] | None = None) -> int:
    """Print metadata.json or a launch body (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.template")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("metadata")
    body = commands.add_parser("launch-body")
    body.add_argument("--job_name", default="embed-nightly")
    body.add_argument("--template", default="gs://BUCKET/templates/bert-embedding-job.json")
    body.add_argument("--temp_location", default="gs://BUCKET/tmp")
    body.add_argument("--sdk_container_image", default="REGION-docker.pkg.dev/PROJECT/embedding/worker:0.1.0")
    body.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    if args.command == "metadata":
        document = template_metadata()
    else:
        parameters = dict(p.split("=", 1) for p in args.parameter)
        flags = [*read_gpu_flags(), f"--sdk_container_image={args.sdk_container_image}"]
        document = launch_body(args.job_name, args.template, parameters, flags, args.temp_location)
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
