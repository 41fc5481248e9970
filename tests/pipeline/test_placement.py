"""--embed_accelerator's form and the options it must not meet (`pipeline.launch.placement`), without building a job."""

import logging
import re

import pytest

from pipeline.cli import main
from pipeline.errors import JobConfigError
from pipeline.launch.placement import ACCELERATOR_EXAMPLE, Accelerator, check_placement, parse_accelerator
from pipeline.template import template_metadata
from tests.pipeline.conftest import read_manifest

GOOD = [
    ACCELERATOR_EXAMPLE,
    "type:nvidia-tesla-t4;count:2",
    "type:nvidia-l4;count:1;install-nvidia-driver;use_nvidia_mps",
    "type:nvidia-a100-80gb;count:1;install-nvidia-driver;machine_type:a2-ultragpu-1g",
]
BAD = [
    "nvidia-l4",  # no type:
    "type:nvidia-l4",  # no count
    "count:1;type:nvidia-l4",  # count before type
    "type:nvidia-l4;count:0",
    "type:nvidia-l4;count:one",
    "type:nvidia-l4; count:1",  # a space
    '"type:nvidia-l4;count:1"',  # quotes copied from a shell example into a flags file
    "type:nvidia-l4;count:1;",  # an empty option
    "type:NVIDIA-L4;count:1",
    "worker_accelerator=type:nvidia-l4;count:1",  # the service option's spelling
]


def test_a_hint_is_split_into_type_count_machine_and_options():
    assert parse_accelerator(ACCELERATOR_EXAMPLE) == Accelerator("nvidia-l4", 1, "g2-standard-8",
                                                                 ("install-nvidia-driver",))
    assert parse_accelerator("type:nvidia-tesla-t4;count:2") == Accelerator("nvidia-tesla-t4", 2, None, ())


@pytest.mark.parametrize("value", GOOD)
def test_hints_of_dataflows_form_are_accepted(value):
    assert parse_accelerator(value).count >= 1


@pytest.mark.parametrize("value", [*BAD, "type:nvidia-l4;count:1;count:2", "type:nvidia-l4;count:1;machine_type:"
                                   "g2-standard-8;machine_type:g2-standard-4"])
def test_a_malformed_hint_exits_2_with_one_line(value, run_cli):
    code, _, err = run_cli("--input", "in.txt", "--output", "out", "--embed_accelerator", value)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --embed_accelerator ")


def test_the_template_form_accepts_and_refuses_what_the_launcher_does():
    """A Flex Template form refuses a value before launch; it must agree with the check the launcher runs."""
    (parameter,) = [p for p in template_metadata()["parameters"] if p["name"] == "embed_accelerator"]
    (regex,) = [re.compile(r) for r in parameter["regexes"]]
    assert all(regex.fullmatch(value) for value in GOOD)
    assert not any(regex.fullmatch(value) for value in BAD)


def test_the_worker_accelerator_service_option_is_refused_beside_the_hint():
    with pytest.raises(JobConfigError, match="worker_accelerator"):
        check_placement(ACCELERATOR_EXAMPLE, local=False,
                        service_options=["enable_prime", "worker_accelerator=type:nvidia-l4;count:1"])
    check_placement(None, local=False, service_options=["worker_accelerator=type:nvidia-l4;count:1"])  # alone: fine


def test_a_pipeline_wide_accelerator_hint_is_refused_beside_it_other_hints_are_not():
    with pytest.raises(JobConfigError, match="every step"):
        check_placement(ACCELERATOR_EXAMPLE, local=False, resource_hints=["min_ram=8GB", "accelerator=type:x;count:1"])
    check_placement(ACCELERATOR_EXAMPLE, local=False, resource_hints=["min_ram=8GB"])


def test_a_local_run_and_a_gpu_default_pool_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.launch.placement"):
        check_placement(ACCELERATOR_EXAMPLE, local=False, machine_type="n2-standard-2")
        assert not caplog.records
        check_placement(ACCELERATOR_EXAMPLE, local=False, machine_type="g2-standard-8")
        check_placement(ACCELERATOR_EXAMPLE, local=True)
    first, second = (r.getMessage() for r in caplog.records)
    assert "g2-standard-8 comes with GPUs attached" in first and "ignores it" in second


def test_the_cli_refuses_worker_accelerator_beside_the_hint_in_one_line(capsys):
    code = main(["--runner", "DataflowRunner", "--dry_run=True", "--no_auth", "--sdk_location=container",
                 "--project", "my-project", "--region", "us-central1",
                 "--temp_location", "gs://bucket/tmp", "--input", "gs://bucket/in/*.txt", "--output", "gs://bucket/out",
                 "--embed_accelerator", ACCELERATOR_EXAMPLE,
                 "--dataflow_service_options", "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "worker_accelerator" in err


def test_where_the_embedding_ran_is_recorded_but_a_rerun_with_it_replaces_a_finished_run(run_cli, tiny_bert_dir,
                                                                                           tmp_path):
    """Not a vector or record setting: the rerun check lets it change; the manifest says what the run was asked."""
    (tmp_path / "in.txt").write_text("hello\nworld\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--input", tmp_path / "in.txt", "--output", out, "--model", tiny_bert_dir]
    assert run_cli(*args)[0] == 0
    assert read_manifest(out)["settings"]["embed_accelerator"] is None
    assert run_cli(*args, "--embed_accelerator", ACCELERATOR_EXAMPLE)[0] == 0  # no --overwrite needed
    assert read_manifest(out)["settings"]["embed_accelerator"] == ACCELERATOR_EXAMPLE
