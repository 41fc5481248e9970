"""CSV and TSV shards: a header in any order and rows quoted any way, each with at most one flaw."""

from __future__ import annotations

import csv
import io
import re

from hypothesis import strategies as st

from tests.pipeline.generated.records import (
    BAD,
    BLANKS,
    FIELD_TOO_LARGE,
    MAX_CHARS,
    RECORD,
    SKIP,
    STRINGS,
    GeneratedShard,
    IdPool,
    InputRecord,
    draw_flaw,
    good_text,
    long_text,
    rendered,
)

_TOO_LARGE_FOR_CSV = 2 * 1_000_000 + 2
_CSV_FLAWS = ("blank", "space", "undecodable", "missing_id", "missing_text", "too_long", "kept_too_long",
              "field_too_large")
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")  # where the csv module, reading with newline="", counts lines


@st.composite
def csv_shard(draw, name: str, pool: IdPool, kept: tuple[str, ...]):
    """A CSV or TSV shard: a header (columns in any order) and a few rows, quoted fields spanning lines."""
    delimiter = "\t" if name.endswith(".tsv") else ","
    header = draw(st.permutations(["id", "text", *kept, "extra"]))
    out = io.StringIO("\ufeff" if draw(st.integers(0, 5)) == 0 else "")  # maybe a BOM, not part of the header
    out.seek(0, io.SEEK_END)
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n",
                        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    writer.writerow(header)
    records: list[InputRecord] = []
    for _ in range(draw(st.integers(0, 6))):
        line = len(_LINE_BREAKS.findall(out.getvalue())) + 1
        flaw = draw_flaw(draw, _CSV_FLAWS)
        record_id = pool.draw(draw)
        fields = {"id": record_id, "text": good_text(draw), "extra": draw(STRINGS | BAD),
                  **{k: draw(STRINGS) for k in kept}}
        outcome, derived_id, flawed_field, width = RECORD, record_id, None, len(header)
        if flaw == "blank":
            out.write("\r\n")
            records.append(InputRecord(line, SKIP, None, row=[]))
            continue
        if flaw == "space":
            fields["text"], outcome = draw(st.sampled_from(BLANKS)), SKIP
        elif flaw == "undecodable":
            where = draw(st.sampled_from(["id", "text", *kept]))
            fields[where] += draw(BAD)
            outcome, derived_id = "undecodable", None if where == "id" else record_id
            flawed_field = where if where in kept else None
        elif flaw == "missing_id":
            outcome, derived_id = "missing_id", None
            if header.index("id") > 0 and draw(st.booleans()):
                width = header.index("id")  # a short row that ends before the id
            else:
                fields["id"] = ""
        elif flaw == "missing_text" and header.index("text") > header.index("id"):
            outcome, width = "missing_text", header.index("text")
        elif flaw == "too_long":
            outcome, fields["text"] = "too_long", long_text(MAX_CHARS + draw(st.integers(1, 300)))
        elif flaw == "kept_too_long" and kept:
            outcome, fields["text"] = "too_long", long_text(MAX_CHARS // 2)
            fields[kept[0]] = "y" * (MAX_CHARS // 2 + 10)
        elif flaw == "field_too_large":
            outcome, fields["text"] = FIELD_TOO_LARGE, long_text(_TOO_LARGE_FOR_CSV + draw(st.integers(0, 100)))
        row = [fields[column] for column in header][:width]
        writer.writerow(row)
        shown = [rendered(value) for value in row]
        records.append(InputRecord(line, outcome, derived_id, dict(zip(header, row, strict=False)), row=shown,
                                   flawed_field=flawed_field))
    written = out.getvalue()
    if all(r.outcome != FIELD_TOO_LARGE for r in records):  # the rows read back as written
        read_back = list(csv.reader(io.StringIO(written.removeprefix("\ufeff"), newline=""), delimiter=delimiter))
        assert [[rendered(v) for v in row] for row in read_back[1:]] == [r.row for r in records], "generator"
    return GeneratedShard(name, "tsv" if delimiter == "\t" else "csv", records,
                          written.encode("utf-8", "surrogateescape"))
