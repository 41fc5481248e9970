"""Local paths mean the same on every worker: made absolute at launch and recorded so; Dataflow refuses them.

A worker runs in a directory of its own (on Dataflow, on another machine), so a relative `--input` given
to the launcher would be looked up in the wrong place; `tests/pipeline/test_portable.py` runs README's
relative quick start on a worker in another directory.
"""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from pipeline.search import main as search_main
from tests.pipeline.conftest import in_process, read_manifest
from tests.pipeline.test_dataflow import DRY_RUN

TEXTS = ["the first record", "the second record", "第三条记录"]


@pytest.fixture
def launch_dir(tmp_path, tiny_bert_dir, monkeypatch):
    """A working directory holding in/a.txt and a model directory `model`, both to be named relatively."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    shutil.copytree(tiny_bert_dir, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    return tmp_path


RELATIVE = ("--input", "in/*.txt", "--output", "out", "--model", "model")


def test_relative_paths_are_recorded_absolute(run_cli, launch_dir):
    code, _, err = run_cli(*RELATIVE)
    assert code == 0, err
    settings = read_manifest(launch_dir / "out")["settings"]
    assert settings["inputs"] == [f"{launch_dir}/in/*.txt"]
    assert settings["model"] == f"{launch_dir}/model"
    metadata = pq.read_schema(next((launch_dir / "out").glob("*.parquet"))).metadata
    assert metadata[b"model"].decode() == f"{launch_dir}/model"


def test_search_run_from_another_directory_finds_the_model(run_cli, launch_dir, capsys, monkeypatch, tmp_path_factory):
    assert run_cli(*RELATIVE)[0] == 0
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, out, err = in_process(search_main, capsys)(launch_dir / "out", "the second record", "--k", "1")
    assert code == 0, err
    assert "a.txt:2" in out


def _as_an_earlier_version_recorded_it(output, **relative):
    """Rewrite the manifest and the files' metadata with relative paths, as versions before this one wrote them."""
    manifest = read_manifest(output)
    manifest["settings"].update(relative)
    (output / "_SUCCESS").write_text(json.dumps(manifest), encoding="utf-8")
    for path in output.glob("*.parquet"):
        table = pq.read_table(path)
        metadata = {**table.schema.metadata, **{k.encode(): (v if isinstance(v, str) else json.dumps(v)).encode()
                                                for k, v in relative.items()}}
        pq.write_table(table.replace_schema_metadata(metadata), path)


def test_an_output_recorded_with_relative_paths_reruns_without_overwrite(run_cli, launch_dir):
    assert run_cli(*RELATIVE)[0] == 0
    _as_an_earlier_version_recorded_it(launch_dir / "out", inputs=["in/*.txt"], model="model")
    code, _, err = run_cli(*RELATIVE)
    assert code == 0, err
    assert read_manifest(launch_dir / "out")["settings"]["inputs"] == [f"{launch_dir}/in/*.txt"]


def test_a_rerun_with_another_input_still_needs_overwrite(run_cli, launch_dir):
    assert run_cli(*RELATIVE)[0] == 0
    _as_an_earlier_version_recorded_it(launch_dir / "out", inputs=["in/*.txt"], model="model")
    (launch_dir / "in" / "b.txt").write_text("another\n", encoding="utf-8")
    code, _, err = run_cli("--input", "in/b.txt", *RELATIVE[2:])
    assert code == 2
    assert err.count("\n") == 1 and "different settings (inputs:" in err and "--overwrite" in err


def test_an_output_recorded_with_a_relative_model_is_searchable_from_its_directory(run_cli, launch_dir, capsys):
    assert run_cli(*RELATIVE)[0] == 0
    _as_an_earlier_version_recorded_it(launch_dir / "out", inputs=["in/*.txt"], model="model")
    code, out, err = in_process(search_main, capsys)("out", "the first record", "--k", "1")
    assert code == 0, err
    assert "a.txt:1" in out


@pytest.mark.parametrize("args, flag", [
    (["--input", "in/*.txt", "--output", "gs://b/out"], "--input"),
    (["--input", "gs://b/in/*.txt", "--output", "out"], "--output"),
    (["--input", "gs://b/in/*.txt", "--output", "gs://b/out", "--skip_existing", "old/*.parquet"], "--skip_existing"),
    (["--input", "gs://b/in/*.txt", "--output", "gs://b/out", "--model", "model"], "--model"),
])
def test_dataflow_refuses_a_local_path_with_one_line_naming_the_flag(run_cli, launch_dir, args, flag):
    code, out, err = run_cli(*DRY_RUN, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: {flag} {launch_dir}/") and "gs://" in err


def test_dataflow_takes_a_model_name_and_gs_paths(run_cli, launch_dir):
    code, out, err = run_cli(*DRY_RUN, "--input", "gs://b/in/*.txt", "--output", "gs://b/out",
                             "--model", "bert-base-chinese")
    assert code == 0, err
    assert out.startswith("dry run: built Dataflow job")
