"""The whole job on the DirectRunner with a tiny random BERT: output contract and accounting."""

import csv
import gzip
import io
import json
import re

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encoders import build_encoder, resolve_spec
from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest

LONG = "天" * 100


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.txt").write_text(f"今天天气很好\n\n   \nhello world\n{LONG}\n", encoding="utf-8")
    (root / "b" / "y.txt").write_bytes("good data\r\n坏\xff数据".encode("utf-8", "surrogateescape")
                                       + b"\xff\r\nthe job\n")
    return root


def test_every_line_is_embedded_skipped_or_dead_lettered(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run_cli("--input", corpus / "*" / "*.txt", "--output", out, "--model", tiny_bert_dir)
    assert code == 0
    table = read_embeddings(out)
    assert table.column("id").to_pylist() == ["a/x.txt:1", "a/x.txt:4", "a/x.txt:5", "b/y.txt:1", "b/y.txt:3"]
    dead = read_dead_letters(out)
    assert [(d["source"], d["line"], d["reason"]) for d in dead] == [("b/y.txt", 2, "undecodable")]
    assert "\\xff" in dead[0]["raw"]
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 8, "embedded": 5, "skipped": 2, "failed": 1}
    assert {s["source"]: s["read"] for s in manifest["shards"]} == {"a/x.txt": 5, "b/y.txt": 3}
    assert "embedded 5 of 8 records" in stdout


def test_parquet_schema_metadata_and_vectors_match_the_encoder(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", corpus / "a" / "x.txt", "--output", out, "--model", tiny_bert_dir,
                   "--pooling", "cls", "--normalize", "--max_seq_length", "32")[0] == 0
    manifest = read_manifest(out)
    assert all(re.fullmatch(r"embeddings-\d{5}-\d{5}\.parquet", f) for f in manifest["files"]["embeddings"])
    table = read_embeddings(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert table.schema.field("n_tokens").type == pa.int32()
    assert table.schema.field("truncated").type == pa.bool_()
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items() if not k.startswith(b"ARROW")}
    assert re.fullmatch(r"[0-9a-f]{32}", meta.pop("model_fingerprint"))
    assert meta == {"model": str(tiny_bert_dir), "backend": "transformers", "weights": "null", "pooling": "cls",
                    "normalize": "true", "dim": "32", "max_seq_length": "32", "long_text": "truncate",
                    "chunk_overlap": "0", "precision": "float32", "precision_used": "float32", "version": "0.1.0",
                    "keep_fields": "[]", "keep_text": "false", "hub_preprocessor": "null", "prompt": "null",
                    "truncate_dim": "null", "output_precision": "float32", "quantize_ranges": "null",
                    "quantize_ranges_values": "null"}
    texts = ["今天天气很好", "hello world", LONG]
    expected = build_encoder(resolve_spec(model=str(tiny_bert_dir), pooling="cls", normalize=True,
                                          max_seq_length=32)).encode(texts)
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.abs(vectors - expected.vectors).max() < 1e-6
    assert table.column("n_tokens").to_pylist() == expected.n_tokens.tolist() == [8, 4, 32]
    assert table.column("truncated").to_pylist() == [False, False, True]
    assert manifest["settings"]["pooling"] == "cls" and manifest["started_at"] <= manifest["finished_at"]


def test_manifest_and_parquet_metadata_spell_settings_the_same_way(run_cli, corpus, tiny_bert_dir, tmp_path):
    """One convention: JSON values in the manifest; the same JSON text in Parquet, strings left bare."""
    out = tmp_path / "out"
    assert run_cli("--input", corpus / "a" / "x.txt", "--output", out, "--model", tiny_bert_dir,
                   "--no_normalize")[0] == 0
    settings = read_manifest(out)["settings"]
    meta = {k.decode(): v.decode() for k, v in read_embeddings(out).schema.metadata.items()
            if not k.startswith(b"ARROW")}
    assert settings["normalize"] is False and meta["normalize"] == "false"
    assert meta.pop("precision_used") == settings["precision"]  # what ran; not a setting of its own
    for key, text in meta.items():
        value = settings[key]
        assert text == (value if isinstance(value, str) else json.dumps(value)), key


def test_jsonl_fields_gzip_and_bad_json(run_cli, tiny_bert_dir, tmp_path):
    lines = [
        json.dumps({"doc": "d1", "body": "hello"}),
        "{broken",
        json.dumps({"doc": "d2", "body": "今天"}),
        json.dumps({"doc": "d3"}),
        json.dumps({"body": "no id"}),
    ]
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = tmp_path / "out"
    assert run_cli("--input", path, "--output", out, "--model", tiny_bert_dir,
                   "--text_field", "body", "--id_field", "doc")[0] == 0
    assert read_embeddings(out).column("id").to_pylist() == ["d1", "d2"]
    reasons = {d["line"]: d["reason"] for d in read_dead_letters(out)}
    assert reasons == {2: "invalid_json", 4: "missing_text", 5: "missing_id"}
    assert read_manifest(out)["failed_by_reason"] == {"invalid_json": 1, "missing_id": 1, "missing_text": 1}


def test_csv_and_parquet_shards_in_one_run(run_cli, tiny_bert_dir, tmp_path):
    (tmp_path / "rows.csv").write_text('doc,body\nc1,"two\nlines"\nc2,\n', encoding="utf-8")
    pq.write_table(pa.table({"doc": [1, 2], "body": ["第一", None]}), tmp_path / "rows.parquet")
    out = tmp_path / "out"
    assert run_cli("--input", tmp_path / "rows.*", "--output", out, "--model", tiny_bert_dir,
                   "--text_field", "body", "--id_field", "doc")[0] == 0
    assert read_embeddings(out).column("id").to_pylist() == ["1", "c1"]
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 4, "embedded": 2, "skipped": 1, "failed": 1}
    assert [(d["source"], d["line"], d["reason"]) for d in read_dead_letters(out)] == [
        ("rows.parquet", 2, "missing_text")]


def test_a_repeated_id_keeps_its_first_occurrence_and_dead_letters_the_others(run_cli, tiny_bert_dir, tmp_path):
    rows = lambda *pairs: "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in pairs)  # noqa: E731
    (tmp_path / "b.jsonl").write_text(rows(("x", "later shard"), ("y", "only once")))
    (tmp_path / "a.jsonl").write_text(rows(("x", "first"), ("z", ""), ("z", "z text"), ("x", "again")))
    out = tmp_path / "out"
    assert run_cli("--input", tmp_path / "*.jsonl", "--output", out, "--model", tiny_bert_dir,
                   "--id_field", "id")[0] == 0
    table = read_embeddings(out)
    assert table.column("id").to_pylist() == ["x", "y", "z"]
    dead = sorted((d["source"], d["line"], d["reason"], d["detail"]) for d in read_dead_letters(out))
    assert dead == [
        ("a.jsonl", 4, "duplicate_id", "id 'x' was first seen at a.jsonl:1, which is embedded"),
        ("b.jsonl", 1, "duplicate_id", "id 'x' was first seen at a.jsonl:1, which is embedded"),
    ]
    assert read_manifest(out)["counts"] == {"read": 6, "embedded": 3, "skipped": 1, "failed": 2}


def test_a_repeated_id_dead_letter_holds_the_record_as_read_to_replay(run_cli, tiny_bert_dir, tmp_path):
    first, again = '{"id": "x", "text": "first", "n": 1}', '{"text": "  Again\u0301 ", "id": "x", "n": 2}'
    (tmp_path / "a.jsonl").write_text(f"{first}\n{again}\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text('id,text,n\nc,"one, two",1\nc,"three, four",2\n', encoding="utf-8")
    pq.write_table(pa.table({"id": ["p", "p"], "text": ["five", "six"], "n": ["1", "2"]}), tmp_path / "c.parquet")
    out = tmp_path / "out"
    code, _, err = run_cli("--input", tmp_path / "*.*", "--output", out, "--model", tiny_bert_dir, "--id_field", "id")
    assert code == 0, err
    dead = {d["source"]: d for d in read_dead_letters(out)}
    assert {source: (d["reason"], d["id"]) for source, d in dead.items()} == {
        "a.jsonl": ("duplicate_id", "x"), "b.csv": ("duplicate_id", "c"), "c.parquet": ("duplicate_id", "p")}
    assert dead["a.jsonl"]["raw"] == again  # the line, not its normalised text
    assert dead["b.csv"]["raw"] == 'c,"three, four",2'
    assert {k: v for k, v in json.loads(dead["c.parquet"]["raw"]).items() if k in ("id", "text")} == {
        "id": "p", "text": "six"}  # the row as JSON: what the Parquet reader renders


def test_a_csv_dead_letter_whose_field_holds_a_line_break_replays_as_that_one_row(run_cli, tiny_bert_dir, tmp_path):
    (tmp_path / "a.csv").write_bytes(b'id,text,note\r\n,"two\nlines",x\r\n,"cr\ronly",y\r\n')
    out = tmp_path / "out"
    code, _, err = run_cli("--input", tmp_path / "a.csv", "--output", out, "--model", tiny_bert_dir, "--id_field", "id")
    assert code == 0, err
    dead = read_dead_letters(out)
    assert [(d["line"], d["reason"]) for d in dead] == [(2, "missing_id"), (4, "missing_id")]
    assert [list(csv.reader(io.StringIO(d["raw"], newline=""))) for d in dead] == [[["", "two\nlines", "x"]],
                                                                                   [["", "cr\ronly", "y"]]]


def test_a_parquet_dead_letter_shows_a_binary_id_as_the_id_it_gives(run_cli, tiny_bert_dir, tmp_path):
    pq.write_table(pa.table({"id": pa.array([b"p1", b"p1"]), "text": ["one", "two"]}), tmp_path / "a.parquet")
    out = tmp_path / "out"
    code, _, err = run_cli("--input", tmp_path / "a.parquet", "--output", out, "--model", tiny_bert_dir,
                           "--id_field", "id")
    assert code == 0, err
    (dead,) = read_dead_letters(out)
    assert (dead["reason"], dead["id"], json.loads(dead["raw"])) == ("duplicate_id", "p1", {"text": "two", "id": "p1"})


def test_input_on_an_fsspec_filesystem(run_cli, tiny_bert_dir, tmp_path):
    for i in range(2):
        with fsspec.open(f"memory://job-test/part-{i}.txt", "w") as f:
            f.write(f"first {i}\nsecond {i}\n")
    out = tmp_path / "out"
    assert run_cli("--input", "memory://job-test/part-*.txt", "--output", out, "--model", tiny_bert_dir)[0] == 0
    ids = read_embeddings(out).column("id").to_pylist()
    assert ids == ["part-0.txt:1", "part-0.txt:2", "part-1.txt:1", "part-1.txt:2"]


def test_an_unreadable_shard_fails_the_job_without_success_marker(run_cli, tiny_bert_dir, tmp_path):
    bad = tmp_path / "bad.txt.gz"
    data = gzip.compress("".join(f"line {i}\n" for i in range(5000)).encode())
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, _, err = run_cli("--input", bad, "--output", out, "--model", tiny_bert_dir)
    assert code == 1
    assert "bad.txt.gz" in err
    assert not (out / "_SUCCESS").exists()
    assert not list(out.glob("embeddings-*")) and not (out / "failed").exists()  # nothing looks finished


def test_a_shard_that_disappears_after_listing_fails_the_job_naming_it(tiny_bert_dir, tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.cli import prepare
    from pipeline.stages.graph import run_job

    (tmp_path / "kept.txt").write_text("hello\n")
    (tmp_path / "gone.txt").write_text("world\n")
    config, _, _ = prepare(["--input", str(tmp_path / "*.txt"), "--output", str(tmp_path / "out"),
                            "--model", str(tiny_bert_dir)])
    (tmp_path / "gone.txt").unlink()
    with pytest.raises(Exception, match="cannot read shard .*gone.txt"):
        run_job(config, PipelineOptions([]))
    assert not (tmp_path / "out" / "_SUCCESS").exists() and not list((tmp_path / "out").glob("embeddings-*"))


def test_rerun_cleans_what_a_killed_run_left_and_replaces_a_finished_run(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    (out / "_temporary").mkdir(parents=True)
    (out / "_temporary" / "embeddings-00000-00000.parquet").write_bytes(b"staged by a killed run")
    (out / "embeddings-00007-00000.parquet").write_bytes(b"moved into place by a killed run")
    (out / "notes.txt").write_text("not ours")
    for _ in range(2):
        assert run_cli("--input", corpus / "a" / "x.txt", "--output", out, "--model", tiny_bert_dir)[0] == 0
    assert sorted(p.name for p in out.glob("embeddings-*")) == read_manifest(out)["files"]["embeddings"] == [
        "embeddings-00000-00000.parquet"]
    assert not (out / "_temporary").exists()
    assert (out / "notes.txt").exists()
    assert read_embeddings(out).num_rows == 3


def test_a_finished_run_of_other_settings_is_kept_unless_overwrite(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--input", corpus / "a" / "x.txt", "--output", out, "--model", tiny_bert_dir]
    assert run_cli(*args)[0] == 0
    before = (out / "_SUCCESS").read_bytes()
    code, _, err = run_cli(*args, "--pooling", "cls")
    assert code == 2 and "different settings (pooling: 'mean' -> 'cls')" in err and "--overwrite" in err
    assert (out / "_SUCCESS").read_bytes() == before
    assert run_cli(*args, "--pooling", "cls", "--overwrite")[0] == 0
    assert read_manifest(out)["settings"]["pooling"] == "cls"


@pytest.mark.parametrize("manifest", [b'{"counts": {"read": 3}, "settin', b"", b"\xff\xfe not json", b"[1, 2]",
                                      b'{"settings": "hand edited"}'])
def test_an_unreadable_success_file_is_an_unfinished_run_not_a_different_one(
    run_cli, corpus, tiny_bert_dir, tmp_path, manifest, caplog
):
    """A crash while writing _SUCCESS, or a hand edit, must not block every rerun with "different settings"."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "_SUCCESS").write_bytes(manifest)
    (out / "embeddings-00003-00000.parquet").write_bytes(b"left beside it")
    code, _, err = run_cli("--input", corpus / "a" / "x.txt", "--output", out, "--model", tiny_bert_dir)
    assert code == 0, err
    assert read_manifest(out)["counts"]["embedded"] == 3
    assert sorted(p.name for p in out.glob("embeddings-*")) == ["embeddings-00000-00000.parquet"]
    assert "cannot be read" in caplog.text and "unfinished run" in caplog.text


def test_blank_only_and_empty_shards_give_an_empty_table_with_the_schema(run_cli, tiny_bert_dir, tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n\t\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    out = tmp_path / "out"
    assert run_cli("--input", tmp_path / "*.txt", "--output", out, "--model", tiny_bert_dir)[0] == 0
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 3, "embedded": 0, "skipped": 3, "failed": 0}
    assert {s["source"]: s["read"] for s in manifest["shards"]} == {"blank.txt": 3, "empty.txt": 0}
    table = read_embeddings(out)
    assert table.num_rows == 0 and table.schema.field("embedding").type == pa.list_(pa.float32(), 32)


def test_multi_process_run_equals_single_process_and_builds_one_encoder_per_process(
    run_cli, tiny_bert_dir, tmp_path
):
    corpus = tmp_path / "in"
    corpus.mkdir()
    for shard in range(4):
        lines = [f"今天 {shard} 天气很好 line {i} " + "hello " * (i % 30) for i in range(150)]
        (corpus / f"part-{shard}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert run_cli("--input", corpus / "*.txt", "--output", single, "--model", tiny_bert_dir)[0] == 0
    assert run_cli("--input", corpus / "*.txt", "--output", multi, "--model", tiny_bert_dir,
                   "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")[0] == 0
    a, b = read_embeddings(single), read_embeddings(multi)
    assert a.column("id").to_pylist() == b.column("id").to_pylist() and a.num_rows == 600
    vectors_a = np.array(a.column("embedding").to_pylist())
    vectors_b = np.array(b.column("embedding").to_pylist())
    assert np.abs(vectors_a - vectors_b).max() < 1e-5
    perf = read_manifest(multi)["performance"]
    assert 1 <= perf["worker_processes"] <= 2
    assert perf["encoder_builds"] == perf["worker_processes"]
    assert perf["batches"] > perf["encoder_builds"] * 2  # many batches, yet one build per process
    assert read_manifest(single)["performance"]["encoder_builds"] == 1


def test_control_characters_and_overlong_lines_are_accounted_for(run_cli, tiny_bert_dir, tmp_path):
    path = tmp_path / "nasty.txt"
    path.write_bytes(b"ok\x00line\r\n" + b"x" * 50 + b"\n" + "emoji \U0001F600 \u05e9\u05dc\u05d5\u05dd\n".encode()
                     + b"\x00\x01\n")
    out = tmp_path / "out"
    assert run_cli("--input", path, "--output", out, "--model", tiny_bert_dir, "--max_chars", "40")[0] == 0
    manifest = read_manifest(out)
    assert manifest["counts"] == {"read": 4, "embedded": 2, "skipped": 1, "failed": 1}
    assert manifest["failed_by_reason"] == {"too_long": 1}
    assert manifest["control_chars_removed"] == 3
    assert read_embeddings(out).column("id").to_pylist() == ["nasty.txt:1", "nasty.txt:3"]


def test_a_record_the_encoder_rejects_becomes_a_dead_letter_and_the_rest_are_embedded(tiny_bert_dir):
    """Failure injection: no real input makes the encoder raise, so a wrapper raises for one marked text."""
    from pipeline.stages.embed import _isolate
    from pipeline.stages.read import Part

    real = build_encoder(resolve_spec(model=str(tiny_bert_dir)))

    class RejectsMarkedText:
        def encode(self, texts):
            if "POISON" in texts:
                raise RuntimeError("cannot embed this one")
            return real.encode(texts)

    texts = ("今天天气很好", "POISON", "hello world")
    part = Part(0, "s", 0, ("s:1", "s:2", "s:3"), texts, (1, 2, 3), ())
    kept, results, dead = _isolate(RejectsMarkedText(), part, range(3))
    assert [part.ids[i] for i in kept] == ["s:1", "s:3"]
    assert [(d.id, d.reason) for d in dead] == [("s:2", "encode_error")]
    expected = real.encode(["今天天气很好", "hello world"])
    assert np.abs(results.vectors - expected.vectors).max() < 1e-6
    assert results.n_tokens.tolist() == expected.n_tokens.tolist()


def test_group_size_changes_how_records_are_batched_not_the_vectors(run_cli, tiny_bert_dir, tmp_path):
    (tmp_path / "same-length.txt").write_text("".join(f"hello world {i}\n" for i in range(8)))
    runs = {}
    for group_size in (1, 1024):
        out = tmp_path / f"out-{group_size}"
        assert run_cli("--input", tmp_path / "same-length.txt", "--output", out, "--model", tiny_bert_dir,
                       "--group_size", group_size)[0] == 0
        runs[group_size] = (read_manifest(out), read_embeddings(out))
    (one, one_rows), (many, many_rows) = runs[1], runs[1024]
    assert one["performance"]["batches"] == 8 > many["performance"]["batches"] == 1
    assert (one["settings"]["group_size"], many["settings"]["group_size"]) == (1, 1024)
    np.testing.assert_allclose(np.array(one_rows.column("embedding").to_pylist()),
                               np.array(many_rows.column("embedding").to_pylist()), atol=1e-6)


def test_a_write_that_fails_on_the_writer_thread_fails_the_job(run_cli, corpus, tiny_bert_dir, tmp_path, monkeypatch):
    """Parquet files are written off the critical path; a failed write must still fail the job, not vanish."""
    import pipeline.stages.embed

    def broken_write(path, data):
        raise OSError(f"disk full while writing {path}")

    monkeypatch.setattr(pipeline.stages.embed, "write_file", broken_write)
    code, _, err = run_cli("--input", corpus / "a" / "x.txt", "--output", tmp_path / "out", "--model", tiny_bert_dir)
    assert code == 1 and "disk full" in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_stage_seconds_and_device_busy_share_are_reported(run_cli, corpus, tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--input", corpus / "*" / "*.txt", "--output", out, "--model", tiny_bert_dir)[0] == 0
    performance = read_manifest(out)["performance"]
    assert set(performance["stage_seconds"]) == {"read", "tokenize", "batch", "wait", "device", "copy", "arrow",
                                                  "parquet"}
    assert all(seconds >= 0 for seconds in performance["stage_seconds"].values())
    assert performance["stage_seconds"]["device"] > 0 and performance["stage_seconds"]["tokenize"] > 0
    assert 0 < performance["device_busy_share"] <= 1
