"""`python -m bench.gpu` on this CPU with a tiny random BERT: every case measured and compared, labelled as a CPU."""

import json

import pytest

from bench.gpu import CASES, CPU_LABEL, main

TEXTS = 24


JOB_CASES = ("float32", "auto+xla")  # a whole job is a fresh process of ~10 s here: two of them, not five


@pytest.fixture(scope="module")
def check(tiny_bert_dir, tmp_path_factory):
    """One run of the check (a real encoder child, real `python -m pipeline` jobs): (results, markdown, exit code)."""
    out = tmp_path_factory.mktemp("gpu-check")
    # max length 16: two XLA bucket shapes to compile instead of six
    code = main(["--model", str(tiny_bert_dir), "--texts", str(TEXTS), "--max_seq_length", "16",
                 "--job_cases", ",".join(JOB_CASES), "--out", str(out)])
    return json.loads((out / "results-gpu.json").read_text()), (out / "results-gpu.md").read_text(), code


def test_every_case_is_measured_in_the_encoder_and_the_asked_ones_in_a_whole_job(check):
    results, _, code = check
    assert code == 0 and list(results["cases"]) == list(CASES)
    for name, case in results["cases"].items():
        encoder, job = case["encoder"], case["job"]
        assert encoder["texts_per_second"] > 0 and 0 < encoder["device_busy_share"] <= 1, (name, encoder)
        assert encoder["max_tokens_per_batch"] == 8192, name  # a CPU's automatic budget
        if name not in JOB_CASES:
            assert job == {"skipped": "not in --job_cases"}
            continue
        assert job["texts"] == TEXTS and job["failed"] == 0 and job["texts_per_second"] > 0, (name, job)
        assert 0 <= job["device_busy_share"] <= 1 and job["chosen"]["max_tokens_per_batch"] == 8192
        assert encoder["precision_used"] == job["chosen"].get("precision", case["precision"]), name


def test_precision_auto_reports_what_it_chose(check):
    case = check[0]["cases"]["auto+xla"]
    assert case["precision"] == "auto" and case["jit_compile"] is True
    assert case["encoder"]["chosen"]["precision"] == case["job"]["chosen"]["precision"] in ("float32", "bfloat16")


def test_vectors_are_compared_with_float32_on_the_same_texts(check):
    cases = check[0]["cases"]
    assert cases["float32"]["vs_float32"] == {"cosine_min": 1.0, "cosine_mean": 1.0, "max_abs_diff": 0.0}
    for name in ("bfloat16", "float16", "float32+xla", "auto+xla"):
        compared = cases[name]["vs_float32"]
        assert 0.999 <= compared["cosine_min"] <= compared["cosine_mean"] <= 1.0, (name, compared)
    for name in ("bfloat16", "float16"):  # the precision really changed the computation
        assert 0 < cases[name]["vs_float32"]["max_abs_diff"] < 0.1, name


def test_a_cpu_run_says_it_is_not_a_gpu_result(check):
    results, markdown, _ = check
    device = results["device"]
    assert device["kind"] == "CPU" and device["label"] == CPU_LABEL and device["cpu"]["model"]
    assert markdown.startswith(f"# GPU check (`python -m bench.gpu`): {CPU_LABEL}")
    assert all(f"| {name} |" in markdown for name in CASES) and "## Errors" not in markdown


def test_a_case_that_cannot_run_is_recorded_and_the_others_still_run(tiny_hub_dir, tmp_path):
    # the hub backend computes in float32 only: bfloat16 fails in the encoder and in the job, float32 runs
    code = main(["--backend", "hub", "--model", str(tiny_hub_dir), "--cases", "bfloat16", "--job_cases", "bfloat16",
                 "--texts", "8", "--max_seq_length", "16", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results-gpu.json").read_text())
    failed, ran = results["cases"]["bfloat16"], results["cases"]["float32"]
    assert code == 0 and list(results["cases"]) == ["float32", "bfloat16"]
    assert "needs --backend transformers" in failed["encoder"]["error"] and "exit code 2" in failed["job"]["error"]
    assert failed["vs_float32"] is None and ran["encoder"]["texts_per_second"] > 0
    assert "- `bfloat16` encoder: EncoderConfigError" in (tmp_path / "results-gpu.md").read_text()
