"""Automatic settings through the job: flags take "auto", the manifest reports what each worker chose.

The GPU run fakes only `encoders.device.query_device` (docs/dependencies.md: no TensorFlow GPU here).
"""

import pytest

import encoders
from encoders import device as device_module
from encoders import model_fingerprint, resolve_spec
from encoders.auto import CPU_TOKEN_BUDGET, choose_precision
from encoders.declare import declared
from encoders.device import DeviceInfo
from encoders.spec import EncoderSpec
from pipeline.cli import build_parser, settings_from_args
from pipeline.formats.manifest import PartStats, chosen_summary
from pipeline.template import _regex, flags_table
from tests.pipeline.conftest import read_embeddings, read_manifest


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("今天天气很好\nhello world\n这本书写得很好\n", encoding="utf-8")
    return path


def parquet_metadata(out) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in read_embeddings(out).schema.metadata.items()
            if not k.startswith(b"ARROW")}


def test_precision_auto_on_this_cpu_is_reported_with_the_budget(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", corpus, "--output", out, "--model", tiny_bert_dir, "--precision", "auto")[0] == 0
    manifest = read_manifest(out)
    # This machine's own answer: the probe runs once per process, so asking again gives the same one.
    expected = choose_precision(device_module.query_device(probe=True))
    assert manifest["performance"]["chosen"] == {"max_tokens_per_batch": CPU_TOKEN_BUDGET, "precision": expected}
    assert "chosen_by_processes" not in manifest["performance"]
    settings = manifest["settings"]
    assert settings["precision"] == "auto" and settings["max_tokens_per_batch"] is None  # as given
    meta = parquet_metadata(out)
    assert meta["precision"] == "auto" and meta["precision_used"] == expected


def test_faked_gpu_of_compute_capability_8_chooses_bfloat16(run_cli, corpus, tiny_bert_dir, tmp_path, monkeypatch):
    a100 = DeviceInfo("GPU", ("NVIDIA A100-SXM4-40GB",), ((8, 0),), 40 << 30, 40 << 30)
    monkeypatch.setattr(device_module, "query_device", lambda probe=False: a100)
    out = tmp_path / "out"
    # --max_seq_length 32: a spec of its own, so this process builds a new encoder rather than reuse one
    assert run_cli("--input", corpus, "--output", out, "--model", tiny_bert_dir, "--precision", "auto",
                   "--max_seq_length", "32")[0] == 0
    manifest = read_manifest(out)
    # the tiny model's activations are small: the budget is the upper clamp
    assert manifest["performance"]["chosen"] == {"max_tokens_per_batch": 262_144, "precision": "bfloat16"}
    assert parquet_metadata(out)["precision_used"] == "bfloat16"
    # The fingerprint is the declared one ("auto"), not the one of the precision chosen.
    given = resolve_spec(model=str(tiny_bert_dir), precision="auto", max_seq_length=32)
    chosen = resolve_spec(model=str(tiny_bert_dir), precision="bfloat16", max_seq_length=32)
    assert manifest["settings"]["model_fingerprint"] == model_fingerprint(given, encoders.__version__)
    assert manifest["settings"]["model_fingerprint"] != model_fingerprint(chosen, encoders.__version__)


def test_explicit_values_are_used_and_only_automatic_ones_reported(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", corpus, "--output", out, "--model", tiny_bert_dir, "--max_tokens_per_batch", "2048",
                   "--max_seq_length", "48")[0] == 0
    manifest = read_manifest(out)
    assert manifest["performance"]["chosen"] == {}
    assert manifest["settings"]["max_tokens_per_batch"] == 2048
    assert parquet_metadata(out)["precision_used"] == "float32"


def stats(process: str, chosen: dict) -> PartStats:
    return PartStats("a.txt", 0, 1, (), (), batches=1, process=process, chosen=tuple(chosen.items()))


def test_processes_that_chose_differently_are_each_reported_with_their_count():
    fast = {"max_tokens_per_batch": 8192, "precision": "bfloat16"}
    slow = {"max_tokens_per_batch": 8192, "precision": "float32"}
    same = [stats("h:1", fast), stats("h:1", fast), stats("h:2", fast)]
    assert chosen_summary(same) == {"chosen": fast}
    mixed = [*same, stats("h:3", slow), stats("h:3", slow)]
    assert chosen_summary(mixed) == {"chosen": None, "chosen_by_processes": [{**fast, "processes": 2},
                                                                             {**slow, "processes": 1}]}
    assert chosen_summary([]) == {"chosen": {}}


@pytest.mark.parametrize(("words", "expected"), [([], None), (["--max_tokens_per_batch", "auto"], None),
                                                 (["--max_tokens_per_batch", "16384"], 16384)])
def test_the_budget_flag_takes_a_number_or_auto(words, expected):
    args, _ = build_parser().parse_known_args(["--input", "x", "--output", "o", *words])
    assert settings_from_args(args)[1].max_tokens_per_batch == expected


@pytest.mark.parametrize(("value", "message"), [("many", "expected a whole number or auto, got 'many'"),
                                                ("0", "--max_tokens_per_batch must be positive")])
def test_a_bad_budget_exits_2_with_one_line(run_cli, corpus, tmp_path, value, message):
    code, _, err = run_cli("--input", corpus, "--output", tmp_path / "out", "--max_tokens_per_batch", value)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_template_and_readme_table_accept_auto_for_the_budget():
    budget = next(item for item in declared(EncoderSpec) if item.name == "max_tokens_per_batch")
    assert _regex(budget) == "^(auto|[0-9]+)$"
    batch = next(item for item in declared(EncoderSpec) if item.name == "max_batch_size")
    assert _regex(batch) == "^[0-9]+$"  # stays a plain number
    assert "| `--max_tokens_per_batch N\\|auto` |" in flags_table()
    assert "| `--precision float32\\|bfloat16\\|float16\\|auto` |" in flags_table()
