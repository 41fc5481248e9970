"""Property tests: no input bytes make the line parser raise, and its results are stable."""

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import DeadLetter, InputFormat, Record, Skipped, normalize_text, parse_line

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
