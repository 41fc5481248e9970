"""Finding and opening input shards on any filesystem Beam or fsspec knows (`pipeline.formats.storage`).

Compression (.gz, .bz2, .zst) and, under --format auto, the format are chosen by extension.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from encoders.declare import escaped, is_utf8
from pipeline.errors import JobConfigError
from pipeline.formats import storage

SHARD_FORMATS = ("text", "jsonl", "csv", "tsv", "parquet")
FORMATS = ("auto", *SHARD_FORMATS)
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}


@dataclass(frozen=True)
class Shard:
    """One input file: where it is, the name used in document ids, and how to parse it."""

    path: str
    name: str
    format: str
    size: int = 0  # bytes on storage (compressed size for compressed shards)


def match_pattern(pattern: str) -> dict[str, int]:
    """Files (not directories) matching an --input glob, with their sizes in bytes; JobConfigError saying why not."""
    if "://" not in pattern and os.path.isdir(pattern):
        raise JobConfigError(f"--input {pattern} is a directory; give a glob such as {pattern}/*")
    _check_filesystem_installed(pattern)
    try:
        return storage.match(pattern)
    except storage.NoFilesystem as exc:
        raise JobConfigError(f"no filesystem for --input {pattern}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError for bad patterns and access
        raise JobConfigError(f"cannot list --input {pattern}: {exc}") from exc


def _check_filesystem_installed(path: str) -> None:
    """Beam registers s3:// even without its client library; say what to install instead of a deep error."""
    if path.startswith("s3://"):
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise JobConfigError(f"{path}: reading s3:// needs the AWS extra: pip install 'apache-beam[aws]'") from None


def match_shards(patterns: Iterable[str], fmt: str = "auto") -> list[Shard]:
    """Every file matched by the patterns, once each, with its id name and format."""
    sizes: dict[str, int] = {}
    for pattern in patterns:
        matched = match_pattern(pattern)
        if not matched:
            raise JobConfigError(f"no file matches --input {pattern}")
        sizes.update(matched)
    paths = sorted(sizes)
    names = shard_names(paths)
    _check_names_are_text([p for p in paths if not is_utf8(names[p])])
    shards = [Shard(p, names[p], shard_format(p, fmt), sizes[p]) for p in paths]
    for shard in shards:
        if shard.format == "parquet" and shard.path.endswith(_COMPRESSION_SUFFIXES):
            raise JobConfigError(f"{escaped(shard.path)}: Parquet compresses inside the file; a compressed Parquet "
                                 "file cannot be read")
    return shards


def _check_names_are_text(undecodable: list[str]) -> None:
    """Refuse shards whose names are not UTF-8: ids, dead letters and the manifest carry shard names as text.

    Refused rather than escaped: an escaped name (bad\\xffname.txt) could equal another file's real name,
    giving two documents one id. Object stores (gs://, s3://) only hold UTF-8 names; a local file is renamed.
    """
    if undecodable:
        more = len(undecodable) - 1
        also = f" (and {more} more such file{'s' if more > 1 else ''})" if more else ""
        raise JobConfigError(f"input file {escaped(undecodable[0])}: its name is not valid UTF-8{also}; document "
                             f"ids are made of shard names, which must be text: rename {'them' if more else 'it'} "
                             "(\\xNN shows a byte that is not UTF-8)")


def shard_names(paths: list[str]) -> dict[str, str]:
    """Each path relative to the deepest directory common to all of them."""
    split = [p.split("/") for p in paths]
    common = posixpath.commonprefix([parts[:-1] for parts in split])
    return {p: "/".join(parts[len(common):]) for p, parts in zip(paths, split, strict=True)}


def shard_format(path: str, fmt: str) -> str:
    """One of SHARD_FORMATS: fmt itself, or from the extension when fmt is "auto" (text if unknown)."""
    if fmt != "auto":
        return fmt
    stem = path
    for suffix in _COMPRESSION_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return _SUFFIX_FORMATS.get(posixpath.splitext(stem)[1].lower(), "text")


def open_shard(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, raw stream) of a shard; read the first sequentially.

    The raw stream's position tells how much of the stored file has been consumed.
    Decompression uses Python's own codecs, which raise on a truncated or corrupt
    stream (Beam's CompressedFile silently stops at a missing gzip trailer).
    """
    raw = storage.open_file(path)
    return _decompressed(raw, path), raw


def _decompressed(raw: BinaryIO, path: str) -> BinaryIO:
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if path.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    if path.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw
