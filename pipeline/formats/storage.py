"""The one place that chooses a filesystem for a path: Beam's FileSystems when Beam knows its scheme, else fsspec.

Beam's FileSystems serve local paths, gs://, s3:// (with apache-beam[aws]) and hdfs://, and the job's
own writes need them; anything else (memory://, and whatever fsspec plugins are installed) is read
through fsspec. Callers say what they want done (match, open, exists, list); only this module asks
which library does it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import BinaryIO


class NoFilesystem(ValueError):
    """Neither Beam nor fsspec (with the plugins installed) serves this path's scheme."""


def beam_knows(path: str) -> bool:
    """Whether Beam has a filesystem for this path's scheme (the job's writes need one)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        return False
    return True


def is_local(path: str) -> bool:
    """Whether path is on this machine's filesystem (a plain path or file://)."""
    return "://" not in path or path.startswith("file://")


def join(base: str, name: str) -> str:
    """A file under base; base may be a local path or a URL."""
    return f"{base.rstrip('/')}/{name}"


def match(pattern: str) -> dict[str, int]:
    """Files (not directories) matching a glob, with their sizes in bytes.

    Raises NoFilesystem for a scheme nobody serves, else what the filesystem raises (OSError mostly).
    """
    if beam_knows(pattern):
        from apache_beam.io.filesystems import FileSystems

        sizes = {m.path: m.size_in_bytes for m in FileSystems.match([pattern])[0].metadata_list}
        if "://" not in pattern:  # local globs also match directories
            sizes = {p: n for p, n in sizes.items() if not os.path.isdir(p)}
        return sizes
    fs, inner = _fsspec(pattern)
    return {fs.unstrip_protocol(p): int(fs.size(p) or 0) for p in fs.glob(inner) if fs.isfile(p)}


def open_file(path: str, mode: str = "rb") -> BinaryIO:
    """A file's stored bytes (never decompressed): "rb" (seekable) or "wb"."""
    if beam_knows(path):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        if mode == "wb":
            return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    import fsspec

    return fsspec.open(path, mode).open()


def exists(path: str) -> bool:
    if beam_knows(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    fs, inner = _fsspec(path)
    return fs.exists(inner)


def has_files_under(directory: str) -> bool:
    if beam_knows(directory):
        from apache_beam.io.filesystems import FileSystems

        return bool(FileSystems.match([join(directory, "*")])[0].metadata_list)
    fs, inner = _fsspec(directory)
    return bool(fs.glob(join(inner, "*")))


def sizes_by_listing(files: Iterable[str]) -> dict[str, int]:
    """{file: size in bytes} of those of files that one listing of each directory they sit in shows; none of a
    directory that cannot be listed. On an object store a listing returns a thousand names and their sizes a
    request; asking for each file costs one each.
    """
    by_directory: dict[str, list[str]] = {}
    for file in files:
        by_directory.setdefault(file.rsplit("/", 1)[0], []).append(file)
    if all(beam_knows(d) for d in by_directory):
        from apache_beam.io.filesystems import FileSystems

        try:
            matched = FileSystems.match([join(d, "*") for d in by_directory])
        except OSError:  # Beam's BeamIOError: a directory it cannot list
            return {}
        listed = {m.path: m.size_in_bytes for result in matched for m in result.metadata_list}
        return {file: listed[file] for inside in by_directory.values() for file in inside if file in listed}
    shown = {}
    for directory, inside in by_directory.items():
        fs, inner = _fsspec(directory)
        try:
            listed = {entry["name"]: int(entry.get("size") or 0) for entry in fs.ls(inner, detail=True)}
        except OSError:
            continue
        shown.update({file: listed[_fsspec(file)[1]] for file in inside if _fsspec(file)[1] in listed})
    return shown


def size(path: str) -> int:
    """One file's size in bytes, by opening it (no glob, so any name works): for the few a listing did not show."""
    with open_file(path) as f:
        return f.seek(0, os.SEEK_END)


def _fsspec(path: str):
    """(fsspec filesystem, path within it); NoFilesystem when fsspec has none for the scheme."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except (ValueError, ImportError) as exc:
        raise NoFilesystem(str(exc)) from exc
