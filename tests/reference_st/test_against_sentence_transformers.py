"""The job's vectors against sentence-transformers' own, on models that ship only a tokenizer.json.

sentence-transformers and torch live in a virtualenv of their own (`make test` builds .venv-st-reference from
tests/reference_st/requirements.txt and sets ST_PYTHON); the job depends on neither. st_encode.py encodes there.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from tests.model_factory import review_lines
from tests.pipeline.conftest import read_embeddings

TEXTS = [*review_lines()[:25], "hello world, the man is eating bread", "好" * 300]
ENCODE = Path(__file__).with_name("st_encode.py")


@pytest.fixture(scope="module")
def st_python() -> str:
    python = os.environ.get("ST_PYTHON")
    if not python:
        pytest.skip("ST_PYTHON is not set; `make test` installs sentence-transformers in .venv-st-reference")
    return python


def st_encode(python: str, model: Path, tmp_path: Path, runs: dict, quantize: dict | None = None) -> dict:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"model": str(model), "texts": TEXTS, "runs": runs, "quantize": quantize or {}}))
    out = tmp_path / "st.npz"
    done = subprocess.run([python, str(ENCODE), str(request), str(out)], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def job_vectors(model: Path, tmp_path: Path, name: str, *flags: str, dtype=np.float32) -> np.ndarray:
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"{i:03d}", "text": t}, ensure_ascii=False) + "\n"
                              for i, t in enumerate(TEXTS)), encoding="utf-8")
    out = tmp_path / name
    assert main(["--input", str(corpus), "--output", str(out), "--model", str(model), "--id_field", "id",
                 "--progress", "off", *flags]) == 0
    table = read_embeddings(out)
    assert table.column("id").to_pylist() == [f"{i:03d}" for i in range(len(TEXTS))]
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return values if dtype is None else values.astype(dtype)


def test_plain_prompted_and_truncated_vectors_are_sentence_transformers_own(st_python, tokenizer_json_dir, tmp_path):
    st = st_encode(st_python, tokenizer_json_dir, tmp_path, {
        "plain": {}, "named": {"prompt_name": "document"}, "given": {"prompt": "passage: "},
        "cut": {"truncate_dim": 12, "normalize_embeddings": True}})
    np.testing.assert_allclose(job_vectors(tokenizer_json_dir, tmp_path, "plain"), st["plain"], atol=1e-5)
    np.testing.assert_allclose(job_vectors(tokenizer_json_dir, tmp_path, "named", "--prompt_name",
                                           "document"), st["named"], atol=1e-5)
    np.testing.assert_allclose(job_vectors(tokenizer_json_dir, tmp_path, "given", "--prompt", "passage: "),
                               st["given"], atol=1e-5)
    np.testing.assert_allclose(job_vectors(tokenizer_json_dir, tmp_path, "cut", "--truncate_dim", "12"),
                               st["cut"], atol=1e-5)
    assert not np.allclose(st["plain"], st["given"], atol=1e-3)  # the prompt changes the vectors


def test_every_output_precision_stores_what_quantize_embeddings_gives(st_python, tokenizer_json_dir, tmp_path):
    """The job's float vectors quantized by sentence-transformers equal what the job stored, exactly (float16,
    which sentence-transformers does not offer, is numpy's float16 of them)."""
    if json.loads((tokenizer_json_dir / "config.json").read_text())["model_type"] != "bert":
        pytest.skip("the quantizer does not depend on the model")
    floats = job_vectors(tokenizer_json_dir, tmp_path, "float32")
    ranges = np.stack([floats.min(axis=0) - 0.01, floats.max(axis=0) + 0.01]).astype(np.float32)
    ranges[:, 0] = [-0.05, 0.05]  # one dimension whose range cuts off values: they clip
    np.save(tmp_path / "ranges.npy", ranges)
    request = tmp_path / "request.json"
    quantize = {p: {"of": "floats", "precision": p} for p in ("binary", "ubinary")}
    quantize |= {p: {"of": "floats", "precision": p, "ranges": ranges.tolist()} for p in ("int8", "uint8")}
    quantize |= {f"{p} calibrated": {"of": "floats", "precision": p, "calibration_rows": 4} for p in ("int8", "uint8")}
    request.write_text(json.dumps({"floats": floats.tolist(), "quantize": quantize}))
    out = tmp_path / "st.npz"
    done = subprocess.run([st_python, str(ENCODE), str(request), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    st = dict(np.load(out))
    for precision in ("binary", "ubinary", "int8", "uint8", "float16"):
        flags = ["--output_precision", precision]
        if precision in ("int8", "uint8"):
            flags += ["--quantize_ranges", str(tmp_path / "ranges.npy")]
        stored = job_vectors(tokenizer_json_dir, tmp_path, precision, *flags, dtype=None)
        expected = floats.astype(np.float16) if precision == "float16" else st[precision]
        assert stored.dtype == expected.dtype and stored.shape == expected.shape, precision
        np.testing.assert_array_equal(stored, expected, err_msg=precision)
    assert st["binary"].shape[1] == -(-floats.shape[1] // 8)
    for precision in ("int8", "uint8"):  # no ranges given: the job embeds the first 4 texts at launch
        stored = job_vectors(tokenizer_json_dir, tmp_path, f"{precision}-calibrated", "--output_precision", precision,
                             "--calibration_size", "4", dtype=np.int16)
        expected = st[f"{precision} calibrated"].astype(np.int16)
        # the launcher's sample is batched apart from the job, so its floats may differ in the last bit: a sample
        # row's value that is its dimension's minimum or maximum (a step's edge) may fall one step over, no more
        differing = stored != expected
        assert np.abs(stored - expected).max() <= 1 and differing.sum() <= 2 * stored.shape[1], precision
