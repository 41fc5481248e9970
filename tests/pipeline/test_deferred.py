"""The distributed-runner path run for real on the DirectRunner: workers list the inputs and prepare the output."""

import json
import os
import re

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from encoders import EncoderSpec
from pipeline.config import job_config
from pipeline.settings import JobSettings
from pipeline.stages.graph import submit_job
from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest


def deferred_run(tmp_path, tiny_bert_dir, out, **settings):
    """What a Dataflow launch does (nothing listed or checked at launch), executed here and waited for."""
    job = {"inputs": (str(tmp_path / "in" / "*.jsonl"),), "id_field": "id"}
    job.update({k: settings.pop(k) for k in list(settings) if k in ("overwrite", "inputs", "id_field", "text_field")})
    config = job_config(JobSettings(output=str(out), **job),
                        EncoderSpec(model=str(tiny_bert_dir), **settings), distributed=True)
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


def test_text_field_on_plain_text_fails_the_job_on_the_worker_as_it_exits_2_at_launch(run_cli, tiny_bert_dir,
                                                                                     tmp_path):
    """Distributed runners used to ignore --text_field for plain-text shards silently."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "plain.txt").write_text("hello\n")
    inputs = str(tmp_path / "in" / "*.txt")
    code, _, err = run_cli("--input", inputs, "--output", tmp_path / "local", "--model", tiny_bert_dir,
                           "--text_field", "body")
    assert code == 2
    message = err.removeprefix("error: ").strip()
    assert "every matched shard is plain text" in message
    with pytest.raises(Exception, match=re.escape(message)):
        deferred_run(tmp_path, tiny_bert_dir, tmp_path / "out", inputs=(inputs,), id_field=None, text_field="body")
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_csv_header_repeating_the_text_column_fails_the_job_on_the_worker_as_it_exits_2_at_launch(run_cli,
                                                                                                   tiny_bert_dir,
                                                                                                   tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("doc,body,body\n1,hello,world\n")
    inputs = str(tmp_path / "in" / "*.csv")
    code, _, err = run_cli("--input", inputs, "--output", tmp_path / "local", "--model", tiny_bert_dir,
                           "--text_field", "body")
    assert code == 2
    message = err.removeprefix("error: ").strip()
    assert message.startswith(f"{tmp_path}/in/rows.csv (csv): --text_field 'body' names 2 of its columns")
    with pytest.raises(Exception, match=re.escape(message)):
        deferred_run(tmp_path, tiny_bert_dir, tmp_path / "out", inputs=(inputs,), id_field=None, text_field="body")
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_an_unreadable_success_file_is_an_unfinished_run_on_the_worker_too(corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "_SUCCESS").write_text('{"settings": {"model": ')  # cut short by a crash
    deferred_run(tmp_path, tiny_bert_dir, out)
    assert read_manifest(out)["counts"]["embedded"] == 2


def test_an_input_file_name_that_is_not_utf8_fails_the_job_on_the_worker_as_it_exits_2_at_launch(run_cli,
                                                                                                tiny_bert_dir,
                                                                                                tmp_path):
    (tmp_path / "in").mkdir()
    with open(os.fsencode(tmp_path / "in") + b"/bad\xffname.txt", "wb") as f:
        f.write(b"hello\n")
    inputs = str(tmp_path / "in" / "*.txt")
    code, _, err = run_cli("--input", inputs, "--output", tmp_path / "local", "--model", tiny_bert_dir)
    assert code == 2
    message = err.removeprefix("error: ").strip()
    assert message.startswith(f"input file {tmp_path}/in/bad\\xffname.txt: its name is not valid UTF-8")
    with pytest.raises(Exception, match=re.escape(message)):
        deferred_run(tmp_path, tiny_bert_dir, tmp_path / "out", inputs=(inputs,), id_field=None)
    assert not (tmp_path / "out" / "_SUCCESS").exists()
