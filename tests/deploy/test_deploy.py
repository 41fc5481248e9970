"""The deploy artifacts agree with the CLI: template metadata, launch request, Dockerfiles, cron entry.

Each test fails when the artifact drifts from the flags the job takes (regenerate with
`make deploy-files`).
"""

import json
import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest

from encoders.declare import Setting, declared
from pipeline.cli import build_parser, prepare
from pipeline.settings import SETTINGS_CLASSES
from pipeline.template import launch_body, launcher_argv, read_gpu_flags, template_metadata, with_flags_table

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
DRY_RUN = ["--runner", "DataflowRunner", "--dry_run=True", "--no_auth", "--sdk_location=container",
           "--project", "my-project", "--region", "us-central1", "--temp_location", "gs://bucket/tmp"]


def declared_flags() -> dict[str, Setting]:
    return {item.flag: item for cls in SETTINGS_CLASSES for item in declared(cls) if item.flag}


def test_committed_metadata_is_generated_from_the_settings_declarations():
    committed = json.loads((DEPLOY / "flex-template" / "metadata.json").read_text())
    assert committed == template_metadata()


def test_readme_flag_table_is_generated_from_the_settings_declarations():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert with_flags_table(readme) == readme
    for flag in declared_flags():
        assert f"`--{flag}" in readme


def test_every_setting_is_a_template_parameter_with_a_regex_that_accepts_its_values():
    parameters = {p["name"]: p for p in template_metadata()["parameters"]}
    assert set(declared_flags()) <= set(parameters)
    for name, item in declared_flags().items():
        regexes = [re.compile(r) for r in parameters[name].get("regexes", [])]
        values = ["true", "false"] if item.kind is bool else [str(c) for c in item.declaration.allowed() or []]
        if item.kind is int:
            values.append(str(item.default or 1))
        for value in values:
            assert all(r.fullmatch(value) for r in regexes), (name, value)
        if regexes:
            assert not all(r.fullmatch("no such value") for r in regexes), name
    assert not parameters["input"]["isOptional"] and parameters["snapshot"]["regexes"] == ["^(true|false)$"]
    assert parameters["run_date"]["regexes"] == ["^[0-9]{4}-[0-9]{2}-[0-9]{2}$"]


def test_launcher_turns_true_false_parameters_into_switches():
    argv = ["--input=gs://b/in/*.txt", "--snapshot=true", "--overwrite=false", "--jit_compile=True"]
    assert launcher_argv(argv) == ["--input=gs://b/in/*.txt", "--snapshot", "--jit_compile", "--runner=DataflowRunner"]
    assert launcher_argv(["--runner", "DirectRunner"]) == ["--runner", "DirectRunner"]


def test_false_means_the_negation_for_every_switch_pair():
    """normalize=false used to be dropped, so the model's default (normalised) applied anyway."""
    pairs = [item for item in declared_flags().values() if item.declaration.negation]
    assert pairs  # --normalize/--no_normalize at least
    io = ["--input=gs://b/in/*.txt", "--output=gs://b/out"]
    for item in pairs:
        for value, expected in (("false", False), ("true", True)):
            argv = launcher_argv([*io, f"--{item.flag}={value}"]) + DRY_RUN
            config, _, _ = prepare(argv)
            owner = config.job if hasattr(config.job, item.name) else config.encoder_spec
            assert getattr(owner, item.name) is expected, (item.flag, value)
    config, _, _ = prepare(launcher_argv(io) + DRY_RUN)
    assert config.encoder_spec.normalize is True  # not given: the default model's own config normalises


def committed_body(name: str = "launch-body.json") -> dict:
    return json.loads((DEPLOY / "scheduler" / name).read_text())


RIGHTFIT_FLAGS = DEPLOY / "dataflow-gpu-rightfit.flags"
# Each scheduler request and the flags file it is generated from (`make deploy-files`).
REQUESTS = [("launch-body.json", DEPLOY / "dataflow-gpu.flags"), ("launch-body-rightfit.json", RIGHTFIT_FLAGS)]


@pytest.mark.parametrize(("body_file", "flags_file"), REQUESTS)
def test_scheduler_body_is_built_from_the_gpu_flags_and_template_parameters(body_file, flags_file):
    body = committed_body(body_file)["launchParameter"]
    names = {p["name"] for p in template_metadata()["parameters"]}
    assert set(body["parameters"]) <= names
    own_flags = {item.lstrip("-").partition("=")[0] for item in read_gpu_flags(flags_file)}
    own = {k: v for k, v in body["parameters"].items() if k not in own_flags}  # the nightly's own parameters
    flags = [*read_gpu_flags(flags_file), f"--sdk_container_image={body['environment']['sdkContainerImage']}"]
    rebuilt = launch_body(body["jobName"], body["containerSpecGcsPath"], own, flags,
                          body["environment"]["tempLocation"])
    assert rebuilt == committed_body(body_file)


def test_both_scheduler_requests_launch_the_same_nightly_job():
    """The right-fitted request differs only in where the GPUs are: the embedding step's hint, a CPU default pool."""
    every, rightfit = (committed_body(name)["launchParameter"] for name, _ in REQUESTS)
    assert "worker_accelerator" in every["parameters"].pop("dataflow_service_options")
    assert rightfit["parameters"].pop("embed_accelerator").startswith("type:nvidia-l4;count:1;")
    assert every["parameters"] == rightfit["parameters"]
    assert (every["environment"].pop("machineType"), rightfit["environment"].pop("machineType")) == \
        ("g2-standard-8", "n2-standard-2")
    assert every["environment"] == rightfit["environment"]


def test_right_fitted_flags_build_a_dataflow_job_with_gpus_on_the_embedding_step_alone():
    """The flags file as the README's command line uses it; the dry run's own proto says where the hint is."""
    from apache_beam.runners.dataflow.internal import apiclient

    from pipeline.launch.placement import hinted_steps
    from pipeline.stages.graph import submit_job

    flags = read_gpu_flags(RIGHTFIT_FLAGS)
    assert not any("worker_accelerator" in flag for flag in flags)
    io = ["--input", "gs://bucket/in/*.jsonl", "--output", "gs://bucket/out", "--id_field", "id"]
    config, options, local = prepare([*DRY_RUN, *io, *flags])
    assert not local and config.job.embed_accelerator
    job = submit_job(config, options).job
    assert hinted_steps(job.proto_pipeline) == {("accelerator", config.job.embed_accelerator): ["EmbedAndStage"]}
    env = apiclient.Environment(packages=[], options=job.options, environment_version="8",
                                proto_pipeline_staged_url="gs://bucket/tmp/pipeline.pb",
                                proto_pipeline=job.proto_pipeline).proto
    assert list(env.service_options) == [] and env.worker_pools[0].machine_type == "n2-standard-2"


def test_the_program_accepts_what_the_right_fitted_scheduler_launches():
    parameters = committed_body("launch-body-rightfit.json")["launchParameter"]["parameters"]
    argv = launcher_argv([f"--{k}={v}" for k, v in parameters.items()]) + DRY_RUN + ["--run_date", "2026-11-25"]
    config, _, local = prepare(argv)
    assert not local and config.job.embed_accelerator == parameters["embed_accelerator"]
    assert config.output.endswith("dt=2026-11-25") and config.job.snapshot


def test_the_program_accepts_what_the_scheduler_launches():
    """The launcher gets every parameter as --name=value; the CLI must build a job from them."""
    parameters = committed_body()["launchParameter"]["parameters"]
    argv = launcher_argv([f"--{k}={v}" for k, v in parameters.items()]) + DRY_RUN + ["--run_date", "2026-11-25"]
    config, options, local = prepare(argv)
    assert not local and config.job.snapshot and config.output.endswith("dt=2026-11-25")
    assert config.job.skip_existing.endswith("dt=2026-11-24/*.parquet")


def test_gpu_launches_choose_precision_and_batch_budget_on_the_workers():
    """dataflow-gpu.flags carries --precision=auto into the launch; the token budget is automatic by default."""
    parameters = committed_body()["launchParameter"]["parameters"]
    assert parameters["precision"] == "auto"
    config, _, _ = prepare(launcher_argv([f"--{k}={v}" for k, v in parameters.items()]) + DRY_RUN)
    assert (config.encoder_spec.precision, config.encoder_spec.max_tokens_per_batch) == ("auto", None)
    own = launch_body("j", "gs://b/t.json", {"precision": "float32"}, read_gpu_flags())
    assert own["launchParameter"]["parameters"]["precision"] == "float32"  # a launch's own value wins


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            assert instruction.upper() in {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "ENTRYPOINT", "CMD",
                                           "LABEL", "USER"}, line
            out.append((instruction.upper(), rest.strip()))
    return out


def test_worker_image_is_beams_sdk_image_of_our_pinned_version():
    steps = dockerfile(DEPLOY / "worker" / "Dockerfile")
    base = [args for op, args in steps if op == "FROM"]
    assert base == [f"apache/beam_python3.11_sdk:{version('apache-beam')}"]
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert pins["apache-beam"] == version("apache-beam")
    run = " ".join(args for op, args in steps if op == "RUN")
    assert f"tensorflow[and-cuda]=={pins['tensorflow']}" in run and "--constraint constraints.txt" in run
    for op, args in steps:
        if op == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), source


def test_launcher_image_runs_the_template_entry_point_it_copies():
    steps = dockerfile(DEPLOY / "flex-template" / "Dockerfile")
    copied = {shlex.split(args)[-1]: shlex.split(args)[0] for op, args in steps if op == "COPY"}
    env = " ".join(args for op, args in steps if op == "ENV")
    entry = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", env).group(1)
    assert (REPO / copied[entry]).is_file()
    assert "python_template_launcher" in dict(steps)["ENTRYPOINT"]


def test_cron_entry_uses_flags_the_cli_knows():
    line = next(x for x in (DEPLOY / "cron" / "embedding.cron").read_text().splitlines()
                if x and not x.startswith(("#", "CRON_TZ")))
    command = shlex.split(line.split(" ", 5)[5].split(">>")[0])
    argv = command[command.index("pipeline") + 1:]
    args, unknown = build_parser().parse_known_args(argv)
    assert unknown == [] and args.snapshot and "{previous_date}" in args.skip_existing


@pytest.mark.parametrize("script", ["build_images.sh", "build_template.sh", "launch.sh", "scheduler/create_job.sh"])
def test_deploy_scripts_are_valid_bash(script):
    import subprocess

    assert subprocess.run(["bash", "-n", str(DEPLOY / script)]).returncode == 0


def test_the_package_dataflow_stages_holds_our_code_and_nothing_else(tmp_path):
    """Beam's stager runs `setup.py sdist` for --setup_file; tests, venvs and outputs must stay out."""
    import subprocess
    import sys
    import tarfile

    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True)
    (archive,) = tmp_path.glob("*.tar.gz")
    names = [n.split("/", 1)[1] for n in tarfile.open(archive).getnames() if "/" in n]
    top = {n.split("/")[0] for n in names if n}
    assert {"pipeline", "encoders", "setup.py"} <= top
    assert top <= {"pipeline", "encoders", "setup.py", "setup.cfg", "pyproject.toml", "README.md", "PKG-INFO",
                   "bert_embedding_job.egg-info"}
    assert "pipeline/stages/graph.py" in names and "encoders/base.py" in names


def test_airflow_dag_loads_in_a_real_airflow_and_launches_what_the_scheduler_does(tmp_path):
    """Airflow lives in its own virtualenv (make test builds it and sets AIRFLOW_PYTHON); we do not depend on it."""
    import os
    import shutil
    import subprocess

    python = os.environ.get("AIRFLOW_PYTHON")
    if not python:
        pytest.skip("AIRFLOW_PYTHON is not set; `make test` installs Airflow in .venv-airflow and sets it")
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DEPLOY / "airflow" / "embedding_nightly.py", dags)
    shutil.copy(DEPLOY / "scheduler" / "launch-body.json", dags)
    seen_file = tmp_path / "seen.json"
    done = subprocess.run([python, str(Path(__file__).with_name("airflow_check.py")), str(dags), "2026-11-25",
                           str(seen_file)],
                          capture_output=True, text=True, env={**os.environ, "AIRFLOW_HOME": str(tmp_path / "home")},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(seen_file.read_text())
    assert seen["operator"] == "DataflowStartFlexTemplateOperator" and seen["schedule"] == "0 2 * * *"
    launch = seen["body"]["launchParameter"]
    expected = committed_body()["launchParameter"]
    assert launch["jobName"] == "embed-20261125"
    assert launch["parameters"] == {**expected["parameters"], "run_date": "2026-11-25"}
    assert launch["environment"] == expected["environment"]
    assert launch["containerSpecGcsPath"] == expected["containerSpecGcsPath"]
    argv = launcher_argv([f"--{k}={v}" for k, v in launch["parameters"].items()]) + DRY_RUN
    config, _, _ = prepare(argv)
    assert config.output.endswith("dt=2026-11-25")


def test_worker_image_and_make_install_include_the_hub_preprocessing_and_gpu_extras():
    run = " ".join(args for op, args in dockerfile(DEPLOY / "worker" / "Dockerfile") if op == "RUN")
    makefile = (REPO / "Makefile").read_text().splitlines()
    install = next(line for line in makefile if "pip install" in line and " -e " in line)
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    image_extras = set(re.search(r'"\.\[([\w,-]+)\]"', run).group(1).split(","))
    install_extras = set(re.search(r'"\.\[([\w,-]+)\]"', install).group(1).split(","))
    assert {"hub-preprocessing", "gpu"} <= image_extras and {"hub-preprocessing", "gpu"} <= install_extras
    assert pins["tensorflow-text"] == version("tensorflow-text")
    assert pins["nvidia-ml-py"] == version("nvidia-ml-py")
