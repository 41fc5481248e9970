"""The distributed path executed: each case through Beam's PortableRunner equals the DirectRunner's output.

On the portable runner the launcher submits the job over Beam's Job API and waits; an SDK worker
started by a separate worker pool, in another working directory, lists the inputs, prepares the output,
reads, embeds (after a reshuffle) and commits, as on Dataflow. Same ids, vectors within 1e-6, same kept
values, same dead letters and counts, or the job fails and the launcher says so.
"""

import bz2
import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.portable import portable_services
from tests.hub_recipe import EXAMPLES, PREPROCESSOR
from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest
from tests.signals import default_ctrl_c

pytestmark = pytest.mark.slow

NEWS = [
    "央行宣布下调存款准备金率0.5个百分点，释放长期资金约一万亿元。",
    "The city council approved the new budget after a long debate on Tuesday.",
    "研究人员在南极冰层下发现了一个巨大的淡水湖。",
    "Stocks rallied as inflation data came in lower than expected.",
    "暴雨导致多条高速公路临时封闭，交通部门提醒司机绕行。",
    "A new species of frog was found in the rainforests of Ecuador.",
]


def _portable(run_cli, services, *args):
    code, out, err = run_cli(*args, *services.runner_args())
    return code, out, err


def run_both(run_cli, services, tmp_path, *args, name="run"):
    """The same job on the DirectRunner and on the portable runner; returns both output directories."""
    direct, portable = tmp_path / f"{name}-direct", tmp_path / f"{name}-portable"
    code, _, err = run_cli(*args, "--output", direct)
    assert code == 0, err
    code, out, err = _portable(run_cli, services, *args, "--output", portable)
    assert code == 0, err
    assert "submitted job" in out and "embedded" in out  # the launcher waited and printed the summary
    return direct, portable


def assert_same_output(direct: Path, portable: Path, own_settings: tuple[str, ...] = ()) -> None:
    """Same rows (ids, kept values, token counts), vectors within 1e-6, same dead letters and counts."""
    a, b = read_embeddings(direct), read_embeddings(portable)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    vectors_a = np.array(a.column("embedding").to_pylist(), dtype=np.float32)
    vectors_b = np.array(b.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors_a.shape == vectors_b.shape and vectors_a.shape[0] > 0
    assert np.abs(vectors_a - vectors_b).max() <= 1e-6
    assert a.drop_columns(["embedding"]).to_pylist() == b.drop_columns(["embedding"]).to_pylist()

    def letters(output):  # every field: source, line, reason, detail, id (when known), raw
        return sorted(json.dumps(d, sort_keys=True) for d in read_dead_letters(output))

    assert letters(direct) == letters(portable)
    manifest_a, manifest_b = read_manifest(direct), read_manifest(portable)
    assert manifest_a["counts"] == manifest_b["counts"]
    assert manifest_a["failed_by_reason"] == manifest_b["failed_by_reason"]
    for name in own_settings:  # settings that name each run's own earlier output
        del manifest_a["settings"][name], manifest_b["settings"][name]
    assert manifest_a["settings"] == manifest_b["settings"]


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def news_rows(prefix: str = "n") -> list[dict | str]:
    rows: list[dict | str] = [{"id": f"{prefix}{i}", "text": t, "section": "world" if i % 2 else "local"}
                              for i, t in enumerate(NEWS)]
    rows.append({"id": f"{prefix}1", "text": "a repeated id"})
    rows.append('{"id": "broken", "text": ')  # not JSON
    rows.append({"id": f"{prefix}-empty", "text": "   "})
    return rows


@pytest.fixture
def services(portable_runner):
    return portable_runner


def _group_members(groups: tuple[int, ...]) -> list[int]:
    """Live (not zombie) processes in these process groups, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
        except OSError:
            continue  # ended while we looked
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(int(stat.parent.name))
    return found


def test_services_stop_with_their_running_worker_also_when_the_body_fails(tmp_path, tiny_bert_dir, run_cli):
    corpus = tmp_path / "news.txt"
    corpus.write_text("\n".join(NEWS * 2000) + "\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="a failing test"), portable_services(str(tmp_path)) as running:
        code, _, err = run_cli("--input", corpus, "--output", tmp_path / "out", "--model", tiny_bert_dir,
                               "--no_wait", *running.runner_args())
        assert code == 0, err
        deadline = time.monotonic() + 60
        while len(_group_members(running.pids)) < 3 and time.monotonic() < deadline:  # services + the job's worker
            time.sleep(0.2)
        assert len(_group_members(running.pids)) >= 3
        raise RuntimeError("a failing test")
    assert _group_members(running.pids) == []
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_readme_quick_start_with_relative_paths(run_cli, services, tmp_path, monkeypatch):
    """README's own input, relative, from the launcher's directory: the worker, elsewhere, finds it."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    direct, portable = run_both(run_cli, services, Path("."), "--input", "examples/*")
    assert (tmp_path / portable / "_SUCCESS").exists()
    assert read_manifest(portable)["settings"]["inputs"] == [f"{tmp_path}/examples/*"]
    assert_same_output(direct, portable)


def test_jsonl_with_id_field_repeated_ids_and_invalid_lines(run_cli, services, tmp_path, tiny_bert_dir):
    corpus = write_jsonl(tmp_path / "news.jsonl", news_rows())
    direct, portable = run_both(run_cli, services, tmp_path, "--input", corpus, "--id_field", "id",
                                "--model", tiny_bert_dir)
    reasons = read_manifest(portable)["failed_by_reason"]
    assert reasons.get("duplicate_id") == 1 and sum(reasons.values()) >= 2
    assert_same_output(direct, portable)


def test_keep_fields_and_keep_text(run_cli, services, tmp_path, tiny_bert_dir):
    corpus = write_jsonl(tmp_path / "news.jsonl", news_rows())
    direct, portable = run_both(run_cli, services, tmp_path, "--input", corpus, "--id_field", "id",
                                "--model", tiny_bert_dir, "--keep_fields", "section", "--keep_text")
    assert {"section", "text"} <= set(read_embeddings(portable).column_names)
    assert_same_output(direct, portable)


def test_csv(run_cli, services, tmp_path, tiny_bert_dir):
    lines = ["id,text,source"] + [f'c{i},"{t}",wire' for i, t in enumerate(NEWS)] + ["c9,,wire"]
    (tmp_path / "news.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    direct, portable = run_both(run_cli, services, tmp_path, "--input", tmp_path / "news.csv", "--id_field", "id",
                                "--model", tiny_bert_dir, "--keep_fields", "source")
    assert_same_output(direct, portable)


def test_parquet_with_typed_kept_columns(run_cli, services, tmp_path, tiny_bert_dir):
    table = pa.table({"id": [f"p{i}" for i in range(len(NEWS))], "text": NEWS,
                      "year": pa.array(range(2020, 2020 + len(NEWS)), pa.int64())})
    pq.write_table(table, tmp_path / "news.parquet")
    direct, portable = run_both(run_cli, services, tmp_path, "--input", tmp_path / "news.parquet", "--id_field",
                                "id", "--model", tiny_bert_dir, "--keep_fields", "year")
    assert read_embeddings(portable).schema.field("year").type == pa.int64()
    assert_same_output(direct, portable)


def test_compressed_shards(run_cli, services, tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt.gz").write_bytes(gzip.compress("\n".join(NEWS[:3]).encode()))
    (corpus / "b.txt.bz2").write_bytes(bz2.compress("\n".join(NEWS[3:]).encode()))
    rows = "".join(json.dumps({"text": t}) + "\n" for t in NEWS)
    (corpus / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(rows.encode()))
    direct, portable = run_both(run_cli, services, tmp_path, "--input", f"{corpus}/*", "--model", tiny_bert_dir)
    assert read_manifest(portable)["counts"]["embedded"] == 2 * len(NEWS)
    assert_same_output(direct, portable)


def test_long_text_chunk(run_cli, services, tmp_path, tiny_bert_dir):
    (tmp_path / "long.txt").write_text("\n".join(t * 6 for t in NEWS) + "\n", encoding="utf-8")
    direct, portable = run_both(run_cli, services, tmp_path, "--input", tmp_path / "long.txt", "--model",
                                tiny_bert_dir, "--long_text", "chunk", "--max_seq_length", "16")
    assert max(read_embeddings(portable).column("n_chunks").to_pylist()) > 1
    assert_same_output(direct, portable)


def test_uint8_calibrated_at_launch(run_cli, services, tmp_path, tiny_bert_dir):
    """The launcher embeds the sample; workers in other processes quantize with the ranges it found."""
    write_jsonl(tmp_path / "news.jsonl", news_rows())
    direct, portable = run_both(run_cli, services, tmp_path, "--input", tmp_path / "news.jsonl", "--id_field", "id",
                                "--model", tiny_bert_dir, "--output_precision", "uint8", "--calibration_size", "4")
    assert read_embeddings(portable).schema.field("embedding").type.value_type == pa.uint8()
    assert read_manifest(portable)["settings"]["quantize_ranges_values"] is not None
    assert_same_output(direct, portable)


def test_two_nights_of_skip_existing_and_snapshot(run_cli, services, tmp_path, tiny_bert_dir):
    first, second = tmp_path / "night1", tmp_path / "night2"
    first.mkdir(), second.mkdir()
    write_jsonl(first / "news.jsonl", [{"id": f"n{i}", "text": t} for i, t in enumerate(NEWS)])
    tonight = [{"id": f"n{i}", "text": t} for i, t in enumerate(NEWS)]
    tonight[0]["text"] = "a changed text"
    tonight.append({"id": "n-new", "text": "a new record"})
    write_jsonl(second / "news.jsonl", tonight)
    common = ("--id_field", "id", "--model", tiny_bert_dir)
    night1 = run_both(run_cli, services, tmp_path, "--input", first / "news.jsonl", *common, name="night1")
    outputs = []
    for earlier, runner in zip(night1, ((), services.runner_args()), strict=True):
        output = tmp_path / f"night2-{len(outputs)}"
        code, _, err = run_cli("--input", second / "news.jsonl", *common, "--skip_existing", f"{earlier}/*.parquet",
                               "--snapshot", "--output", output, *runner)
        assert code == 0, err
        outputs.append(output)
    counts = read_manifest(outputs[1])["counts"]
    assert (counts["reused"], counts["embedded"]) == (len(NEWS) - 1, 2)
    assert_same_output(*outputs, own_settings=("skip_existing",))


def test_hub_backend(run_cli, services, tmp_path, tiny_hub_dir):
    corpus = write_jsonl(tmp_path / "news.jsonl", news_rows())
    direct, portable = run_both(run_cli, services, tmp_path, "--input", corpus, "--id_field", "id",
                                "--backend", "hub", "--model", tiny_hub_dir)
    assert_same_output(direct, portable)


def test_hub_preprocessor(run_cli, services, tmp_path, minilm_hub_dict):
    (tmp_path / "news.txt").write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    direct, portable = run_both(run_cli, services, tmp_path, "--input", tmp_path / "news.txt", "--backend", "hub",
                                "--model", minilm_hub_dict, "--hub_preprocessor", PREPROCESSOR)
    assert_same_output(direct, portable)


def test_a_corrupt_gzip_shard_fails_the_job_and_the_launcher_says_so(run_cli, services, tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    (corpus / "bad.txt.gz").write_bytes(gzip.compress("\n".join(NEWS).encode())[:30])
    output = tmp_path / "out"
    code, out, err = _portable(run_cli, services, "--input", f"{corpus}/*", "--output", output,
                               "--model", tiny_bert_dir)
    assert code == 1
    assert "submitted job" in out
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: job ") and "failed: ShardReadError: cannot read shard" in last
    assert "bad.txt.gz" in last and "nothing was committed" in last
    assert not (output / "_SUCCESS").exists()


def test_parquet_kept_types_that_do_not_widen_fail_the_job_on_a_worker_and_the_launcher_says_so(
        run_cli, services, tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"text": NEWS[:2], "n": pa.array([1, 2**53 + 1], pa.int64())}), corpus / "a.parquet")
    pq.write_table(pa.table({"text": NEWS[2:4], "n": pa.array([0.5, 1.5])}), corpus / "b.parquet")
    output = tmp_path / "out"
    code, _, err = _portable(run_cli, services, "--input", f"{corpus}/*.parquet", "--output", output,
                             "--model", tiny_bert_dir, "--keep_fields", "n")
    assert code == 1  # the worker lists the shards: the same check, the same message, no column of changed values
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: job ") and "nothing was committed" in last
    assert "--keep_fields 'n' has Parquet types that do not widen losslessly" in last
    assert "int64 in a.parquet" in last and "double in b.parquet" in last
    assert not (output / "_SUCCESS").exists()


def test_a_model_that_cannot_load_fails_the_job_and_the_launcher_says_so(run_cli, services, tmp_path,
                                                                         tiny_bert_dir):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_bert_dir, broken)
    weights = broken / "tf_model.h5"
    weights.write_bytes(weights.read_bytes()[:4096])  # the config reads (at launch), the weights do not (on a worker)
    (tmp_path / "news.txt").write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    code, _, err = _portable(run_cli, services, "--input", tmp_path / "news.txt", "--output", output,
                             "--model", broken)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: job ") and " failed: " in last and "nothing was committed" in last
    assert not (output / "_SUCCESS").exists()


def test_no_wait_returns_at_submission(run_cli, services, tmp_path, tiny_bert_dir):
    (tmp_path / "news.txt").write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    code, out, _ = _portable(run_cli, services, "--input", tmp_path / "news.txt", "--output", output,
                             "--model", tiny_bert_dir, "--no_wait")
    assert code == 0
    assert out.strip().splitlines() == [f"submitted job {out.split()[2].rstrip(';')}; {output}/_SUCCESS appears "
                                        "when it has finished"]
    deadline = time.monotonic() + 180  # the job goes on without the launcher
    while not (output / "_SUCCESS").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert read_manifest(output)["counts"]["embedded"] == len(NEWS)


def test_ctrl_c_while_waiting_asks_the_runner_to_cancel_and_exits_130(services, tmp_path, tiny_bert_dir):
    corpus = tmp_path / "news.txt"
    corpus.write_text("\n".join(NEWS * 500) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--input", corpus, "--output", output, "--model", tiny_bert_dir,
         *services.runner_args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c)
    assert launcher.stdout.readline().startswith("submitted job ")  # now it waits; the worker is still starting
    launcher.send_signal(signal.SIGINT)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted; asked the runner to cancel job ") and str(output) in last
    deadline = time.monotonic() + 120  # Beam's local job service runs a cancelled job to its end: let it finish
    while not (output / "_SUCCESS").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
