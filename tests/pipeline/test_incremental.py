"""Nightly incremental runs: --skip_existing reuses what an earlier output holds, --snapshot copies it."""

import json
import random
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from encoders import EncoderSpec
from pipeline.preflight import list_shards
from pipeline.settings import JobSettings
from pipeline.stages.decisions import (
    BUCKET_INPUT_BYTES,
    MAX_KEY_BUCKETS,
    MIN_KEY_BUCKETS,
    Duplicate,
    NewKeys,
    OldKeys,
    Reused,
    by_bucket,
    decisions_by_line,
    hash_keys,
    key_buckets,
    resolve_keys,
    text_hash,
)
from pipeline.stages.keys import DecideRecords
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
    assert not list(Path(snapshot).rglob("*spill*"))  # the keys and decisions spilled while deciding are gone
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


def test_reused_records_count_the_control_characters_their_texts_lost_as_on_the_first_day(nightly):
    corpus, run = nightly
    write_jsonl(corpus / "a.jsonl", [("x", "bell\u0007 and nul\u0000"), ("y", "plain"), ("x", "again\u0001")])
    day1 = run("2026-11-24")
    day2 = run("2026-11-25", *skip_args(corpus), "--snapshot")
    first, second = read_manifest(day1), read_manifest(day2)
    assert second["counts"] == {"read": 3, "embedded": 0, "skipped": 0, "failed": 1, "reused": 2}
    assert second["failed_by_reason"] == {"duplicate_id": 1}
    assert second["control_chars_removed"] == first["control_chars_removed"] == 3


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


NEW, OLD = "new", "old"


def resolve_id(record_id, values):
    """The rule for one id, written plainly (how it was decided per id before keys went by bucket).

    values: ("new", shard index, source, line, text hash) of this run's records with the id and
    ("old", file index, path, text hash) of earlier rows with it. Yields ("decision", ((source, line),
    decision)) and ("copy", ((file index, path), id)).
    """
    new = sorted(v[1:] for v in values if v[0] == NEW)
    old = sorted(v[1:] for v in values if v[0] == OLD)
    if not new:
        return
    _, first_source, first_line, first_hash = new[0]
    for _, source, line, _ in new[1:]:
        yield "decision", ((source, line), Duplicate(first_source, first_line))
    matches = [(index, path) for index, path, digest in old if digest == first_hash]
    if matches:
        index, path = matches[-1]
        yield "decision", ((first_source, first_line), Reused(index, None))
        yield "copy", ((index, path), record_id)


def resolve_by_bucket(new_rows, old_rows, count=MIN_KEY_BUCKETS):
    """Decisions {(source, line): decision} and copies {(file, path): ids} as the job makes them: keys sent
    per shard and per earlier file, each cut into buckets, each bucket resolved alone."""
    sent = []
    for (shard, source), rows in group(new_rows, lambda r: (r[1], r[2])).items():
        sent.append(NewKeys.of(shard, source, [r[0] for r in rows], [r[3] for r in rows],
                               [text_hash(r[4]) for r in rows], [r[5] for r in rows]))
    for (file, path), rows in group(old_rows, lambda r: (r[1], r[2])).items():
        sent.append(OldKeys.of(file, path, pa.array([r[0] for r in rows], pa.string()),
                               pa.array([text_hash(r[3]) for r in rows], pa.string())))
    buckets = {}
    for keys in sent:
        for bucket, part in by_bucket(keys, count):
            buckets.setdefault(bucket, []).append(part)
    sources = {(r[1]): r[2] for r in new_rows}
    decisions, copies = {}, {}
    for found in buckets.values():
        resolved = resolve_keys([k for k in found if isinstance(k, NewKeys)],
                                [k for k in found if isinstance(k, OldKeys)])
        for shard, shard_decisions in resolved.decisions.items():
            for line, decision in decisions_by_line([shard_decisions]).items():
                assert (sources[shard], line) not in decisions
                decisions[(sources[shard], line)] = decision
        for earlier, ids in resolved.copies.items():
            copies.setdefault(earlier, set()).update(ids.to_pylist())
    return decisions, copies


def group(rows, key):
    out = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out


def resolve_one_by_one(new_rows, old_rows):
    """The same from the plain rule, id by id (a reused record's decision also holds its removed characters)."""
    by_id = {}
    removed = {}
    for record_id, shard, source, line, digest, lost in new_rows:
        by_id.setdefault(record_id, []).append((NEW, shard, source, line, digest))
        removed[(source, line)] = lost
    for record_id, *rest in old_rows:
        by_id.setdefault(record_id, []).append((OLD, *rest))
    decisions, copies = {}, {}
    for record_id, values in by_id.items():
        for kind, value in resolve_id(record_id, values):
            if kind == "decision":
                decision = value[1]
                if isinstance(decision, Reused):
                    decision = decision._replace(removed=removed[value[0]])
                decisions[value[0]] = decision
            else:
                copies.setdefault(value[0], set()).add(value[1])
    return decisions, copies


@pytest.mark.parametrize("buckets", [1, MIN_KEY_BUCKETS, MAX_KEY_BUCKETS])
def test_bucketed_keys_decide_as_the_rule_for_one_id_does_on_a_tricky_corpus(buckets):
    rng = random.Random(7)
    ids = [f"id{i}" for i in range(400)] + ["", "日本", "x" * 300]
    texts = [f"h{i}" for i in range(6)]
    shards = [(0, "a.jsonl"), (1, "b.jsonl"), (2, "c.jsonl")]
    new_rows = []
    for index, source in shards:
        for line in range(1, 301):  # ids repeat within and across shards; some ids only here
            record_id = rng.choice(ids[:250] + ids[-2:])
            new_rows.append((record_id, index, source, line, rng.choice(texts), rng.randrange(3)))
    files = [(0, "dt=1/e-0.parquet"), (1, "dt=1/e-1.parquet"), (2, "dt=2/e-0.parquet")]
    old_rows = []
    for index, path in files:  # the same id in several earlier files, with the same or another text
        for record_id in rng.sample(ids, 300):  # some ids only in earlier outputs
            old_rows.append((record_id, index, path, rng.choice(texts)))
    rng.shuffle(new_rows)
    rng.shuffle(old_rows)
    decisions, copies = resolve_by_bucket(new_rows, old_rows, buckets)
    assert (decisions, copies) == resolve_one_by_one(new_rows, old_rows)
    kinds = {type(d) for d in decisions.values()}
    assert kinds == {Duplicate, Reused} and len(copies) == 3


def test_the_bucket_count_grows_with_the_input_as_a_power_of_two_within_its_bounds():
    counts = [key_buckets(n) for n in (0, 1, 32 * BUCKET_INPUT_BYTES, 32 * BUCKET_INPUT_BYTES + 1,
                                       100 * 10**9, 10**15)]
    assert counts == [MIN_KEY_BUCKETS, MIN_KEY_BUCKETS, 32, 64, 512, MAX_KEY_BUCKETS]


def test_bucketed_keys_without_earlier_outputs_decide_only_duplicates():
    new_rows = [("x", 1, "b", 4, "h", 0), ("x", 0, "a", 9, "h", 0), ("y", 0, "a", 1, "h", 0)]
    decisions, copies = resolve_by_bucket(new_rows, [])
    assert decisions == {("b", 4): Duplicate("a", 9)} and copies == {}


def test_hash_keys_are_the_first_64_bits_of_each_hex_hash_and_a_row_without_one_is_never_reused():
    texts = ["a", "日本", "", "x" * 500]
    hashes = pa.array([text_hash(t) for t in texts] + [None, "not-a-hex-digest", "0123abc"], pa.string())
    keys, valid = hash_keys(hashes.slice(0))
    assert valid.tolist() == [True] * 4 + [False] * 3
    assert keys[:4].tolist() == [int(text_hash(t)[:16], 16) for t in texts]
    sliced, _ = hash_keys(hashes.slice(1, 2))  # an array that starts inside its buffers
    assert sliced.tolist() == keys[1:3].tolist()
    # An earlier file whose text_hash column holds nulls or non-hex values: those rows match nothing.
    old = OldKeys.of(0, "e.parquet", pa.array(["a", "b", "c"]), pa.array([text_hash("A"), None, "zz"]))
    assert old.ids.to_pylist() == ["a"]
    new = NewKeys.of(0, "s.jsonl", ["a", "b", "c"], [1, 2, 3], [text_hash(t) for t in "ABC"], [0, 0, 0])
    resolved = resolve_keys([new], [old])
    assert decisions_by_line(resolved.decisions.values()) == {1: Reused(0, 0)}
    assert new.removed is None and new.lines.dtype == np.int32


def test_resolve_id_keeps_the_first_occurrence_and_reuses_the_newest_matching_file():
    values = [
        (NEW, 1, "b.jsonl", 4, "h1"),
        (NEW, 0, "a.jsonl", 9, "h1"),
        (OLD, 0, "dt=1/e.parquet", "h1"),
        (OLD, 1, "dt=2/e.parquet", "h1"),
        (OLD, 2, "dt=3/e.parquet", "other"),
    ]
    out = list(resolve_id("x", values))
    assert ("decision", (("b.jsonl", 4), Duplicate("a.jsonl", 9))) in out
    assert ("decision", (("a.jsonl", 9), Reused(1, None))) in out
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


_COLLECTED: dict[str, list] = {}


def _collect(element, kind):  # module level: the in-process runner calls this same function, not a pickled copy
    if kind == "to_read":
        _COLLECTED[kind].append((element[0], sorted(element[2].items())))
    else:
        _COLLECTED[kind].append((element[0], tuple(element[1].load().to_pylist())))


def _decide(job, spec, spill_to):
    """What DecideRecords hands the reader and the copier, run on the DirectRunner; values as they load."""
    _COLLECTED.update(to_read=[], copies=[])
    with beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"])) as p:
        shards = p | beam.Create(list(enumerate(list_shards(job))))
        decided = shards | DecideRecords(job, spec, spill_to=spill_to)
        for kind in ("to_read", "copies"):
            _ = decided[kind] | f"Collect {kind}" >> beam.Map(_collect, kind)
    return {kind: sorted(values) for kind, values in _COLLECTED.items()}


def test_decisions_are_the_same_spilled_to_the_staging_folder_and_held_in_the_shuffle(nightly, tiny_bert_dir, tmp_path):
    corpus, run = nightly
    write_jsonl(corpus / "a.jsonl", [(f"a{i}", f"text {i}") for i in range(30)])
    write_jsonl(corpus / "b.jsonl", [(f"b{i}", f"other {i}") for i in range(5)])
    run("2026-11-24")
    write_jsonl(corpus / "b.jsonl", [(f"b{i}", f"other {i}") for i in range(5)] + [("a3", "again"), ("c", "new")])
    job = JobSettings(inputs=(str(corpus / "*.jsonl"),), output=str(tmp_path / "night2"), id_field="id",
                      skip_existing=f"{tmp_path}/out/dt=2026-11-24/*.parquet", snapshot=True)
    spec = EncoderSpec(model=str(tiny_bert_dir))
    spilled, held = _decide(job, spec, str(tmp_path / "night2")), _decide(job, spec, None)
    assert spilled == held
    reused = [line for _, decisions in held["to_read"] for line, d in decisions if isinstance(d, Reused)]
    duplicates = [d for _, decisions in held["to_read"] for _, d in decisions if isinstance(d, Duplicate)]
    assert len(reused) == 35 and len(duplicates) == 1 and sum(len(ids) for _, ids in held["copies"]) == 35
    spilled_files = Counter(p.name.split("-")[1] for p in (tmp_path / "night2" / "_temporary").glob("spill-*.bin"))
    assert spilled_files["keys"] == 2 and spilled_files["earlier"] == 2 and 0 < spilled_files["bucket"] <= 32
