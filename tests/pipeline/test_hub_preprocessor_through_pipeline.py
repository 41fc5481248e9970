"""--hub_preprocessor through the whole job: examples/ + full-width text get Hub's preprocessor -> encoder vectors."""

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from encoders import EncoderConfigError, EncoderSpec
from pipeline.config import job_config
from pipeline.formats.records import normalize_text
from pipeline.launch.outcome import failure_line
from pipeline.settings import JobSettings
from pipeline.stages.graph import submit_job
from tests.hub_recipe import PREPROCESSOR, example_texts, packed_by_preprocessor, recipe_vectors
from tests.pipeline.conftest import read_embeddings, read_manifest

LONG = "Breakfast was cold, the lift was broken and nobody answered the phone at the front desk. " * 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("hub-pre") / "texts.txt"
    path.write_text("\n".join([*example_texts(), LONG]) + "\n", encoding="utf-8")
    return path


def _texts_by_id(corpus) -> dict[str, str]:
    lines = corpus.read_text(encoding="utf-8").splitlines()
    return {f"texts.txt:{n}": normalize_text(line)[0] for n, line in enumerate(lines, start=1)}


def test_vectors_and_token_counts_equal_hubs_recipe(run_cli, corpus, minilm_hub_dict, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("--input", corpus, "--output", out, "--backend", "hub", "--model", minilm_hub_dict,
                           "--hub_preprocessor", PREPROCESSOR)
    assert code == 0, err
    table = read_embeddings(out)
    texts = [_texts_by_id(corpus)[i] for i in table.column("id").to_pylist()]
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert len(texts) == len(example_texts()) + 1
    assert np.abs(vectors - recipe_vectors(minilm_hub_dict, texts)).max() <= 1e-5
    _, mask = packed_by_preprocessor(texts, 128)
    assert table.column("n_tokens").to_pylist() == mask.sum(axis=1).tolist()
    _, unbounded = packed_by_preprocessor(texts, 4096)
    assert table.column("truncated").to_pylist() == (unbounded.sum(axis=1) > 128).tolist()
    settings = read_manifest(out)["settings"]
    assert (settings["hub_preprocessor"], settings["max_seq_length"]) == (str(PREPROCESSOR), 128)
    metadata = pq.read_schema(next(out.glob("*.parquet"))).metadata
    assert metadata[b"hub_preprocessor"].decode() == str(PREPROCESSOR)


def test_chunk_mode_runs_with_the_preprocessors_tokens(run_cli, corpus, minilm_hub_dict, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("--input", corpus, "--output", out, "--backend", "hub", "--model", minilm_hub_dict,
                           "--hub_preprocessor", PREPROCESSOR, "--long_text", "chunk", "--max_seq_length", "64")
    assert code == 0, err
    table = read_embeddings(out)
    texts = [_texts_by_id(corpus)[i] for i in table.column("id").to_pylist()]
    _, unbounded = packed_by_preprocessor(texts, 4096)
    n_tokens = unbounded.sum(axis=1)
    assert table.column("n_tokens").to_pylist() == n_tokens.tolist()
    body, window, stride = n_tokens - 2, 62, 62 - 62 // 8  # the default overlap: one eighth of the window
    assert table.column("n_chunks").to_pylist() == (1 + np.maximum(-(-(body - window) // stride), 0)).tolist()
    assert not any(table.column("truncated").to_pylist()) and max(table.column("n_chunks").to_pylist()) > 1


def test_with_the_transformers_backend_the_job_stops_at_launch_with_one_line(run_cli, corpus, tmp_path):
    code, _, err = run_cli("--input", corpus, "--output", tmp_path / "out", "--hub_preprocessor", PREPROCESSOR)
    assert code == 2 and err.strip().count("\n") == 0 and "--hub_preprocessor applies only to --backend hub" in err


def test_without_tensorflow_text_the_job_stops_at_launch_naming_the_extra(corpus, minilm_hub_dict, tmp_path):
    # A None entry in sys.modules is how Python itself marks a module as not importable.
    script = ("import sys; sys.modules['tensorflow_text'] = None; from pipeline.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    argv = ["--input", corpus, "--output", tmp_path / "out", "--backend", "hub", "--model", minilm_hub_dict,
            "--hub_preprocessor", PREPROCESSOR]
    proc = subprocess.run([sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "pip install '.[hub-preprocessing]'" in proc.stderr


def test_an_encoder_module_given_as_the_preprocessor_stops_the_job_at_launch_with_one_line(run_cli, corpus,
                                                                                          tiny_hub_dir, tmp_path):
    code, _, err = run_cli("--input", corpus, "--output", tmp_path / "out", "--backend", "hub", "--model",
                           tiny_hub_dir, "--hub_preprocessor", tiny_hub_dir)
    assert code == 2, err
    assert err == (f"error: --hub_preprocessor {tiny_hub_dir} is not a TF Hub BERT preprocessing model "
                   "(it has no tokenize and bert_pack_inputs)\n")
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def _cached_hub_handle(directory, cache, monkeypatch) -> str:
    """A TF Hub URL whose download tensorflow_hub finds in its cache: a remote model, resolved without network."""
    handle = "https://models.example.com/tiny-bert/1"
    shutil.copytree(directory, cache / hashlib.sha1(handle.encode()).hexdigest())  # tensorflow_hub's cache layout
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    return handle


def test_with_a_remote_model_the_workers_first_step_fails_the_job_with_the_same_message(monkeypatch, corpus,
                                                                                      tiny_hub_dir, tmp_path):
    """On a distributed runner a remote model is resolved, and the preprocessor checked, by the job's first step."""
    from apache_beam.options.pipeline_options import PipelineOptions

    out = tmp_path / "out"
    model = _cached_hub_handle(tiny_hub_dir, tmp_path / "hub-cache", monkeypatch)
    spec = EncoderSpec(backend="hub", model=model, hub_preprocessor=str(tiny_hub_dir))
    config = job_config(JobSettings(inputs=(str(corpus),), output=str(out)), spec, distributed=True)
    assert not config.encoder_spec.resolved  # nothing read at launch
    message = (f"--hub_preprocessor {tiny_hub_dir} is not a TF Hub BERT preprocessing model "
               "(it has no tokenize and bert_pack_inputs)")
    with pytest.raises(EncoderConfigError) as failed:  # the DirectRunner runs the job inside run()
        submit_job(config, PipelineOptions(["--runner", "DirectRunner"]))
    # One line, as the launcher of a waited-for job prints it (`pipeline.launch.outcome.wait_for_job`).
    assert failure_line(str(failed.value)) == f"{message} [while running 'PrepareOutput/Prepare']"
    assert not (out / "_SUCCESS").exists() and not list(out.rglob("*.parquet"))
