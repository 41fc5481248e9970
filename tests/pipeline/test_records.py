import json

from pipeline.records import DeadLetter, InputFormat, Record, Skipped, parse_line

TEXT = InputFormat("text")
JSONL = InputFormat("jsonl", text_field="body", id_field="doc")


def test_text_line_becomes_a_record_with_path_and_line_id():
    assert parse_line("你好 world".encode(), "a/b.txt", 7, TEXT) == Record("a/b.txt:7", "你好 world", "a/b.txt", 7)


def test_blank_and_whitespace_lines_are_skipped():
    assert isinstance(parse_line(b"", "s", 1, TEXT), Skipped)
    assert isinstance(parse_line(b" \t\xe3\x80\x80 ", "s", 2, TEXT), Skipped)  # incl. ideographic space


def test_undecodable_line_is_a_dead_letter_keeping_the_raw_bytes_escaped():
    dead = parse_line(b"ok \xff\xfe", "s.txt", 3, TEXT)
    assert isinstance(dead, DeadLetter)
    assert (dead.source, dead.line, dead.reason) == ("s.txt", 3, "undecodable")
    assert dead.raw == "ok \\xff\\xfe"
    assert json.loads(dead.to_json())["reason"] == "undecodable"


def test_other_encodings_decode_when_asked():
    record = parse_line("café".encode("latin-1"), "s", 1, InputFormat("text", encoding="latin-1"))
    assert record.text == "café"


def test_utf8_bom_is_not_part_of_the_first_record():
    assert parse_line(b"\xef\xbb\xbfhello", "s", 1, TEXT).text == "hello"


def test_raw_preview_is_bounded():
    dead = parse_line(b"\xff" + b"x" * 10_000, "s", 1, TEXT)
    assert len(dead.raw) < 2100


def test_jsonl_takes_text_and_id_fields():
    line = json.dumps({"doc": 42, "body": "正文"}).encode()
    assert parse_line(line, "d.jsonl", 1, JSONL) == Record("42", "正文", "d.jsonl", 1)


def test_jsonl_without_id_field_uses_path_and_line():
    line = json.dumps({"text": "hi"}).encode()
    assert parse_line(line, "d.jsonl", 5, InputFormat("jsonl")).id == "d.jsonl:5"


def test_jsonl_problems_are_dead_letters_with_reasons():
    cases = {
        b"{not json": "invalid_json",
        b"[1, 2]": "invalid_json",
        json.dumps({"doc": 1}).encode(): "missing_text",
        json.dumps({"doc": 1, "body": None}).encode(): "missing_text",
        json.dumps({"doc": 1, "body": 3}).encode(): "text_not_string",
        json.dumps({"body": "x"}).encode(): "missing_id",
    }
    for line, reason in cases.items():
        dead = parse_line(line, "d.jsonl", 1, JSONL)
        assert isinstance(dead, DeadLetter) and dead.reason == reason, line


def test_jsonl_blank_text_is_skipped():
    assert isinstance(parse_line(json.dumps({"doc": 1, "body": "  "}).encode(), "d", 1, JSONL), Skipped)


def test_text_is_nfc_normalised():
    decomposed = "cafe\u0301"
    assert parse_line(decomposed.encode(), "s", 1, TEXT).text == "caf\u00e9"


def test_nul_and_control_characters_are_removed_and_counted_tabs_kept():
    record = parse_line(b"a\x00b\x07c\td\x1b", "s", 1, TEXT)
    assert (record.text, record.removed_chars) == ("abc\td", 3)


def test_a_line_of_only_control_characters_is_skipped_and_counted():
    skipped = parse_line(b"\x00\x00 \x01", "s", 4, TEXT)
    assert isinstance(skipped, Skipped) and skipped.removed_chars == 3


def test_text_longer_than_max_chars_is_a_dead_letter():
    fmt = InputFormat("text", max_chars=10)
    dead = parse_line(b"x" * 11, "s", 2, fmt)
    assert isinstance(dead, DeadLetter) and dead.reason == "too_long" and dead.id == "s:2"
    assert isinstance(parse_line(b"x" * 10, "s", 3, fmt), Record)


def test_json_text_field_is_normalised_too():
    line = json.dumps({"doc": 1, "body": "e\u0301\u0000"}).encode()
    record = parse_line(line, "d", 1, JSONL)
    assert (record.text, record.removed_chars) == ("\u00e9", 1)
