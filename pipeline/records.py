"""Turning raw input lines into records, skips or dead letters. Pure functions, no Beam."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass

RAW_PREVIEW_CHARS = 2000
DEFAULT_MAX_CHARS = 1_000_000
_KEPT_CONTROLS = frozenset("\t\n\r")  # whitespace to the tokenizer; every other control character goes


@dataclass(frozen=True)
class Record:
    """A document to embed."""

    id: str
    text: str
    source: str
    line: int
    removed_chars: int = 0  # control characters taken out of the text


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
class InputFormat:
    """How to read the records of a shard."""

    format: str  # one of pipeline.shards.SHARD_FORMATS
    encoding: str = "utf-8"
    text_field: str = "text"
    id_field: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS


def normalize_text(text: str) -> tuple[str, int]:
    """NFC-normalise and drop control characters (NUL included) other than tab, CR and LF.

    Returns (text, number of characters removed). Done before tokenizing so the same
    document always gives the same tokens, whatever its Unicode composition.
    """
    removed = 0
    if any(unicodedata.category(ch) == "Cc" and ch not in _KEPT_CONTROLS for ch in text):
        kept = [ch for ch in text if unicodedata.category(ch) != "Cc" or ch in _KEPT_CONTROLS]
        removed = len(text) - len(kept)
        text = "".join(kept)
    return unicodedata.normalize("NFC", text), removed


def raw_preview(raw: bytes) -> str:
    """Printable, bounded form of raw bytes: undecodable bytes become \\xNN escapes."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "..."


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


def parse_line(raw: bytes, source: str, line: int, fmt: InputFormat) -> Record | DeadLetter | Skipped:
    """Decode and parse one line (without its line ending)."""
    if line == 1 and fmt.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        raw = raw.removeprefix(b"\xef\xbb\xbf")
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


def _document(
    record_id: str, text: str, source: str, line: int, fmt: InputFormat, raw: str
) -> Record | DeadLetter | Skipped:
    """The shared last step: length limit, normalisation, blank check."""
    if len(text) > fmt.max_chars:
        detail = f"{len(text)} characters, more than --max_chars {fmt.max_chars}"
        return DeadLetter(source, line, "too_long", detail, id=record_id, raw=raw_preview(_encoded(raw)))
    bad = _surrogate_at(text)
    if bad is not None:  # e.g. JSON "\\ud800", or bytes a CSV row could not decode
        detail = f"not valid Unicode at character {bad} (an undecodable byte or a lone surrogate)"
        return DeadLetter(source, line, "undecodable", detail, id=record_id, raw=raw_preview(_encoded(raw)))
    text, removed = normalize_text(text)
    if not text.strip():
        return Skipped(source, line, removed)
    return Record(record_id, text, source, line, removed)


def _parse_json_line(decoded: str, source: str, line: int, fmt: InputFormat) -> Record | DeadLetter | Skipped:
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return DeadLetter(source, line, "invalid_json", str(exc), raw=raw_preview(decoded.encode("utf-8")))
    if not isinstance(obj, dict):
        detail = f"expected a JSON object, got {type(obj).__name__}"
        return DeadLetter(source, line, "invalid_json", detail, raw=raw_preview(decoded.encode("utf-8")))
    return from_fields(obj, source, line, fmt, decoded)


def from_fields(
    fields: Mapping[str, object], source: str, line: int, fmt: InputFormat, raw: str
) -> Record | DeadLetter | Skipped:
    """A record from a structured row (JSON object, CSV row, Parquet row): id and text by field name.

    raw is the row as the user wrote it, kept in dead letters so it can be fixed and replayed.
    """

    def dead(reason: str, detail: str, record_id: str | None = None) -> DeadLetter:
        return DeadLetter(source, line, reason, detail, id=record_id, raw=raw_preview(_encoded(raw)))

    record_id = f"{source}:{line}"
    if fmt.id_field is not None:
        value = fields.get(fmt.id_field)
        if value is None or value == "" or isinstance(value, (dict, list, bool)):
            return dead("missing_id", f"field {fmt.id_field!r} is missing, empty, null or not a scalar")
        record_id = str(value)
        if _surrogate_at(record_id) is not None:
            return dead("undecodable", f"field {fmt.id_field!r} is not valid Unicode")
    text = fields.get(fmt.text_field)
    if text is None:
        return dead("missing_text", f"field {fmt.text_field!r} is missing or null", record_id)
    if not isinstance(text, str):
        return dead("text_not_string", f"field {fmt.text_field!r} is a {type(text).__name__}", record_id)
    return _document(record_id, text, source, line, fmt, raw)
