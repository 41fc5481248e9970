"""Building the Dataflow job offline (the DataflowRunner's dry run): what it would submit, with no network."""

import datetime
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient

from pipeline.cli import expand_dates, prepare
from pipeline.stages.graph import submit_job

REPO = Path(__file__).resolve().parents[2]
DRY_RUN = ["--runner", "DataflowRunner", "--dry_run=True", "--no_auth", "--sdk_location=container",
           "--project", "my-project", "--region", "us-central1", "--temp_location", "gs://bucket/tmp"]
IO = ["--input", "gs://bucket/in/*.txt", "--output", "gs://bucket/out/dt={run_date}"]
IMAGE = "us-central1-docker.pkg.dev/my-project/embedding/worker:0.1.0"


def gpu_flags() -> list[str]:
    lines = (REPO / "deploy" / "dataflow-gpu.flags").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def environment_request(job) -> object:
    """The Environment part of the job request, as the runner builds it right before sending."""
    return apiclient.Environment(
        packages=[], options=job.options, environment_version="8",
        proto_pipeline_staged_url="gs://bucket/tmp/pipeline.pb", proto_pipeline=job.proto_pipeline,
    ).proto


def test_dry_run_from_the_command_line_exits_0_within_a_minute():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", *DRY_RUN, *IO], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dry run: built Dataflow job" in done.stdout
    assert time.monotonic() - started < 60


def test_gpu_job_has_the_accelerator_container_experiments_and_main_steps():
    config, options, local = prepare([*DRY_RUN, *IO, "--run_date", "2026-11-25", "--sdk_container_image", IMAGE,
                                      *gpu_flags()])
    assert not local and config.shards is None  # the launcher lists nothing: a worker does
    assert config.output == "gs://bucket/out/dt=2026-11-25"
    job = submit_job(config, options).job

    env = environment_request(job)
    assert "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in list(env.service_options)
    assert {"no_use_multiple_sdk_containers", "use_runner_v2"} <= set(env.experiments)
    pool = env.worker_pools[0]
    assert pool.machine_type == "g2-standard-8" and pool.disk_size_gb == 50
    assert [i.container_image for i in pool.sdk_harness_container_images] == [IMAGE]

    docker = [beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
              for e in job.proto_pipeline.components.environments.values()]
    assert docker == [IMAGE]
    steps = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"ListShards", "PrepareOutput", "Read", "SpreadParts", "EmbedAndStage", "Commit"} <= steps
    assert job.options.view_as(GoogleCloudOptions).dataflow_service_options
    assert "no_use_multiple_sdk_containers" in job.options.view_as(DebugOptions).experiments
    assert job.options.view_as(WorkerOptions).machine_type == "g2-standard-8"


def test_setup_file_job_builds_too():
    config, options, _ = prepare([*DRY_RUN, *IO, "--setup_file", str(REPO / "setup.py")])
    job = submit_job(config, options).job
    assert "Read" in {t.unique_name for t in job.proto_pipeline.components.transforms.values()}


def test_run_date_placeholders():
    day = datetime.date(2026, 3, 1)
    assert expand_dates("gs://b/out/dt={run_date}/", day) == "gs://b/out/dt=2026-03-01/"
    assert expand_dates("gs://b/out/dt={previous_date}/*.parquet", day) == "gs://b/out/dt=2026-02-28/*.parquet"


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "25/11/2026"])
def test_a_bad_run_date_exits_2(value, capsys):
    from pipeline.cli import main

    assert main([*IO, "--run_date", value]) == 2
    assert "--run_date must be a date like" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("drop", "message"),
    [("--project", "needs --project"), ("--region", "needs --region"), ("--temp_location", "needs --temp_location")],
)
def test_missing_dataflow_options_exit_2_before_building(drop, message, capsys):
    from pipeline.cli import main

    args = list(DRY_RUN)
    at = args.index(drop)
    del args[at:at + 2]
    assert main([*args, *IO]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gs://bucket/models/bert-zh", "bert-base-chinese"])
def test_a_remote_model_is_resolved_on_the_workers_not_at_launch(model):
    started = time.monotonic()
    config, options, _ = prepare([*DRY_RUN, *IO, "--model", model, "--pooling", "cls"])
    assert not config.encoder_spec.resolved
    job = submit_job(config, options).job
    assert "EmbedAndStage" in {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert time.monotonic() - started < 30  # nothing waited on a network that is not there


def test_a_remote_model_with_contradictory_settings_still_exits_2_at_launch(capsys):
    from pipeline.cli import main

    assert main([*DRY_RUN, *IO, "--model", "bert-base-chinese", "--backend", "hub"]) == 2
    assert "--backend hub needs a TF Hub URL" in capsys.readouterr().err


def test_incremental_job_with_ids_builds_for_dataflow():
    config, options, _ = prepare([*DRY_RUN, "--input", "gs://bucket/in/*.jsonl", "--output", "gs://bucket/out/dt=x",
                                  "--id_field", "id", "--skip_existing", "gs://bucket/out/dt=w/*.parquet",
                                  "--snapshot"])
    steps = {t.unique_name for t in submit_job(config, options).job.proto_pipeline.components.transforms.values()}
    assert {"Decide/ReadKeys", "Decide/ListEarlierFiles", "Decide/ReadEarlierKeys", "Decide/GroupByBucket",
            "Decide/JoinDecisions", "CopyReused", "Read", "Commit"} <= steps


def test_a_job_keeping_fields_through_a_snapshot_builds_for_dataflow():
    config, options, _ = prepare([*DRY_RUN, "--input", "gs://bucket/in/*.jsonl", "--output", "gs://bucket/out/dt=x",
                                  "--id_field", "id", "--keep_fields", "lang,stars", "--keep_text",
                                  "--skip_existing", "gs://bucket/out/dt=w/*.parquet", "--snapshot"])
    assert config.job.keep_fields == ("lang", "stars") and config.job.keep_text
    steps = {t.unique_name for t in submit_job(config, options).job.proto_pipeline.components.transforms.values()}
    assert {"KeptColumns/ObserveKeptTypes", "KeptColumns/DecideKeptTypes", "CopyReused/JoinKeptValues",
            "CopyReused/CopyRows", "Read", "EmbedAndStage"} <= steps


RIGHTFIT = "type:nvidia-l4;count:1;machine_type:g2-standard-8;install-nvidia-driver"


def test_embed_accelerator_puts_the_hint_on_the_embedding_step_alone_right_after_the_reshuffle():
    from pipeline.launch.placement import hinted_steps

    config, options, _ = prepare([*DRY_RUN, *IO, "--embed_accelerator", RIGHTFIT, "--machine_type", "n2-standard-2"])
    proto = submit_job(config, options).job.proto_pipeline
    assert hinted_steps(proto) == {("accelerator", RIGHTFIT): ["EmbedAndStage"]}
    transforms = proto.components.transforms
    by_output = {pc: t.unique_name for t in transforms.values() for pc in t.outputs.values()}
    (embed,) = [t for t in transforms.values() if t.unique_name == "EmbedAndStage"]
    (fed_by,) = {by_output[pc] for pc in embed.inputs.values() if by_output[pc] != "KeptColumns/DecideKeptTypes"}
    assert fed_by.startswith("SpreadParts")  # records cross from the default workers to the GPU ones here
    hinted = proto.components.environments[embed.environment_id]
    assert hinted.resource_hints["beam:resources:accelerator:v1"] == RIGHTFIT.encode()
    default = [t.environment_id for t in transforms.values() if t.unique_name == "Read"]
    assert default and not proto.components.environments[default[0]].resource_hints


def test_dry_run_summary_names_the_steps_that_carry_resource_hints(run_cli):
    code, out, _ = run_cli(*DRY_RUN, *IO, "--embed_accelerator", RIGHTFIT, "--machine_type", "n2-standard-2")
    assert code == 0
    assert f"; resource hints: accelerator on EmbedAndStage ({RIGHTFIT}); nothing was submitted" in out
    code, out, _ = run_cli(*DRY_RUN, *IO)
    assert code == 0 and "resource hints" not in out
    # Read from the built job, not from our flag: Beam's own pipeline-wide option shows on every step.
    code, out, _ = run_cli(*DRY_RUN, *IO, "--resource_hints", "min_ram=4GB")
    assert code == 0 and "resource hints: min_ram_bytes on Commit, EmbedAndStage, KeptColumns, ListShards," in out


@pytest.mark.parametrize("conflict", [["--dataflow_service_options", "worker_accelerator=type:nvidia-l4;count:1"],
                                      ["--resource_hints", "accelerator=type:nvidia-l4;count:1"]])
def test_a_second_accelerator_setting_beside_embed_accelerator_exits_2_before_building(conflict, run_cli):
    started = time.monotonic()
    code, out, err = run_cli(*DRY_RUN, *IO, "--embed_accelerator", RIGHTFIT, *conflict)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert time.monotonic() - started < 10


def test_a_local_run_leaves_the_hint_out_so_reading_and_embedding_stay_fused(tmp_path, caplog):
    """On a local runner a hinted step would be a stage of its own, holding every part in memory."""
    import apache_beam as beam

    from pipeline.launch.placement import hinted_steps
    from pipeline.stages.graph import build_pipeline

    (tmp_path / "in.txt").write_text("one\ntwo\n")
    with caplog.at_level("WARNING", logger="pipeline.launch.placement"):
        config, options, local = prepare(["--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out"),
                                          "--embed_accelerator", RIGHTFIT])
    assert local and "ignores it" in caplog.text
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, time.time())
    assert hinted_steps(p.to_runner_api()) == {}


def test_beam_runs_a_hinted_step_as_a_stage_of_its_own():
    """The fact both choices rest on: Beam's fusion keeps stages of different environments apart, and a
    hint gives its transform an environment of its own (a shuffle on Dataflow, memory on local runners)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import translations

    def stages(hinted: bool) -> list[list[str]]:
        p = beam.Pipeline()
        embed = beam.Map(lambda v: v)
        if hinted:
            embed = embed.with_resource_hints(accelerator=RIGHTFIT)
        _ = p | beam.Create([1, 2]) | "Read" >> beam.Map(lambda v: v) | "Embed" >> embed
        _, found = translations.create_and_optimize_stages(p.to_runner_api(), translations.standard_optimize_phases(),
                                                           known_runner_urns=frozenset())
        return [[t.unique_name for t in stage.transforms] for stage in found]

    plain, hinted = stages(False), stages(True)
    assert plain[-1][-2:] == ["Read", "Embed"]  # fused: one stage
    assert hinted[-1] == ["Embed"] and hinted[-2][-1] == "Read"


@pytest.mark.parametrize("location", ["gs://BUCKET/tmp", "gs://my bucket/tmp", "gs://a/tmp"])
def test_a_temp_location_gcs_would_refuse_exits_2_instead_of_beam_creating_a_bucket(location, capsys):
    """Beam meets an invalid bucket name by trying to create a default bucket over the network (it hung offline)."""
    from pipeline.cli import main

    args = list(DRY_RUN)
    args[args.index("--temp_location") + 1] = location
    started = time.monotonic()
    assert main([*args, *IO]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--temp_location {location} is not a Cloud Storage location" in err
    assert time.monotonic() - started < 10
