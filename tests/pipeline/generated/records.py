"""What every generated shard shares: its records and their labels, the run, ids, texts and undecodable bytes."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

KEPT = ("k0", "k1", "k2", "k3", "k4", "k5")
MAX_CHARS = 3000  # the runs' --max_chars
RECORD, SKIP = "record", "skip"
# A CSV text longer than the csv module's field limit: invalid_csv. The job raises the limit to 2 * --max_chars + 1
# (2,000,001 with the default --max_chars), process-wide and only ever up, so a field is too large for it after
# any earlier run in the same process only if longer than that; after a run with a larger --max_chars, too_long.
FIELD_TOO_LARGE = "invalid_csv or too_long"
SAMPLE_RECORDS = 1000  # records per JSON shard that decide a kept column's type (README)

# Bytes that do not decode, as the surrogate escapes they read as (b"\\xff" as "\\udcff").
BAD = st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xfe\xff"]).map(
    lambda data: data.decode("utf-8", "surrogateescape"))
_CHARS = st.characters(codec="utf-8")  # NUL, controls, combining marks, astral; no surrogates
STRINGS = st.text(_CHARS, max_size=8)
_WORDS = ("alpha", "数据", "שלום", "naïve", "😀x", "Ωmega", "e\u0301te")
BLANKS = ("", " ", "\t\n", "\u3000 ", "\x00\x01", " \x7f\u0085 ")


_SHORT = reprlib.Repr()  # a failing example shows its records and shards, not their 2 MB texts
_SHORT.maxstring = _SHORT.maxother = 200
_SHORT.maxlevel = 6


def _short_repr(obj: object) -> str:
    shown = (f"{f.name}={_SHORT.repr(getattr(obj, f.name))}" for f in fields(obj) if f.name != "data")
    return f"{type(obj).__name__}({', '.join(shown)})"


@dataclass(repr=False)
class InputRecord:
    """One record of a shard and what reading it gives."""

    line: int  # line (JSON, CSV: where the row starts) or row number, as the job reports it
    outcome: str  # RECORD, SKIP, FIELD_TOO_LARGE or the reason of the dead letter made while reading
    id: str | None  # the id the job derives (None where it derives none)
    fields: dict | None = None  # JSON: the object as json.loads reads it; CSV: {column: value}; Parquet: None
    rendered: str | None = None  # JSON: the line, bytes that do not decode as \xNN (a dead letter's raw, uncut)
    row: list[str] | None = None  # CSV: the row's fields, bytes that do not decode as \xNN
    index: int | None = None  # Parquet: its row in the shard's table
    flawed_field: str | None = None  # the kept field whose value makes it undecodable

    __repr__ = _short_repr


@dataclass(repr=False)
class GeneratedShard:
    """A shard as written (its bytes, or a Parquet table) and its records in order."""

    name: str
    format: str  # jsonl, csv, tsv, parquet
    records: list[InputRecord]
    data: bytes | pa.Table
    row_group_size: int | None = None  # Parquet: rows per row group (each its own batch, its own dictionary)

    def __repr__(self) -> str:
        if isinstance(self.data, pa.Table):
            data = ", ".join(f"{name}: {_SHORT.repr(str(self.data.column(name)))}" for name in self.data.column_names)
            data = f"{self.data.schema.types} {data}"
        else:
            data = _SHORT.repr(self.data)
        return f"{_short_repr(self)[:-1]}, data={data})"


@dataclass
class Run:
    """The shards of one job run and its settings (--keep_fields, --keep_text, --records_per_file)."""

    shards: list[GeneratedShard]  # in sorted name order: the job's shard order
    kept: tuple[str, ...]
    keep_text: bool
    records_per_file: int

    def write(self, directory: Path) -> None:
        """Write the shards; a Parquet shard's table becomes the table read back, as the job sees it (a date64
        column reads as date32, a time32[s] one as time32[ms])."""
        for shard in self.shards:
            if isinstance(shard.data, pa.Table):
                pq.write_table(shard.data, directory / shard.name, row_group_size=shard.row_group_size)
                shard.data = read_back(directory / shard.name)
            else:
                (directory / shard.name).write_bytes(shard.data)


@dataclass
class IdPool:
    """Ids of a run, in shard order: fresh ones (digits, which JSON may write as numbers, or text of any
    characters) and repeats of earlier ones."""

    ids: list[str] = field(default_factory=list)

    def draw(self, draw: Callable, numeric: bool = False) -> str:
        earlier = [i for i in self.ids if i.isdigit() or not numeric]
        if earlier and draw(st.integers(0, 6)) == 0:
            return draw(st.sampled_from(earlier))
        fresh = str(100 + len(self.ids))
        if not numeric and draw(st.integers(0, 3)) == 0:
            fresh = f"r{fresh}{draw(STRINGS)}"
        self.ids.append(fresh)
        return fresh


def good_text(draw: Callable) -> str:
    """A text with something to embed, whatever characters follow its first word."""
    return draw(st.sampled_from(_WORDS)) + draw(STRINGS)


def long_text(length: int) -> str:
    return ("lorem ipsum " * (length // 12 + 1))[:length]


def rendered(text: str) -> str:
    """How a dead letter shows text read with surrogate escapes: the bytes that did not decode as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def draw_flaw(draw: Callable, flaws: tuple[str, ...]) -> str | None:
    """One of flaws for about 4 records in 10, None (a good record) for the others."""
    return draw(st.sampled_from(flaws)) if draw(st.integers(0, 9)) < 4 else None


def read_back(path: Path) -> pa.Table:
    """A Parquet file as the job reads it: dictionaries with Parquet's int32 indices (narrowing them checks their
    strings as UTF-8), then given back the index type the file declares, unchecked."""
    declared = pq.read_schema(path)
    table = pq.read_table(path, read_dictionary=[f.name for f in declared if pa.types.is_dictionary(f.type)])
    columns = []
    for wanted, column in zip(declared, table.columns, strict=True):
        if pa.types.is_dictionary(wanted.type) and column.type != wanted.type:
            index = wanted.type.index_type
            chunks = [pa.DictionaryArray.from_arrays(c.indices.cast(index), c.dictionary) for c in column.chunks]
            column = pa.chunked_array(chunks, wanted.type)
        columns.append(column)
    schema = pa.schema([f.with_type(c.type) for f, c in zip(table.schema, columns, strict=True)],
                       metadata=table.schema.metadata)
    return pa.Table.from_arrays(columns, schema=schema)
