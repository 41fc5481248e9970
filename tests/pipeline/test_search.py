"""`python -m pipeline.search` over real outputs of the job: what it finds, how it prints, what it refuses."""

import json
import re
import shutil

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encoders import build_encoder, model_fingerprint, resolve_spec
from pipeline.cli import main as run_job
from pipeline.identity import identity_of
from pipeline.search import Hit, TopK, format_hits, main, open_output, recorded_spec
from tests.pipeline.conftest import (
    NOT_VECTORS,
    damage_page,
    in_process,
    read_embeddings,
    read_manifest,
    rewrite_embeddings,
)

LONG = "今天天气很好我们去公园散步吧你好世界" * 2  # 36 characters: more than one 16-token window
TINY_TEXTS = [
    "hello world", "the man is eating bread", "a woman is eating food", "good data", "bad data",
    "the job is a test", "今天天气很好", "酒店房间干净", "服务态度差", "价格便宜", "快递书", LONG,
]
# Settings other than the tiny model's defaults (mean, its maximum 64, truncate): search must read them back.
# With them the long text's vector is within cosine 0.986 of its truncated one and 0.36 of the default's.
TINY_SETTINGS = {"pooling": "max", "max_seq_length": 16, "long_text": "chunk"}
MINILM_TEXTS = [
    "A man is eating food.", "A man is riding a horse.", "The girl is carrying a baby.",
    "Opening hours are 9am to 6pm on weekdays.", "退货政策：凭原始收据可在30天内退货。",
]


@pytest.fixture
def search(capsys):
    """Run `python -m pipeline.search ARGS` in this process; returns (exit code, stdout, stderr)."""
    return in_process(main, capsys)


def _embed_corpus(root, texts, *flags):
    corpus = root / "in" / "corpus.txt"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = root / "out"
    assert run_job(["--input", str(corpus), "--output", str(out), "--progress", "off", *map(str, flags)]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_output(tiny_bert_dir, tmp_path_factory):
    """Twelve records in four files, embedded with TINY_SETTINGS."""
    flags = [part for name, value in TINY_SETTINGS.items() for part in (f"--{name}", value)]
    return _embed_corpus(tmp_path_factory.mktemp("search-tiny"), TINY_TEXTS, "--model", tiny_bert_dir,
                         "--records_per_file", 3, *flags)


@pytest.fixture(scope="module")
def minilm_output(tmp_path_factory):
    return _embed_corpus(tmp_path_factory.mktemp("search-minilm"), MINILM_TEXTS)


def _id(line: int) -> str:
    return f"corpus.txt:{line}"


def _brute_force(output, query: np.ndarray, exclude: str | None = None) -> list[tuple[str, float]]:
    """(id, cosine) of every row, read all at once, best first (ties by id)."""
    table = read_embeddings(output)
    ids = table.column("id").to_pylist()
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float64)
    scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    ranked = sorted(zip(ids, scores.tolist(), strict=True), key=lambda row: (-row[1], row[0]))
    return [row for row in ranked if row[0] != exclude]


def _json_hits(search, *args) -> list[dict]:
    code, out, err = search(*args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow  # about 11 s on 2 shared cores: the real model is built twice (job, then search)
def test_the_exact_text_of_a_record_finds_it_first_with_the_default_model(search, minilm_output):
    hits = _json_hits(search, minilm_output, "A man is riding a horse.", "--k", "3")
    assert hits[0]["id"] == _id(2)
    assert hits[0]["score"] >= 0.999
    assert hits[1]["score"] < 0.9


def test_the_query_is_embedded_with_every_vector_setting_the_output_records(tiny_output, tiny_bert_dir):
    expected = resolve_spec(model=str(tiny_bert_dir), **TINY_SETTINGS)
    assert recorded_spec(open_output(str(tiny_output))) == expected


def test_a_long_query_is_chunked_as_the_job_chunked_the_record(search, tiny_output):
    hits = _json_hits(search, tiny_output, LONG, "--k", "2")
    assert hits[0]["id"] == _id(TINY_TEXTS.index(LONG) + 1)
    assert hits[0]["score"] >= 0.999
    assert hits[1]["score"] < 0.99


def test_streaming_over_several_files_equals_brute_force_over_all_rows(search, tiny_output, tiny_bert_dir):
    assert len(read_manifest(tiny_output)["files"]["embeddings"]) == 4
    query = "the woman is eating good bread"
    spec = resolve_spec(model=str(tiny_bert_dir), **TINY_SETTINGS)
    vector = build_encoder(spec, warm_up=False).encode([query]).vectors[0].astype(np.float64)
    hits = _json_hits(search, tiny_output, query, "--k", "5")
    expected = _brute_force(tiny_output, vector)[:5]
    assert [h["id"] for h in hits] == [row[0] for row in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [row[1] for row in expected], atol=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]


def test_id_finds_the_neighbours_of_a_row_without_the_row_itself(search, tiny_output):
    row = _id(2)
    table = read_embeddings(tiny_output)
    vector = np.array(table.filter(pa.compute.equal(table.column("id"), row)).column("embedding").to_pylist()[0])
    hits = _json_hits(search, tiny_output, "--id", row, "--k", "3")
    expected = _brute_force(tiny_output, vector, exclude=row)[:3]
    assert [h["id"] for h in hits] == [r[0] for r in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [r[1] for r in expected], atol=1e-5)


def test_k_larger_than_the_output_lists_every_row_once(search, tiny_output):
    hits = _json_hits(search, tiny_output, "--id", _id(1), "--k", "100")
    assert sorted(h["id"] for h in hits) == sorted(_id(i) for i in range(2, len(TINY_TEXTS) + 1))
    assert [h["rank"] for h in hits] == list(range(1, len(TINY_TEXTS)))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_json_lists_rank_id_and_score(search, tiny_output):
    hits = _json_hits(search, tiny_output, "--id", _id(3), "--k", "2")
    assert [set(h) for h in hits] == [{"rank", "id", "score"}] * 2


def test_text_format_is_a_table_of_rank_score_and_id(search, tiny_output):
    code, out, _ = search(tiny_output, "--id", _id(3), "--k", "2")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["rank", "score", "id"]
    assert len(rows) == 2
    assert rows[0].split()[0] == "1" and 0 <= float(rows[0].split()[1]) <= 1


@pytest.fixture(scope="module")
def output_with_text(tiny_output, tmp_path_factory):
    """The tiny output with a `text` column added to each file, as --keep_text writes it."""
    out = tmp_path_factory.mktemp("search-text") / "out"
    shutil.copytree(tiny_output, out)
    texts = {_id(i): text for i, text in enumerate(TINY_TEXTS, start=1)}
    for name in read_manifest(out)["files"]["embeddings"]:
        table = pq.read_table(out / name)
        column = pa.array([texts[i] for i in table.column("id").to_pylist()], type=pa.string())
        pq.write_table(table.append_column("text", column), out / name)
    return out


def test_kept_text_is_printed_whole_in_json(search, output_with_text):
    hits = _json_hits(search, output_with_text, LONG, "--k", "1")
    assert hits == [{"rank": 1, "id": _id(len(TINY_TEXTS)), "score": hits[0]["score"], "text": LONG}]


def test_kept_text_is_cut_to_one_short_line_in_the_table(search, output_with_text):
    code, out, _ = search(output_with_text, LONG, "--k", "1")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["rank", "score", "id", "text"]
    shown = row.split(maxsplit=3)[3]
    assert LONG.startswith(shown.removesuffix("..."))
    assert len(shown) <= 80


def test_rows_of_files_without_a_text_column_are_listed_without_text(search, tiny_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    last = out / read_manifest(out)["files"]["embeddings"][-1]  # records 10 to 12
    table = pq.read_table(last)
    texts = [TINY_TEXTS[int(i.split(":")[1]) - 1] for i in table.column("id").to_pylist()]
    pq.write_table(table.append_column("text", pa.array(texts, type=pa.string())), last)
    hits = _json_hits(search, out, "hello world", "--k", "100")
    assert len(hits) == len(TINY_TEXTS)
    assert {h["id"]: h["text"] for h in hits if "text" in h} == {_id(i): TINY_TEXTS[i - 1] for i in (10, 11, 12)}


def test_a_model_changed_since_the_run_is_warned_about_and_still_used(search, tiny_bert_dir, tmp_path, caplog,
                                                                     capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    out = _embed_corpus(tmp_path, TINY_TEXTS[:3], "--model", model)
    capsys.readouterr()  # the job's summary
    (model / "notes.json").write_text("{}")  # a new file of the model directory: another fingerprint
    model_fingerprint.cache_clear()  # as in a new process: the job's fingerprint is cached in this one
    identity_of.cache_clear()
    hits = _json_hits(search, out, TINY_TEXTS[1], "--k", "1")
    assert hits[0]["id"] == _id(2) and hits[0]["score"] >= 0.999
    assert "the model or encoder version differs from the one that made" in caplog.text


def test_an_output_in_memory_filesystem_is_searched_like_a_local_one(search, tiny_output):
    root = "memory://search-test/out"
    for path in tiny_output.iterdir():
        with fsspec.open(f"{root}/{path.name}", "wb") as f:
            f.write(path.read_bytes())
    assert _json_hits(search, root, LONG, "--k", "3") == _json_hits(search, tiny_output, LONG, "--k", "3")
    assert _json_hits(search, root, "--id", _id(4)) == _json_hits(search, tiny_output, "--id", _id(4))


def test_an_unknown_id_exits_2_with_one_line(search, tiny_output):
    code, out, err = search(tiny_output, "--id", "no-such-id")
    assert (code, out) == (2, "")
    assert err == f"error: id 'no-such-id' is not in {tiny_output}\n"


@pytest.mark.parametrize("args, message", [
    (("--k", "0"), "--k must be positive, got 0"),
    (("--k", "ten"), "argument --k: invalid int value: 'ten'"),
    (("--format", "xml"), "argument --format: invalid choice"),
    ((), "give either QUERY or --id ID"),
    (("query", "--id", "x"), "give either QUERY or --id ID"),
])
def test_bad_arguments_exit_2_with_one_line(search, tiny_output, args, message):
    code, _, err = search(tiny_output, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1


def _not_ours_by(kind: str, directory):
    directory.mkdir()
    if kind == "no _SUCCESS":
        (directory / "embeddings-00000-00000.parquet").write_bytes(b"")
    elif kind == "_SUCCESS not JSON":
        (directory / "_SUCCESS").write_text("")
    elif kind == "_SUCCESS not our manifest":
        (directory / "_SUCCESS").write_text(json.dumps({"status": "ok"}))
    else:  # Parquet files without our metadata
        pq.write_table(pa.table({"id": ["a"], "embedding": pa.array([[1.0, 0.0]], pa.list_(pa.float32(), 2))}),
                       directory / "part.parquet")
        (directory / "_SUCCESS").write_text(json.dumps({"files": {"embeddings": ["part.parquet"]}}))


@pytest.mark.parametrize("kind", ["no _SUCCESS", "_SUCCESS not JSON", "_SUCCESS not our manifest",
                                  "Parquet without our metadata"])
def test_an_output_that_is_not_ours_exits_2_with_one_line(search, tmp_path, kind):
    _not_ours_by(kind, tmp_path / "out")
    code, out, err = search(tmp_path / "out", "--id", "a")
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1


def test_an_unfinished_output_exits_2_saying_so(search, tmp_path):
    out = tmp_path / "out"
    (out / "_temporary").mkdir(parents=True)
    (out / "_temporary" / "embeddings-00000-00000.parquet").write_bytes(b"PAR1")
    code, _, err = search(out, "hello")
    assert code == 2
    assert err == f"error: {out} is not finished: _temporary/ holds files but there is no _SUCCESS " \
                  "(the job is still running or was stopped; rerun it)\n"


def test_files_made_with_different_model_fingerprints_exit_2(search, tiny_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    last = out / read_manifest(out)["files"]["embeddings"][-1]
    table = pq.read_table(last)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"model_fingerprint": b"0" * 32}), last)
    code, _, err = search(out, "--id", _id(1))
    assert code == 2
    assert f"{last} was made with model fingerprint {'0' * 32}" in err


def test_ties_are_ordered_by_id_whatever_the_batches():
    top = TopK(3)
    top.add(np.array([0.5, 0.9]), pa.array(["d", "z"]))
    top.add(np.array([0.5, 0.5, 0.1]), pa.array(["c", "a", "b"]))
    assert [(h.rank, h.id, h.score) for h in top.hits()] == [(1, "z", 0.9), (2, "a", 0.5), (3, "c", 0.5)]


def test_the_running_top_k_equals_sorting_everything_at_once():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=500) / 20  # many ties
    ids = [f"id-{i:03d}" for i in rng.permutation(500)]
    top = TopK(25)
    for start in range(0, 500, 37):
        top.add(scores[start:start + 37], pa.array(ids[start:start + 37]))
    expected = sorted(zip(scores.tolist(), ids, strict=True), key=lambda row: (-row[0], row[1]))[:25]
    assert [(h.score, h.id) for h in top.hits()] == expected


# Ids as a JSON Lines input can give them: a terminal escape that clears the screen, a newline followed by a
# forged result row, C1 and Unicode line breaks, a right-to-left override; and ordinary Chinese, kept as is.
NASTY_IDS = {
    "clear\x1b[2J\x1b[Hscreen": "clear\\x1b[2J\\x1b[Hscreen",
    "forged\n   1  1.0000  corpus.txt:1": "forged\\n   1  1.0000  corpus.txt:1",
    "c1\x9b31m\x85next": "c1\\x9b31m\\x85next",
    "para\u2028graph\u2029": "para\\u2028graph\\u2029",
    "bidi\u202egnp.exe": "bidi\\u202egnp.exe",
    "back\\slash": "back\\\\slash",
    "中文编号": "中文编号",
}
# Every character that moves the cursor, breaks a line or reorders what follows it on screen.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def nasty_ids_output(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("search-nasty-ids")
    texts = TINY_TEXTS[: len(NASTY_IDS)]
    lines = [json.dumps({"id": record_id, "text": text}) for record_id, text in zip(NASTY_IDS, texts, strict=True)]
    (root / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "out"
    assert run_job(["--input", str(root / "in.jsonl"), "--output", str(out), "--model", str(tiny_bert_dir),
                    "--id_field", "id", "--progress", "off"]) == 0
    return out


def test_ids_are_printed_with_control_characters_escaped_one_line_per_result(search, nasty_ids_output):
    code, out, _ = search(nasty_ids_output, "hello world", "--k", "100")
    assert code == 0
    assert not RAW_CONTROL.search(out)
    header, *rows = out.splitlines()  # splitlines breaks at \x1c-\x1e, \x85, U+2028 and U+2029 too
    assert len(rows) == len(NASTY_IDS)
    shown = {row.split(maxsplit=2)[2] for row in rows}
    assert shown == set(NASTY_IDS.values())


def test_an_id_holding_a_newline_cannot_forge_a_result_row(search, nasty_ids_output):
    code, out, _ = search(nasty_ids_output, "hello world", "--k", "100")
    assert code == 0
    assert [row.split()[0] for row in out.splitlines()[1:]] == [str(rank) for rank in range(1, len(NASTY_IDS) + 1)]
    assert [h["id"] for h in _json_hits(search, nasty_ids_output, "hello world", "--k", "100")
            if h["id"].startswith("forged")] == ["forged\n   1  1.0000  corpus.txt:1"]  # JSON keeps the id exact


def test_kept_text_is_shown_on_one_line_with_control_characters_escaped():
    text = "first\nsecond\u2028third \x1b[2J cleared \u202eevil\u202c \x07bell 今天天气很好"
    out = format_hits([Hit(1, "a", 0.5, text)], "text")
    header, row = out.splitlines()
    assert not RAW_CONTROL.search(out)
    assert row.split(maxsplit=3)[3] == ("first second third \\x1b[2J cleared \\u202eevil\\u202c \\x07bell "
                                        "今天天气很好")


def test_kept_text_is_cut_whole_escapes_at_a_time():
    out = format_hits([Hit(1, "a", 0.5, "x" * 75 + "\x1b[2J" + "y" * 10)], "text")
    shown = out.splitlines()[1].split(maxsplit=3)[3]
    assert shown == "x" * 75 + "..."  # \x1b would pass the 80 characters: not cut to a lone "\x1"
    assert len(shown) <= 80


@pytest.mark.parametrize("vector_type, rewritten", [
    (pa.list_(pa.float32()), "all"),
    (pa.list_(pa.float32()), "last"),
    (pa.large_list(pa.float32()), "all"),
    (pa.list_(pa.float64()), "all"),
], ids=["list<float>", "list<float>-in-one-file", "large_list<float>", "list<double>"])
def test_embeddings_rewritten_as_variable_size_lists_are_searched_as_before(search, tiny_output, tmp_path,
                                                                           vector_type, rewritten):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    names = read_manifest(out)["files"]["embeddings"]
    for name in names if rewritten == "all" else names[-1:]:
        rewrite_embeddings(out / name, lambda column: column.cast(vector_type))
    assert pq.read_schema(out / names[-1]).field("embedding").type == vector_type
    for args in ((LONG,), ("--id", _id(2))):
        assert _json_hits(search, out, *args, "--k", "100") == _json_hits(search, tiny_output, *args, "--k", "100")


@pytest.mark.parametrize("change, said", NOT_VECTORS)
def test_embeddings_that_are_not_vectors_of_the_recorded_dim_exit_2_with_one_line(search, tiny_output, tmp_path,
                                                                                 change, said):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    last = out / read_manifest(out)["files"]["embeddings"][-1]
    rewrite_embeddings(last, change)
    for args in (("hello world",), ("--id", _id(1))):
        code, printed, err = search(out, *args)
        assert (code, printed) == (2, "")
        assert err.startswith(f"error: {last}: ") and err.count("\n") == 1
        assert said in err


def test_a_page_changed_after_the_job_wrote_it_exits_2_naming_the_file(search, tiny_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    damaged = out / read_manifest(out)["files"]["embeddings"][1]
    before = pq.read_table(damaged).column("embedding")
    damage_page(damaged)
    assert pq.read_table(damaged).column("embedding") != before  # read unchecked: other vectors, no error
    for args in (("hello world",), ("--id", _id(1))):
        code, printed, err = search(out, *args)
        assert (code, printed) == (2, "")
        assert err.startswith(f"error: {damaged} cannot be read: ") and err.count("\n") == 1
        assert "CRC checksum verification failed" in err


def test_files_another_tool_wrote_without_page_checksums_are_searched_as_before(search, tiny_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_output, out)
    for name in read_manifest(out)["files"]["embeddings"]:
        pq.write_table(pq.read_table(out / name), out / name)  # pyarrow's defaults: no page checksums
    for args in ((LONG,), ("--id", _id(2))):
        assert _json_hits(search, out, *args, "--k", "100") == _json_hits(search, tiny_output, *args, "--k", "100")
