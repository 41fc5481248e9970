"""Nightly incremental runs: --skip_existing reuses what an earlier output holds, --snapshot copies it."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.incremental import DUPLICATE, NEW, OLD, REUSED, resolve_id, text_hash
from tests.pipeline.conftest import damage_page, read_embeddings, read_manifest


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in rows))


@pytest.fixture
def nightly(tmp_path, tiny_bert_dir, run_cli):
    """Run the job for a day: input corpus/*.jsonl, output out/dt=DAY, reusing the day before."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    out = tmp_path / "out"

    def run(day, *extra):
        args = ["--input", corpus / "*.jsonl", "--output", f"{out}/dt={{run_date}}", "--id_field", "id",
                "--model", tiny_bert_dir, "--run_date", day, *extra]
        code, _, err = run_cli(*args)
        assert code == 0, err
        return out / f"dt={day}"

    return corpus, run




def skip_args(corpus):
    return ["--skip_existing", f"{corpus.parent}/out/dt={{previous_date}}/*.parquet"]


def vectors_by_id(table):
    return dict(zip(table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist()), strict=True))


def test_day_two_embeds_only_the_new_records_and_snapshot_makes_a_complete_table(nightly):
    corpus, run = nightly
    a = [(f"a{i}", f"第一天的文本 {i} " + "好" * i) for i in range(20)]
    b = [(f"b{i}", f"new text {i}") for i in range(7)]
    write_jsonl(corpus / "a.jsonl", a)
    day1 = run("2026-11-24")
    assert read_manifest(day1)["counts"]["embedded"] == 20

    write_jsonl(corpus / "b.jsonl", b)
    day2 = run("2026-11-25", *skip_args(corpus))
    manifest = read_manifest(day2)
    assert manifest["counts"] == {"read": 27, "embedded": 7, "skipped": 0, "failed": 0, "reused": 20}
    assert manifest["incremental"]["files_same_fingerprint"] == 1
    assert read_embeddings(day2).column("id").to_pylist() == sorted(i for i, _ in b)

    snapshot = run("2026-11-25", *skip_args(corpus), "--snapshot", "--overwrite")
    manifest = read_manifest(snapshot)
    assert manifest["counts"]["embedded"] == 7 and manifest["counts"]["reused"] == 20
    assert manifest["incremental"]["snapshot_rows"] == 20
    table = read_embeddings(snapshot)
    assert table.num_rows == 27 and len(set(table.column("id").to_pylist())) == 27
    first, now = vectors_by_id(read_embeddings(day1)), vectors_by_id(table)
    assert all(np.array_equal(first[i], now[i]) for i, _ in a)
    texts = dict(a + b)
    assert table.column("text_hash").to_pylist() == [text_hash(texts[i]) for i in table.column("id").to_pylist()]


def test_a_changed_text_is_embedded_again(nightly):
    corpus, run = nightly
    write_jsonl(corpus / "a.jsonl", [("x", "old text"), ("y", "stays")])
    run("2026-11-24")
    write_jsonl(corpus / "a.jsonl", [("x", "new text"), ("y", "stays")])
    day2 = run("2026-11-25", *skip_args(corpus), "--snapshot")
    assert read_manifest(day2)["counts"]["embedded"] == 1
    assert read_manifest(day2)["counts"]["reused"] == 1
    table = read_embeddings(day2)
    assert table.column("id").to_pylist() == ["x", "y"]
    assert table.column("text_hash").to_pylist()[0] == text_hash("new text")


def test_a_different_model_fingerprint_reuses_nothing_and_says_so(nightly):
    corpus, run = nightly
    write_jsonl(corpus / "a.jsonl", [("x", "one"), ("y", "two")])
    day1 = run("2026-11-24")
    day2 = run("2026-11-25", *skip_args(corpus), "--pooling", "cls")
    manifest = read_manifest(day2)
    assert manifest["counts"]["embedded"] == 2 and manifest["counts"]["reused"] == 0
    assert manifest["incremental"]["files_other_fingerprint"] == 1
    assert "nothing was reused" in manifest["incremental"]["note"]
    fingerprints = {pq.read_schema(next(d.glob("*.parquet"))).metadata[b"model_fingerprint"] for d in (day1, day2)}
    assert len(fingerprints) == 2


def test_snapshot_without_skip_existing_is_a_config_error(run_cli, tmp_path, tiny_bert_dir):
    (tmp_path / "in.txt").write_text("x\n")
    code, _, err = run_cli("--input", tmp_path / "in.txt", "--output", tmp_path / "out", "--snapshot")
    assert code == 2 and "--snapshot copies rows found by --skip_existing" in err


def test_resolve_id_keeps_the_first_occurrence_and_reuses_the_newest_matching_file():
    values = [
        (NEW, 1, "b.jsonl", 4, "h1"),
        (NEW, 0, "a.jsonl", 9, "h1"),
        (OLD, 0, "dt=1/e.parquet", "h1"),
        (OLD, 1, "dt=2/e.parquet", "h1"),
        (OLD, 2, "dt=3/e.parquet", "other"),
    ]
    out = list(resolve_id("x", values))
    assert ("decision", (("b.jsonl", 4), (DUPLICATE, "a.jsonl", 9))) in out
    assert ("decision", (("a.jsonl", 9), (REUSED, 1))) in out
    assert ("copy", ((1, "dt=2/e.parquet"), "x")) in out and len(out) == 3
    assert list(resolve_id("y", [(OLD, 0, "p", "h")])) == []


def _first_night(nightly):
    """Night one over 20 records (one file), and a new record for night two; the file."""
    corpus, run = nightly
    write_jsonl(corpus / "a.jsonl", [(f"a{i}", f"第一天的文本 {i} " + "好" * i) for i in range(20)])
    day1 = run("2026-11-24")
    write_jsonl(corpus / "b.jsonl", [("b0", "new text")])
    (file,) = [day1 / name for name in read_manifest(day1)["files"]["embeddings"]]
    return file


def _night_two(run_cli, corpus, tiny_bert_dir, *extra):
    return run_cli("--input", corpus / "*.jsonl", "--output", f"{corpus.parent}/out/dt={{run_date}}", "--id_field",
                   "id", "--model", tiny_bert_dir, "--run_date", "2026-11-25", *skip_args(corpus), *extra)


def _assert_failed_naming(result, damaged):
    code, _, err = result
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: pipeline failed: ")
    assert f"cannot read earlier output {damaged} (--skip_existing): " in last
    assert "CRC checksum verification failed" in last
    assert not (damaged.parent.parent / "dt=2026-11-25" / "_SUCCESS").exists()


def test_copying_rows_from_an_earlier_file_whose_vector_page_changed_fails_naming_it(nightly, run_cli, tiny_bert_dir):
    damaged = _first_night(nightly)
    before = pq.read_table(damaged).column("embedding")
    damage_page(damaged)
    assert pq.read_table(damaged).column("embedding") != before  # read unchecked: other vectors, no error
    _assert_failed_naming(_night_two(run_cli, nightly[0], tiny_bert_dir, "--snapshot"), damaged)


def test_an_earlier_file_whose_hash_page_changed_fails_the_night_naming_it(nightly, run_cli, tiny_bert_dir):
    """Without --snapshot only the ids and hashes of earlier files are read: their pages are checked."""
    damaged = _first_night(nightly)
    damage_page(damaged, "text_hash")
    _assert_failed_naming(_night_two(run_cli, nightly[0], tiny_bert_dir), damaged)
