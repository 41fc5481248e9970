"""JSON Lines shards: one JSON line per record, each with at most one flaw, values of every JSON kind."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from tests.pipeline.generated.records import (
    BAD,
    BLANKS,
    MAX_CHARS,
    RECORD,
    SAMPLE_RECORDS,
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

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


class Literal(str):
    """A JSON value written as given (1e400 reads as inf, -0 as 0)."""


_INT64 = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-(2**63), 2**63 - 1, 0, 2**53 + 1])
_HUGE_INTS = st.integers(2**63, 10**400) | st.integers(-(10**400), -(2**63) - 1)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308])
_LITERALS = st.sampled_from(["1e400", "-1E400", "-0", "1.0E+2", "1e-400", "3.0", "-0.0"]).map(Literal)
_PLAIN = st.one_of(st.none(), st.booleans(), _INT64, _HUGE_INTS, _FLOATS, STRINGS)
_NESTED = st.recursive(_PLAIN, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
                       max_leaves=8)
_DEEP = st.integers(2, 150).map(lambda depth: Literal("[" * depth + "1" + "]" * depth))
_SCALARS = _PLAIN | _LITERALS
JSON_FLAVORS = {  # what a run's JSON shards hold in one kept field, so that columns of every kind come up
    "ints": _INT64,
    "numbers": _INT64 | _FLOATS | _LITERALS,
    "floats": _FLOATS,
    "bools": st.booleans(),
    "strings": STRINGS,
    "anything": st.one_of(_SCALARS, _NESTED, _DEEP),
}
_ABSENT = object()
_JSON_FLAWS = ("blank", "space", "undecodable", "surrogate", "invalid_json", "missing_id", "missing_text",
               "text_not_string", "too_long", "kept_too_long", "unreadable")


def _dumps(value: object, ascii_only: bool) -> str:
    return str(value) if isinstance(value, Literal) else json.dumps(value, ensure_ascii=ascii_only)


def json_line(pairs: list[tuple[str, object]], ascii_only: bool) -> str:
    """An object from (key, value) pairs as written, repeated keys included; _ABSENT values left out."""
    return "{" + ", ".join(f"{_dumps(k, ascii_only)}: {_dumps(v, ascii_only)}" for k, v in pairs
                           if v is not _ABSENT) + "}"


@st.composite
def json_value(draw, flavor: str) -> object:
    """A kept field's value: of the field's flavor, or null, or absent."""
    choice = draw(st.integers(0, 7))
    return _ABSENT if choice == 0 else None if choice == 1 else draw(JSON_FLAVORS[flavor])


@st.composite
def json_record(draw, line: int, pool: IdPool, flavors: dict[str, str]) -> tuple[bytes, InputRecord]:
    """One JSON line (without its line ending) and its label."""
    flaw = draw_flaw(draw, _JSON_FLAWS)
    kept = list(flavors)
    record_id = pool.draw(draw)
    written_id: object = int(record_id) if record_id.isdigit() and draw(st.booleans()) else record_id
    text: object = good_text(draw)
    values = {name: draw(json_value(flavors[name])) for name in kept}
    extra: object = draw(_SCALARS)
    ascii_only = draw(st.booleans())
    outcome, derived_id, flawed_field, cut = RECORD, record_id, None, False
    if flaw == "blank":
        written = draw(st.sampled_from(["", "  ", "\t "]))
        return written.encode(), InputRecord(line, SKIP, None, rendered=written)
    if flaw == "space":
        text, outcome = draw(st.sampled_from(BLANKS)), SKIP
    elif flaw == "undecodable":  # bytes that are not UTF-8: the whole line is undecodable, no id read
        where = draw(st.sampled_from(["text", "id", "extra", *kept]))
        outcome, derived_id, ascii_only, bad = "undecodable", None, False, draw(BAD)
        if where == "text":
            text = f"{text}{bad}"
        elif where == "id":
            written_id = f"{record_id}{bad}"
        elif where == "extra":
            extra = f"x{bad}"
        else:
            values[where] = [f"v{bad}"]
    elif flaw == "surrogate":  # a lone surrogate (JSON's \ud800) in the text, the id or a kept string or key
        where = draw(st.sampled_from(["text", "id", *kept]))
        lone = draw(_SURROGATES)
        outcome, ascii_only = "undecodable", True
        if where == "text":
            text = f"{text}{lone}"
        elif where == "id":
            written_id, derived_id = f"{record_id}{lone}", None
        else:
            values[where] = draw(st.sampled_from([f"a{lone}", {f"k{lone}": 1}, [1, [lone]]]))
            flawed_field = where
    elif flaw == "invalid_json":
        outcome, derived_id = "invalid_json", None
        kind = draw(st.sampled_from(["cut", "not_object", "deep", "huge_number"]))
        cut = kind == "cut"
        if kind == "deep":  # past 512 levels of arrays and objects
            extra = Literal("[" * draw(st.integers(512, 1500)) + "]" * 1500)
        elif kind == "huge_number":  # more digits than json reads (4300)
            extra = Literal("9" * draw(st.integers(4301, 5000)))
        elif kind == "not_object":
            written = draw(st.sampled_from(["[1, 2]", '"text"', "42", "null", "true", "[]"]))
            return written.encode(), InputRecord(line, outcome, None, rendered=written)
    elif flaw == "missing_id":
        outcome, derived_id = "missing_id", None
        written_id = draw(st.sampled_from([_ABSENT, None, "", [], {"a": 1}, True, Literal("NaN"),
                                           Literal("-Infinity"), Literal("1e400")]))
    elif flaw == "missing_text":
        outcome, text = "missing_text", draw(st.sampled_from([_ABSENT, None]))
    elif flaw == "text_not_string":
        outcome, text = "text_not_string", draw(st.sampled_from([5, 1.5, True, ["a"], {"t": "a"}]))
    elif flaw in ("too_long", "unreadable"):  # unreadable: longer than --max_chars * 4 bytes, never read whole
        outcome = "too_long"
        text = long_text(MAX_CHARS * 4 + 100 if flaw == "unreadable" else MAX_CHARS + draw(st.integers(1, 300)))
        derived_id = None if flaw == "unreadable" else record_id
    elif flaw == "kept_too_long" and kept:  # text and kept values together past --max_chars
        outcome, text, values[kept[0]] = "too_long", long_text(MAX_CHARS // 2), "y" * (MAX_CHARS // 2 + 10)
    pairs = draw(st.permutations([("id", written_id), ("text", text), *values.items(), ("extra", extra)]))
    if outcome == RECORD and draw(st.integers(0, 5)) == 0:
        pairs = [(draw(st.sampled_from(["id", "text", *kept])), draw(_SCALARS)), *pairs]  # the last value wins
    written = json_line(pairs, ascii_only)
    if cut:
        written = written[: draw(st.integers(1, len(written) - 1))]
    fields = None if outcome == "invalid_json" else json.loads(written)
    return written.encode("utf-8", "surrogateescape"), InputRecord(line, outcome, derived_id, fields,
                                                                   rendered(written), flawed_field=flawed_field)


@st.composite
def jsonl_shard(draw, name: str, pool: IdPool, flavors: dict[str, str], prefix: list[dict] | None = None):
    """A JSON Lines shard of a few records; after `prefix` (whole records, all read as records) if given."""
    lines: list[bytes] = []
    records: list[InputRecord] = []
    for values in prefix or []:
        lines.append(json.dumps(values).encode())
        records.append(InputRecord(len(lines), RECORD, values["id"], values, lines[-1].decode()))
    for _ in range(draw(st.integers(0, 6))):
        data, record = draw(json_record(len(lines) + 1, pool, flavors))
        lines.append(data)
        records.append(record)
    data = b"".join(line + draw(st.sampled_from([b"\n", b"\r\n"])) for line in lines)
    if lines and lines[-1].strip() and draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # no line end after the last record
    if lines and draw(st.integers(0, 5)) == 0:
        data = "\ufeff".encode() + data  # a BOM, which is not part of the first record
    return GeneratedShard(name, "jsonl", records, data)


PREFIX_KINDS = {
    "int": lambda i: i, "float": lambda i: i + 0.5, "bool": lambda i: i % 2 == 0, "string": lambda i: f"s{i}",
    "numbers": lambda i: i if i % 2 else i + 0.5, "null": lambda i: None, "object": lambda i: {"i": [i]},
}


def prefix_records(kinds: dict[str, str]) -> list[dict]:
    """SAMPLE_RECORDS records whose kept fields hold one kind each (PREFIX_KINDS): they decide the columns' types."""
    return [{"id": f"p{i}", "text": f"prefix {i}", **{k: PREFIX_KINDS[kind](i) for k, kind in kinds.items()}}
            for i in range(SAMPLE_RECORDS)]
