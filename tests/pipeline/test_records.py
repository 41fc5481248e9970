import io
import json
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from pipeline.formats.readers import read_records
from pipeline.formats.records import DeadLetter, InputFormat, Record, Skipped, normalize_text, parse_line

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


# Structure-level attacks on the JSON parse: each costs one dead letter (or parses), never the job.

JSONL_ID = InputFormat("jsonl", id_field="id")


def test_json_nested_100000_levels_deep_is_one_invalid_json_dead_letter():
    for line in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                 b'{"id": 1, "text": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                 b"[" * 100_000):  # unclosed too
        dead = parse_line(line, "d.jsonl", 3, JSONL_ID)
        assert isinstance(dead, DeadLetter) and dead.reason == "invalid_json", line[:20]
        assert "nested too deeply" in dead.detail and len(dead.raw) < 2100


def test_json_depth_limit_is_fixed_not_the_interpreters_recursion_limit():
    from pipeline.formats.records import MAX_JSON_DEPTH

    def nested(depth: int) -> bytes:
        return b'{"id": 1, "text": "x", "n": ' + b"[" * depth + b"]" * depth + b"}"

    assert isinstance(parse_line(nested(MAX_JSON_DEPTH - 1), "d", 1, JSONL_ID), Record)  # + the outer object
    assert parse_line(nested(MAX_JSON_DEPTH), "d", 1, JSONL_ID).reason == "invalid_json"


def test_deep_json_in_a_small_thread_stack_with_a_huge_recursion_limit_is_a_dead_letter():
    # Were json.loads to see it, this would overflow the C stack (a crash, not a RecursionError):
    # the depth check must come first. In a subprocess, so a crash fails this test only.
    script = """if True:
        import sys, threading
        from pipeline.formats.records import InputFormat, parse_line
        sys.setrecursionlimit(1_000_000)
        threading.stack_size(256 * 1024)
        out = []
        line = b"[" * 200_000 + b"]" * 200_000
        worker = threading.Thread(target=lambda: out.append(parse_line(line, "s", 1, InputFormat("jsonl"))))
        worker.start()
        worker.join()
        print(out[0].reason)
    """
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert (result.returncode, result.stdout.strip()) == (0, "invalid_json"), result.stderr[-500:]


def test_brackets_inside_json_strings_do_not_count_as_nesting():
    for text in ("[" * 100_000, '\\"' + "{" * 100_000, "\\\\" + "[" * 5000 + "]"):
        line = ('{"id": "b", "text": "' + text + '"}').encode()
        record = parse_line(line, "d", 1, InputFormat("jsonl", id_field="id"))
        assert isinstance(record, Record) and record.text == json.loads(line)["text"]


def test_unterminated_strings_full_of_escaped_quotes_scan_in_linear_time():
    line = b"[" * 1000 + b'"' + b'\\"' * 500_000 + b"[" * 1000
    started = time.perf_counter()
    assert parse_line(line, "d", 1, JSONL_ID).reason == "invalid_json"
    assert time.perf_counter() - started < 2


def test_integer_with_too_many_digits_is_a_dead_letter():
    for line in (b'{"id": ' + b"7" * 5000 + b', "text": "x"}', b'{"id": 1, "text": "x", "n": -' + b"9" * 5000 + b"}"):
        dead = parse_line(line, "d", 1, JSONL_ID)
        assert isinstance(dead, DeadLetter) and dead.reason == "invalid_json"
        assert "digits" in dead.detail and "set_int_max_str_digits" not in dead.detail


def test_a_long_integer_id_within_pythons_limit_keeps_its_digits():
    digits = "12345678" * 500
    assert parse_line(f'{{"id": {digits}, "text": "x"}}'.encode(), "d", 1, JSONL_ID).id == digits


def test_non_finite_number_ids_are_missing_ids():
    for number in ("1e400", "-1e400", "NaN", "Infinity", "-Infinity"):
        dead = parse_line(f'{{"id": {number}, "text": "x"}}'.encode(), "d", 1, JSONL_ID)
        assert isinstance(dead, DeadLetter) and dead.reason == "missing_id", number
    assert parse_line(b'{"id": 1.5, "text": "x"}', "d", 1, JSONL_ID).id == "1.5"
    assert parse_line(b'{"id": 1e3, "text": "x"}', "d", 1, JSONL_ID).id == "1000.0"
    assert parse_line(b'{"id": 1, "text": 1e400}', "d", 1, JSONL_ID).reason == "text_not_string"


def test_duplicate_keys_keep_the_last_value():
    line = b'{"id": "first", "text": "one", "id": "last", "text": "two"}'
    assert parse_line(line, "d", 1, JSONL_ID) == Record("last", "two", "d", 1)
    assert parse_line(b'{"id": "a", "text": "x", "id": null}', "d", 1, JSONL_ID).reason == "missing_id"


def test_an_object_with_100000_keys_parses_quickly():
    fields = {f"k{i}": i for i in range(100_000)} | {"id": "many", "text": "keys"}
    line = json.dumps(fields).encode()
    started = time.perf_counter()
    assert parse_line(line, "d", 1, JSONL_ID) == Record("many", "keys", "d", 1)
    assert time.perf_counter() - started < 5


def test_a_50_mb_line_of_valid_json_parses_when_max_chars_allows_it():
    text = "今天 weather [x] {y} " * 2_800_000
    line = json.dumps({"id": "big", "text": text, "list": [[i] for i in range(1000)]}, ensure_ascii=False).encode()
    assert len(line) > 50_000_000
    fmt = InputFormat("jsonl", id_field="id", max_chars=len(text))
    started = time.perf_counter()
    (record,) = read_records(io.BytesIO(line + b"\n"), "big.jsonl", fmt)
    assert isinstance(record, Record) and record.id == "big" and record.text == text
    assert time.perf_counter() - started < 10
    (dead,) = read_records(io.BytesIO(line + b"\n"), "big.jsonl", InputFormat("jsonl", id_field="id"))
    assert dead.reason == "too_long"


def test_exactly_the_control_characters_but_tab_lf_and_cr_are_dropped():
    kept, removed = normalize_text("".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF))
    dropped = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"} - set("\t\n\r")
    assert removed == len(dropped) == 62 and not dropped & set(kept) and {"\t", "\n", "\r"} <= set(kept)


def test_a_record_carries_its_line_as_read_only_when_a_later_dead_letter_may_need_it():
    line = '{"id": "7", "text": " Cafe\\u0301 ", "n": 1}'
    assert parse_line(line.encode(), "d", 1, JSONL_ID).raw == line  # a duplicate_id may need it
    assert parse_line(line.encode(), "d", 1, InputFormat("jsonl", keep_fields=("n",))).raw == line
    assert parse_line(line.encode(), "d", 1, InputFormat("jsonl")).raw is None
    assert parse_line(b"plain text", "d", 1, TEXT).raw is None
    long = json.dumps({"id": "8", "text": "x" * 5000})
    assert parse_line(long.encode(), "d", 1, JSONL_ID).raw == long[:2001]  # enough for the 2,000 shown
