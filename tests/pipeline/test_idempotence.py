"""Reruns give the same output: same file names, ids and vectors; a killed run is cleaned up by the next."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.pipeline.conftest import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def big_corpus(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for shard in range(6):
        lines = [f"第 {shard} 个分片 第 {i} 行 " + "天气 hello " * (i % 40) for i in range(1500)]
        lines[7] = "\udcff broken" if shard == 2 else lines[7]
        data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"
        (root / f"part-{shard}.txt").write_bytes(data)
    return root


def job_args(corpus: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "--input", str(corpus / "*.txt"), "--output", str(out),
            "--model", str(model), "--records_per_file", "500", "--progress", "off"]


def snapshot(out: Path) -> dict:
    """Every file of a finished output: Parquet as (ids, vectors), anything else as bytes."""
    manifest = read_manifest(out)
    files = {}
    for name in manifest["files"]["embeddings"]:
        table = pq.read_table(out / name)
        files[name] = (table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist()))
    for name in manifest["files"]["failed"]:
        files[name] = (out / name).read_bytes()
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "_SUCCESS")
    assert on_disk == sorted(files), "the output holds files the manifest does not list"
    return files


def assert_same_output(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name, content in a.items():
        if isinstance(content, tuple):
            assert content[0] == b[name][0], name
            assert np.abs(content[1] - b[name][1]).max(initial=0.0) <= 1e-6, name
        else:
            assert content == b[name], name


def run(args: list[str]) -> None:
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_a_killed_run_leaves_no_success_and_the_rerun_equals_an_uninterrupted_run(big_corpus, tiny_bert_dir,
                                                                                    tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run(job_args(big_corpus, clean, tiny_bert_dir))
    reference = snapshot(clean)
    manifest = read_manifest(clean)
    assert len(manifest["files"]["embeddings"]) == 18  # 6 shards x 3 parts of <= 500 records
    assert manifest["counts"] == {"read": 9000, "embedded": 8999, "skipped": 0, "failed": 1}

    process = subprocess.Popen(job_args(big_corpus, killed, tiny_bert_dir), cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = killed / "_temporary"
    deadline = time.monotonic() + 300
    while not (staging.exists() and len(list(staging.iterdir())) >= 3):
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "_SUCCESS").exists()
    assert not list(killed.glob("embeddings-*")), "files became visible before the job succeeded"

    run(job_args(big_corpus, killed, tiny_bert_dir))
    assert_same_output(reference, snapshot(killed))
    assert not staging.exists()

    run(job_args(big_corpus, clean, tiny_bert_dir))  # the same command again, into the same output
    assert_same_output(reference, snapshot(clean))
    assert json.loads((clean / "_SUCCESS").read_text())["counts"] == manifest["counts"]
