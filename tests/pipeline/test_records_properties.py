"""Property tests: no input bytes make the line parser raise, and its results are stable."""

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.formats.records import DeadLetter, InputFormat, Record, Skipped, normalize_text, parse_line

FORMATS = [InputFormat("text"), InputFormat("jsonl", id_field="id"), InputFormat("text", encoding="latin-1"),
           InputFormat("text", max_chars=50)]


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), line=st.integers(min_value=1, max_value=10**6), fmt=st.sampled_from(FORMATS))
def test_any_bytes_give_a_record_a_skip_or_a_dead_letter_with_a_reason(raw, line, fmt):
    outcome = parse_line(raw, "shard.txt", line, fmt)
    assert isinstance(outcome, (Record, DeadLetter, Skipped))
    if isinstance(outcome, DeadLetter):
        assert outcome.reason and outcome.detail
        assert len(outcome.to_json()) < 5000
    if isinstance(outcome, Record):
        assert outcome.text.strip() and "\x00" not in outcome.text
        assert unicodedata.is_normalized("NFC", outcome.text)
    assert parse_line(raw, "shard.txt", line, fmt) == outcome


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), line=st.integers(min_value=1, max_value=10**6))
def test_text_ids_are_the_shard_and_line_whatever_the_content(raw, line):
    outcome = parse_line(raw, "dir/shard.txt", line, InputFormat("text"))
    if isinstance(outcome, Record):
        assert outcome.id == f"dir/shard.txt:{line}"


@given(text=st.text(max_size=200))
def test_normalisation_is_idempotent(text):
    once, _ = normalize_text(text)
    assert normalize_text(once) == (once, 0)


# Structure-level attacks on JSON Lines: deep nesting, huge numbers, duplicate keys.

JSONL = InputFormat("jsonl", id_field="id")
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


def _assert_an_outcome(line: bytes) -> Record | DeadLetter | Skipped:
    outcome = parse_line(line, "d.jsonl", 1, JSONL)
    assert isinstance(outcome, (Record, DeadLetter, Skipped))
    if isinstance(outcome, DeadLetter):
        assert outcome.reason and outcome.detail and len(outcome.to_json()) < 5000
    assert parse_line(line, "d.jsonl", 1, JSONL) == outcome
    return outcome


@st.composite
def deep_json(draw) -> bytes:
    """Nesting from shallow to far past any recursion limit, closed, half closed or not, maybe inside a record."""
    depth = draw(st.one_of(st.integers(1, 700), st.integers(700, 120_000), st.sampled_from([100_000, 200_000])))
    opener = draw(st.sampled_from([b"[", b"{", b'{"a":', b'{"id":', b"[1,", b'["[{",']))
    closer = b"}" if opener.startswith(b"{") else b"]"
    inner = draw(st.sampled_from([b"", b"1", b'"x"', b"[]", b"{}"]))
    if opener in (b"{", b"[1,") and inner == b"":  # keep some of the lines valid JSON
        inner = b"0" if opener == b"[1," else b""
    closed = draw(st.sampled_from([depth, depth // 2, 0]))
    nested = opener * depth + inner + closer * closed
    return draw(st.sampled_from([nested, b'{"id": 1, "text": "t", "n": ' + nested + b"}"]))


@settings(max_examples=60, deadline=None)
@given(line=deep_json())
def test_deep_nesting_never_raises(line):
    outcome = _assert_an_outcome(line)
    if line.count(b"[") + line.count(b"{") > 100_000:
        assert isinstance(outcome, DeadLetter) and outcome.reason == "invalid_json"


@settings(max_examples=100, deadline=None)
@given(value=_JSON_VALUES, depth=st.integers(0, 2000), field=st.sampled_from(["id", "text", "other"]))
def test_arbitrary_json_nested_at_any_depth_never_raises(value, depth, field):
    nested = "[" * depth + json.dumps(value) + "]" * depth
    _assert_an_outcome(('{"id": 1, "text": "t", "' + field + '": ' + nested + "}").encode())


_HUGE_NUMBERS = st.one_of(
    st.builds(lambda sign, digits: sign + digits, st.sampled_from(["", "-"]),
              st.integers(1, 6000).map(lambda n: "9" * n)),
    st.builds("{}e{}".format, st.integers(-10, 10), st.integers(-2000, 2000)),
    st.builds("{}.{}e{}".format, st.integers(0, 9), st.integers(0, 10**40), st.integers(-400, 400)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "0.0e0"]),
)


@settings(max_examples=200, deadline=None)
@given(number=_HUGE_NUMBERS, field=st.sampled_from(["id", "text", "other"]))
def test_huge_numbers_never_raise_and_ids_are_finite(number, field):
    line = {"id": '"x"', "text": '"t"', "other": "0"} | {field: number}
    outcome = _assert_an_outcome(("{" + ", ".join(f'"{k}": {v}' for k, v in line.items()) + "}").encode())
    if isinstance(outcome, Record):
        assert outcome.id not in ("inf", "-inf", "nan")


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(["id", "text", "x"]), _SCALARS | _JSON_VALUES), max_size=12))
def test_duplicate_keys_never_raise_and_the_last_value_wins(pairs):
    line = ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}").encode()
    outcome = _assert_an_outcome(line)
    last = dict(pairs)
    if isinstance(outcome, Record):
        assert outcome.id == str(last["id"])
        assert outcome.text == normalize_text(last["text"])[0]
