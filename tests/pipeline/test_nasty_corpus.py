"""A deliberately nasty corpus: the job exits 0, every record is embedded, skipped or dead-lettered
with its reason, the manifest reconciles exactly (overall, per shard, per reason), and no valid record is missing.

Each generated record carries its expected outcome, so the test knows the answer without running the job.
"""

import bz2
import csv
import gzip
import io
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.pipeline.conftest import read_dead_letters, read_embeddings, read_manifest

EMBED, SKIP = "embed", "skip"


class Corpus:
    """Shards written to a directory, with the expected outcome of every record in them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.expected: dict[tuple[str, int], tuple[str, str | None]] = {}  # (shard, line) -> (outcome, id)
        self.shards: list[str] = []

    def add(self, name: str, data: bytes, outcomes: list[tuple[int, str, str | None]]) -> None:
        (self.root / name).write_bytes(data)
        self.shards.append(name)
        for line, outcome, record_id in outcomes:
            self.expected[(name, line)] = (outcome, record_id)

    def counts(self) -> dict[str, int]:
        outcomes = Counter(o for o, _ in self.expected.values())
        failed = sum(n for o, n in outcomes.items() if o not in (EMBED, SKIP))
        return {"read": len(self.expected), "embedded": outcomes[EMBED], "skipped": outcomes[SKIP], "failed": failed}


def text_corpus(root: Path) -> Corpus:
    corpus = Corpus(root)
    lines: list[tuple[bytes, str]] = [
        ("\ufeff第一行 first".encode(), EMBED),  # a BOM is not part of the first record
        (b"windows line\r", EMBED),  # CRLF
        (b"lone\rcarriage return inside", EMBED),
        ("emoji \U0001F600 astral \U0001D518\U0001D52B \U0001F9EA".encode(), EMBED),
        ("right to left שלום עולם مرحبا بالعالم".encode(), EMBED),
        (b"nul\x00inside and \x07bell", EMBED),
        (b"", SKIP),
        (" \t\u3000 ".encode(), SKIP),
        (b"bad \xff\xfe bytes", "undecodable"),
        (b"a" * 1_000_001, "too_long"),  # one character over the default --max_chars
        (b"b " * 450_000, EMBED),  # a 900,000-character line: embedded, truncated
        (b"c" * 4_000_010, "too_long"),  # too long to even read whole
        (b"\x00\x01\x02", SKIP),  # nothing left after control characters go
        ("combining e\u0301 and ﬁ ligature".encode(), EMBED),
    ]
    data = b"\n".join(raw for raw, _ in lines)  # the last line has no newline
    corpus.add("nasty.txt", data, [(i, o, f"nasty.txt:{i}") for i, (_, o) in enumerate(lines, 1)])
    corpus.add("empty.txt", b"", [])
    corpus.add("blank-only.txt", b"\n   \n\t\r\n", [(1, SKIP, None), (2, SKIP, None), (3, SKIP, None)])
    corpus.add("only-cr.txt", b"one\rtwo\rthree", [(1, EMBED, "only-cr.txt:1")])
    gz_lines = ["压缩的 第一行", "", "compressed second"]
    corpus.add("packed.txt.gz", gzip.compress("\n".join(gz_lines).encode() + b"\n"),
               [(1, EMBED, "packed.txt.gz:1"), (2, SKIP, None), (3, EMBED, "packed.txt.gz:3")])
    return corpus


def _jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode()) + b"\n" for r in rows)


def _csv(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogateescape")


def structured_corpus(root: Path) -> Corpus:
    corpus = Corpus(root)
    corpus.add("a.jsonl", _jsonl([
        {"id": "j1", "text": "hello"},
        b"{broken",
        {"id": "j3", "text": None},
        {"id": "j4", "text": 42},
        {"text": "no id"},
        {"id": "j1", "text": "the same id again"},
        [1, 2],
        b'{"id": "j8", "text": "lone \\ud800 surrogate"}',
        b"",
        {"id": "j10", "text": "   "},
        {"id": "j11", "text": "😀 שלום мир"},
        {"id": "j12", "text": "x" * 1_000_001},
        {"id": 13, "text": "a numeric id"},
    ]), [(1, EMBED, "j1"), (2, "invalid_json", None), (3, "missing_text", None), (4, "text_not_string", None),
         (5, "missing_id", None), (6, "duplicate_id", None), (7, "invalid_json", None), (8, "undecodable", None),
         (9, SKIP, None), (10, SKIP, None), (11, EMBED, "j11"), (12, "too_long", None), (13, EMBED, "13")])
    corpus.add("b.jsonl.gz", gzip.compress(_jsonl([{"id": "13", "text": "dup across shards"},
                                                   {"id": "b2", "text": "gz fine"}])),
               [(1, "duplicate_id", None), (2, EMBED, "b2")])
    csv_rows = [["id", "text"], ["c1", "quoted, with comma\nand a second line"], ["c2"], ["c3", "bad \udcff byte"],
                [], ["c5", "ok row"]]
    corpus.add("c.csv", b"\xef\xbb\xbf" + _csv(csv_rows),
               [(2, EMBED, "c1"), (4, "missing_text", None), (5, "undecodable", None), (6, SKIP, None),
                (7, EMBED, "c5")])
    corpus.add("d.tsv.bz2", bz2.compress(_csv([["text", "id"], ["tab\tinside quotes", "t1"], ["plain", "t2"]],
                                                 delimiter="\t")),
               [(2, EMBED, "t1"), (3, EMBED, "t2")])
    corpus.add("e.csv.zst", zstandard.ZstdCompressor().compress(_csv([["id", "text"], ["z1", "zstd row"]])),
               [(2, EMBED, "z1")])
    table = pa.table({"id": ["p1", "p2", None, "p4"], "text": ["parquet row", None, "no id", ""]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    corpus.add("f.parquet", sink.getvalue(),
               [(1, EMBED, "p1"), (2, "missing_text", None), (3, "missing_id", None), (4, SKIP, None)])
    corpus.add("g.csv", b"", [])  # an empty CSV has no header and no rows
    return corpus


@pytest.mark.parametrize("kind", ["text", "structured"])
def test_nasty_corpus_is_fully_accounted_for(run_cli, tiny_bert_dir, tmp_path, kind):
    root = tmp_path / "in"
    root.mkdir()
    corpus = text_corpus(root) if kind == "text" else structured_corpus(root)
    out = tmp_path / "out"
    extra = ["--id_field", "id"] if kind == "structured" else []
    code, _, err = run_cli("--input", root / "*", "--output", out, "--model", tiny_bert_dir, *extra)
    assert code == 0, err

    manifest = read_manifest(out)
    assert manifest["counts"] == corpus.counts()
    for shard in manifest["shards"]:
        expected = Counter(o for (name, _), (o, _) in corpus.expected.items() if name == shard["source"])
        assert shard["read"] == sum(expected.values()), shard
        assert shard["read"] == shard["embedded"] + shard["skipped"] + shard["failed"]
        reasons = {o: n for o, n in expected.items() if o not in (EMBED, SKIP)}
        assert shard["failed_by_reason"] == reasons, shard["source"]
    assert sorted(s["source"] for s in manifest["shards"]) == sorted(corpus.shards)

    table = read_embeddings(out)
    expected_ids = sorted(i for o, i in corpus.expected.values() if o == EMBED)
    assert table.column("id").to_pylist() == expected_ids  # every valid record, each once

    dead = read_dead_letters(out)
    assert all(d["reason"] and d["detail"] for d in dead)
    assert sorted((d["source"], d["line"], d["reason"]) for d in dead) == sorted(
        (name, line, o) for (name, line), (o, _) in corpus.expected.items() if o not in (EMBED, SKIP))
    assert all(len(d.get("raw", "")) <= 2003 for d in dead)  # raw content kept, cut to a bounded length
