"""Turning raw input lines into records, skips or dead letters. Pure functions, no Beam."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

RAW_PREVIEW_CHARS = 2000


@dataclass(frozen=True)
class Record:
    """A document to embed."""

    id: str
    text: str
    source: str
    line: int


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
    """A line with nothing to embed (empty or whitespace only)."""

    source: str
    line: int


@dataclass(frozen=True)
class LineFormat:
    """How to read one line of a shard."""

    format: str  # "text" or "jsonl"
    encoding: str = "utf-8"
    text_field: str = "text"
    id_field: str | None = None


def raw_preview(raw: bytes) -> str:
    """Printable, bounded form of raw bytes: undecodable bytes become \\xNN escapes."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "..."


def parse_line(raw: bytes, source: str, line: int, fmt: LineFormat) -> Record | DeadLetter | Skipped:
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
    if not decoded.strip():
        return Skipped(source, line)
    return Record(f"{source}:{line}", decoded, source, line)


def _parse_json_line(decoded: str, source: str, line: int, fmt: LineFormat) -> Record | DeadLetter | Skipped:
    def dead(reason: str, detail: str, record_id: str | None = None) -> DeadLetter:
        return DeadLetter(source, line, reason, detail, id=record_id, raw=raw_preview(decoded.encode("utf-8")))

    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return dead("invalid_json", str(exc))
    if not isinstance(obj, dict):
        return dead("invalid_json", f"expected a JSON object, got {type(obj).__name__}")
    record_id = f"{source}:{line}"
    if fmt.id_field is not None:
        value = obj.get(fmt.id_field)
        if value is None or isinstance(value, (dict, list, bool)):
            return dead("missing_id", f"field {fmt.id_field!r} is missing, null or not a scalar")
        record_id = str(value)
    text = obj.get(fmt.text_field)
    if text is None:
        return dead("missing_text", f"field {fmt.text_field!r} is missing or null", record_id)
    if not isinstance(text, str):
        return dead("text_not_string", f"field {fmt.text_field!r} is a {type(text).__name__}", record_id)
    if not text.strip():
        return Skipped(source, line)
    return Record(record_id, text, source, line)
