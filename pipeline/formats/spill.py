"""Grouped data that crosses a shuffle as a few bytes: it waits in the output's staging folder, the shuffle says where.

Beam's in-process runner keeps every grouped collection, encoded, until the pipeline ends, and the portable
runner's job service hands a stage its whole input at once; per-record data that is grouped (the keys pass's
ids and hashes, its decisions, the ids to copy) made their memory grow with the corpus. Each producer writes
its elements, packed, into one staging file and emits a `Spilled` (path, offset, size) per element; the
consumer reads its range after the grouping. The staging folder is cleaned when the run commits, and by the
next run as any staged file.

Only where a range read is cheap: an output on a local disk (`spill_directory`). On an object store each
read is a request of tens of milliseconds, and a bucket's consumer would make one per shard and earlier file;
there the values travel in the shuffle (`Held`), which Dataflow keeps outside the workers' memory. Parts,
which carry text, cross the distributed runners' reshuffle the same way (`stash_one`): spilled one file a
part on a local disk, else packed (`Packed`, zstd: text shrinks about threefold).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from pipeline.formats import storage
from pipeline.formats.output import STAGING_DIR

K = TypeVar("K")
_SIZE = struct.Struct("<Q")
SPILL_PREFIX = "spill-"


def pack(value: Any) -> bytes:
    """value pickled and zstd-compressed: text compresses about threefold, and a runner holds it encoded."""
    raw = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _SIZE.pack(len(raw)) + pa.compress(raw, codec="zstd", asbytes=True)


def unpack(packed: bytes) -> Any:
    """The value `pack` packed."""
    (size,) = _SIZE.unpack_from(packed)
    return pickle.loads(pa.decompress(memoryview(packed)[_SIZE.size:], size, codec="zstd", asbytes=True))


@dataclass(frozen=True)
class Spilled:
    """Where one packed element waits: a byte range of a staging file."""

    path: str
    offset: int
    size: int

    def load(self) -> Any:
        with storage.open_file(self.path) as f:
            f.seek(self.offset)
            return unpack(f.read(self.size))


@dataclass(frozen=True)
class Held:
    """A value that travels in the shuffle itself; loads as a `Spilled` one does."""

    value: Any

    def load(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Packed:
    """A value packed (`pack`) to travel in the shuffle itself; loads as a `Spilled` one does."""

    data: bytes

    def load(self) -> Any:
        return unpack(self.data)


def stash_one(directory: str | None, name: str, value: Any) -> Spilled | Packed:
    """Where one value waits: spilled alone under directory, or packed into the element when it is None."""
    if directory is None:
        return Packed(pack(value))
    ((_, where),) = spill(spill_path(directory, name), [(None, value)])
    return where


def spill_directory(output: str) -> str | None:
    """Where grouped values of a run writing to output wait: output on a local disk, else None (held)."""
    return output if storage.is_local(output) else None


def stash(directory: str | None, name: str, items: Iterable[tuple[K, Any]]) -> Iterator[tuple[K, Spilled | Held]]:
    """(key, where its value waits) for every (key, value): spilled under directory, or held when it is None."""
    if directory is None:
        return ((key, Held(value)) for key, value in items)
    return spill(spill_path(directory, name), items)


def spill_path(output: str, name: str) -> str:
    """The staging file a producer named name spills to (flat in the staging folder, so cleaned with it)."""
    return storage.join(output, f"{STAGING_DIR}/{SPILL_PREFIX}{name}.bin")


def spill(path: str, items: Iterable[tuple[K, Any]]) -> Iterator[tuple[K, Spilled]]:
    """Write every (key, value)'s value packed into the file at path, written whole; (key, where it waits).

    A retried producer writes the same bytes again: its elements are deterministic.
    """
    blobs, offset = [], 0
    refs: list[tuple[K, Spilled]] = []
    for key, value in items:
        blob = pack(value)
        refs.append((key, Spilled(path, offset, len(blob))))
        blobs.append(blob)
        offset += len(blob)
    if blobs:
        with storage.open_file(path, "wb") as f:  # objects are written whole
            f.write(b"".join(blobs))
    yield from refs
