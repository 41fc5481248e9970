"""The distributed-runner path run for real on the DirectRunner: workers list the inputs and prepare the output."""

import json

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import job_config
from pipeline.job import submit_job
from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest


def deferred_run(tmp_path, tiny_bert_dir, out, **settings):
    """What a Dataflow launch does (nothing listed or checked at launch), executed here and waited for."""
    config = job_config(inputs=[str(tmp_path / "in" / "*.jsonl")], output=str(out), model=str(tiny_bert_dir),
                        id_field="id", check_storage=False, rebalance=True, **settings)
    assert config.shards is None
    submit_job(config, PipelineOptions(["--runner", "DirectRunner"])).wait_until_finish()


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "in").mkdir()
    rows = [{"id": "a", "text": "今天天气很好"}, {"id": "b", "text": "hello"}, {"id": "a", "text": "dup"}, "{bad"]
    (tmp_path / "in" / "x.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                                     for r in rows))
    return tmp_path


def test_workers_list_inputs_clean_leftovers_and_commit(corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    (out / "_temporary").mkdir(parents=True)
    (out / "_temporary" / "embeddings-00000-00000.parquet").write_bytes(b"left by a killed run")
    (out / "embeddings-00009-00000.parquet").write_bytes(b"left by a killed run")
    deferred_run(tmp_path, tiny_bert_dir, out)
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 4, "embedded": 2, "skipped": 0, "failed": 2}
    assert read_embeddings(out).column("id").to_pylist() == ["a", "b"]
    assert sorted(d["reason"] for d in read_dead_letters(out)) == ["duplicate_id", "invalid_json"]
    assert sorted(p.name for p in out.glob("embeddings-*")) == manifest["files"]["embeddings"]
    assert not (out / "_temporary").exists()


def test_a_finished_run_of_other_settings_fails_the_job_on_the_worker(corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    deferred_run(tmp_path, tiny_bert_dir, out)
    before = (out / "_SUCCESS").read_bytes()
    with pytest.raises(Exception, match="different settings"):
        deferred_run(tmp_path, tiny_bert_dir, out, pooling="cls")
    assert (out / "_SUCCESS").read_bytes() == before
    deferred_run(tmp_path, tiny_bert_dir, out, pooling="cls", overwrite=True)
    assert read_manifest(out)["settings"]["pooling"] == "cls"


def test_no_matching_input_fails_the_job_on_the_worker(tiny_bert_dir, tmp_path):
    with pytest.raises(Exception, match="no file matches"):
        deferred_run(tmp_path, tiny_bert_dir, tmp_path / "out")
