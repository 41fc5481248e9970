"""Turning raw input lines into records, skips or dead letters. Pure functions, no Beam."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.formats.arrow_rows import ArrowRows

RAW_PREVIEW_CHARS = 2000
# A record as read: its text, or a function rendering it (a Parquet row as JSON, made only when needed).
Raw = str | Callable[[], str]
DEFAULT_MAX_CHARS = 1_000_000
# The control characters (Unicode category Cc, a range fixed by Unicode's stability policy) but tab, LF
# and CR, which are whitespace to the tokenizer. A regex rather than a per-character loop: a 50 MB text
# costs milliseconds, not seconds.
_DROPPED_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Deepest JSON nesting (arrays and objects) read; deeper lines are dead letters. Checked before json.loads,
# whose C scanner recurses once per level: it must neither hit the recursion limit (1000 by default, shared
# with the caller's stack) nor, were that limit raised, overflow a worker thread's C stack. A fixed number,
# so a line's outcome does not depend on the interpreter, thread or call stack it is read on.
MAX_JSON_DEPTH = 512
# Everything of a JSON text but its structural brackets: strings (an unterminated one runs to the end, as
# json reads it) and runs of other characters. Possessive, so a line of escaped quotes scans in linear time.
_NOT_BRACKETS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[^\[\]{}"]++', re.DOTALL)
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True)
class Record:
    """A document to embed."""

    id: str
    text: str
    source: str
    line: int
    removed_chars: int = 0  # control characters taken out of the text
    # Values of --keep_fields, in their order (None where the record lacks one); a Parquet row's as Arrow data.
    kept: tuple | ArrowRows = ()
    # The record as read (its first RAW_PREVIEW_CHARS + 1 characters), for a dead letter decided after
    # reading (duplicate_id, kept_field_type); only with --id_field or --keep_fields, which those need.
    # A Parquet row's is a function that renders it, called only for the few that become dead letters.
    raw: Raw | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be embedded, with why and enough of it to fix and replay."""

    source: str
    line: int
    reason: str
    detail: str
    id: str | None = None
    raw: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)


@dataclass(frozen=True)
class Skipped:
    """A line with nothing to embed (empty or whitespace only after normalisation)."""

    source: str
    line: int
    removed_chars: int = 0


@dataclass(frozen=True)
class Unread:
    """A record the reader passed over without parsing it: the keys pass already read it and found it reused."""

    source: str
    line: int


@dataclass(frozen=True)
class InputFormat:
    """How to read the records of a shard."""

    format: str  # one of pipeline.formats.shards.SHARD_FORMATS
    encoding: str = "utf-8"
    text_field: str = "text"
    id_field: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    keep_fields: tuple[str, ...] = ()


def normalize_text(text: str) -> tuple[str, int]:
    """NFC-normalise and drop control characters (NUL included) other than tab, CR and LF.

    Returns (text, number of characters removed). Done before tokenizing so the same
    document always gives the same tokens, whatever its Unicode composition.
    """
    text, removed = _DROPPED_CONTROLS.subn("", text)
    return unicodedata.normalize("NFC", text), removed


def raw_preview(raw: bytes) -> str:
    """Printable, bounded form of raw bytes: undecodable bytes become \\xNN escapes."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "..."


def text_preview(raw: Raw) -> str:
    """Printable, bounded form of a record as read: what a reader escaped comes back as \\xNN escapes.

    Cut before encoding, so a 50 MB line costs no more than a short one. raw may be a function that
    renders it (a Parquet row as JSON), called now.
    """
    text = raw() if callable(raw) else raw
    return raw_preview(_encoded(text[: RAW_PREVIEW_CHARS + 1]))


def _surrogate_at(text: str) -> int | None:
    """Position of the first lone surrogate (text no UTF-8 encoder accepts), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _encoded(raw: str) -> bytes:
    """raw back to bytes: bytes a reader escaped come back as they were, lone surrogates as escapes."""
    try:
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "backslashreplace")


def without_bom(raw: bytes, line: int, fmt: InputFormat) -> bytes:
    """A UTF-8 shard's first line without its byte order mark: it is not part of the record (nor of its raw)."""
    if line == 1 and fmt.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        return raw.removeprefix(b"\xef\xbb\xbf")
    return raw


def parse_line(raw: bytes, source: str, line: int, fmt: InputFormat) -> Record | DeadLetter | Skipped:
    """Decode and parse one line (without its line ending)."""
    raw = without_bom(raw, line, fmt)
    try:
        decoded = raw.decode(fmt.encoding)
    except UnicodeDecodeError as exc:
        detail = f"not valid {fmt.encoding}: {exc.reason} at byte {exc.start}"
        return DeadLetter(source, line, "undecodable", detail, raw=raw_preview(raw))
    if fmt.format == "jsonl":
        if not decoded.strip():
            return Skipped(source, line)
        return _parse_json_line(decoded, source, line, fmt)
    return _document(f"{source}:{line}", decoded, source, line, fmt, decoded)


def kept_value(value: object) -> object:
    """A JSON value as --keep_fields keeps it: objects and arrays as their JSON text, scalars as they are."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def kept_size(value: object) -> int:
    """About how many characters a kept value holds: kept values count with the text against --max_chars."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(kept_size(v) for v in value) + 1
    if isinstance(value, dict):
        return sum(kept_size(k) + kept_size(v) for k, v in value.items()) + 1
    return 8


def kept_chars(kept: tuple | ArrowRows) -> int:
    """About how many characters a record's kept values hold (`kept_size`; a Parquet row's, its bytes)."""
    return sum(map(kept_size, kept)) if isinstance(kept, tuple) else kept.size()


def _document(
    record_id: str, text: str, source: str, line: int, fmt: InputFormat, raw: Raw, kept: tuple | ArrowRows = ()
) -> Record | DeadLetter | Skipped:
    """The shared last step: length limit, text and kept strings storable, normalisation, blank check."""

    def dead(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(source, line, reason, detail, id=record_id, raw=text_preview(raw))

    if len(text) > fmt.max_chars:
        return dead("too_long", f"{len(text)} characters, more than --max_chars {fmt.max_chars}")
    if kept and len(text) + kept_chars(kept) > fmt.max_chars:
        return dead("too_long", f"text and kept fields hold more than --max_chars {fmt.max_chars} characters")
    bad = _surrogate_at(text)
    if bad is not None:  # e.g. JSON "\\ud800", or bytes a CSV row could not decode
        return dead("undecodable", f"not valid Unicode at character {bad} (an undecodable byte or a lone surrogate)")
    # A Parquet row's kept strings are checked as Arrow data by its reader (`pipeline.formats.arrow_rows`).
    unstorable = _unstorable_kept(fmt.keep_fields, kept) if isinstance(kept, tuple) and kept else None
    if unstorable is not None:
        return dead("undecodable", unstorable)
    text, removed = normalize_text(text)
    if not text.strip():
        return Skipped(source, line, removed)
    carried = None
    if fmt.id_field or fmt.keep_fields:
        carried = raw if callable(raw) else raw[: RAW_PREVIEW_CHARS + 1]
    return Record(record_id, text, source, line, removed, kept, carried)


def _unstorable_kept(names: tuple[str, ...], kept: tuple) -> str | None:
    """Why a kept string cannot be stored, or None: it holds a lone surrogate (JSON's "\\udc80", an undecodable byte).

    Checked as the record is read, so it costs one dead letter rather than failing the job at the Parquet
    writer. Objects and arrays are JSON text by now, so their keys and nested strings are checked too.
    """
    for name, value in zip(names, kept, strict=True):
        bad = _surrogate_at(value) if isinstance(value, str) else None
        if bad is not None:
            return f"field {name!r} is not valid Unicode at character {bad} (an undecodable byte or a lone surrogate)"
    return None


def _json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects, brackets inside strings not counted; linear time.

    Where text is not valid JSON this may differ from what json reads, but only past the first error,
    where json stops.
    """
    brackets = _NOT_BRACKETS.sub("", text)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _parse_json_line(decoded: str, source: str, line: int, fmt: InputFormat) -> Record | DeadLetter | Skipped:
    def invalid(detail: str) -> DeadLetter:
        return DeadLetter(source, line, "invalid_json", detail, raw=text_preview(decoded))

    too_deep = f"nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays and objects"
    # Counting brackets is cheap; the scan runs only on the rare line with enough of them to be too deep.
    if decoded.count("[") + decoded.count("{") > MAX_JSON_DEPTH and _json_depth(decoded) > MAX_JSON_DEPTH:
        return invalid(too_deep)
    try:
        # Duplicate keys: the last value wins (json's rule), the same on every run.
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return invalid(str(exc))
    except RecursionError:  # the call stack was already deep when we came here
        return invalid(too_deep)
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() (4300) digits
        return invalid(f"a number cannot be read: {str(exc).split(';')[0]}")
    if not isinstance(obj, dict):
        return invalid(f"expected a JSON object, got {type(obj).__name__}")
    for name in fmt.keep_fields:
        if isinstance(obj.get(name), (dict, list)):
            obj[name] = kept_value(obj[name])
    return from_fields(obj, source, line, fmt, decoded)


def from_fields(
    fields: Mapping[str, object], source: str, line: int, fmt: InputFormat, raw: Raw, kept: ArrowRows | None = None
) -> Record | DeadLetter | Skipped:
    """A record from a structured row (JSON object, CSV row, Parquet row): id and text by field name.

    raw is the row as the user wrote it (a reader renders a Parquet row as JSON), kept in dead letters so it
    can be fixed and replayed: those made here, and as `Record.raw` those the reading stage makes later. kept:
    a Parquet row's kept values as Arrow data (`pipeline.formats.arrow_rows`); otherwise they are taken from fields.
    """

    def dead(reason: str, detail: str, record_id: str | None = None) -> DeadLetter:
        return DeadLetter(source, line, reason, detail, id=record_id, raw=text_preview(raw))

    record_id = f"{source}:{line}"
    if fmt.id_field is not None:
        value = fields.get(fmt.id_field)
        if value is None or value == "" or isinstance(value, (dict, list, bool)):
            return dead("missing_id", f"field {fmt.id_field!r} is missing, empty, null or not a scalar")
        if isinstance(value, float) and not math.isfinite(value):
            # 1e400 reads as inf, like 2e400: as an id "inf" would merge distinct records (and "nan"
            # is not even equal to itself), so no usable id was given.
            return dead("missing_id", f"field {fmt.id_field!r} is not a finite number ({value})")
        record_id = str(value)
        if _surrogate_at(record_id) is not None:
            return dead("undecodable", f"field {fmt.id_field!r} is not valid Unicode")
    text = fields.get(fmt.text_field)
    if text is None:
        return dead("missing_text", f"field {fmt.text_field!r} is missing or null", record_id)
    if not isinstance(text, str):
        return dead("text_not_string", f"field {fmt.text_field!r} is a {type(text).__name__}", record_id)
    if kept is None:
        kept = tuple(fields.get(name) for name in fmt.keep_fields)
    return _document(record_id, text, source, line, fmt, raw, kept)
