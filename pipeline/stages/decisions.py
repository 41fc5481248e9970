"""Incremental runs: which records an earlier output already holds. Pure logic over Arrow tables, no Beam.

A record is reused when an earlier output file made under the same model fingerprint
(`encoders.fingerprint`) holds its id with the same text hash: same text, same model, same
settings, so the same vector.

The keys of every record (id, shard, line, text hash) and of every earlier row (id, file, text hash)
travel as arrays (`NewKeys`, `OldKeys`) cut into buckets by id (`id_bucket`), not as one element per
record: a bucket is resolved with a sort and a join (`resolve_keys`), so a night of millions of records
costs a few thousand elements on any runner, and each bucket sees every key of its ids. Arrays, not
Arrow tables: a pickled table carries its schema, which costs more than a bucket's keys.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def text_hash(text: str) -> str:
    """Hex digest (128 bits of SHA-256) of a text as embedded, i.e. after normalisation."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# Hex digit value of each byte; 16 marks a byte that is not one.
_NIBBLES = np.full(256, 16, np.uint8)
for _value, _digit in enumerate(b"0123456789abcdef"):
    _NIBBLES[_digit] = _NIBBLES[_digit - 32 if _digit >= ord("a") else _digit] = _value
_KEY_DIGITS = 16
_SHIFTS = np.arange(4 * (_KEY_DIGITS - 1), -1, -4, dtype=np.uint64)


def hash_keys(hashes: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The first 64 bits of each hex text_hash as a uint64, and which hashes had them (not null, hex digits).

    The keys carry these, not the hex strings: 8 bytes a record instead of 36, in every grouping of a
    night. Two texts of one id that differ but share 64 bits would be taken for the same: a chance of
    2**-64 per reused record.
    """
    hashes = hashes.cast(pa.large_string())
    count = len(hashes)
    if not count:
        return np.empty(0, np.uint64), np.empty(0, bool)
    _, offsets_buffer, data_buffer = hashes.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[hashes.offset:hashes.offset + count + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    valid = (np.diff(offsets) >= _KEY_DIGITS) & ~hashes.is_null().to_numpy(zero_copy_only=False)
    starts = np.where(valid, offsets[:-1], 0)
    positions = starts[:, None] + np.arange(_KEY_DIGITS)
    nibbles = _NIBBLES[data[np.minimum(positions, max(len(data) - 1, 0))]] if len(data) else np.full(
        (count, _KEY_DIGITS), 16, np.uint8)
    valid &= (nibbles < 16).all(axis=1)
    keys = np.bitwise_or.reduce(nibbles.astype(np.uint64) << _SHIFTS, axis=1)
    return np.where(valid, keys, np.uint64(0)), valid




class Reused(NamedTuple):
    """An earlier output file holds this record's vector: same id, same text hash, same fingerprint."""

    file: int  # the earlier file's position in sorted path order
    removed: int  # control characters normalisation took out of its text (counted, though it is not parsed again)


class Duplicate(NamedTuple):
    """A later occurrence of an id: its first occurrence is the one embedded or reused."""

    first_source: str
    first_line: int


Decision = Reused | Duplicate
# How many buckets the keys are cut into: the reuse decision's parallelism on a distributed runner, and (times
# shards plus earlier files) how many elements carry the keys. A bucket is resolved whole on one worker, so the
# count grows with the input (`key_buckets`): one bucket per BUCKET_INPUT_BYTES of input, a power of two between
# the bounds. At a mean line of 100 B that is ~2.7M records, ~80 MB of keys, a bucket.
MIN_KEY_BUCKETS = 32
MAX_KEY_BUCKETS = 4096
BUCKET_INPUT_BYTES = 256 * 2**20


def key_buckets(input_bytes: int) -> int:
    """The bucket count for a run whose input shards hold input_bytes (the same for its earlier outputs' keys)."""
    wanted = max(1, -(-input_bytes // BUCKET_INPUT_BYTES))
    return min(MAX_KEY_BUCKETS, max(MIN_KEY_BUCKETS, 1 << (wanted - 1).bit_length()))


@dataclass(frozen=True)
class NewKeys:
    """The keys of some records of one shard of this run (those it would embed), as arrays of equal length."""

    shard: int  # the shard's position in the sorted input list
    source: str  # its name
    ids: pa.Array  # string
    lines: np.ndarray  # int32 (int64 past 2**31), record numbers in the shard
    hashes: np.ndarray  # uint64, `hash_keys` of each text's `text_hash`
    removed: np.ndarray | None  # control characters normalisation took out of each text; None: none did

    def take(self, positions: np.ndarray) -> NewKeys:
        removed = None if self.removed is None else self.removed[positions]
        return NewKeys(self.shard, self.source, self.ids.take(positions), self.lines[positions],
                       self.hashes[positions], removed)

    @classmethod
    def of(cls, shard: int, source: str, ids: list[str], lines: list[int], hashes: list[str],
           removed: list[int]) -> NewKeys:
        """The keys of a shard's records, as small as they go: narrow lines, removed only when nonzero."""
        wide = bool(lines) and max(lines) >= 2**31
        keys, _ = hash_keys(pa.array(hashes, pa.string()))
        return cls(shard, source, pa.array(ids, pa.string()), np.array(lines, np.int64 if wide else np.int32),
                   keys, np.array(removed, np.int64) if any(removed) else None)

    @property
    def nbytes(self) -> int:
        return (self.ids.nbytes + self.lines.nbytes + self.hashes.nbytes
                + (0 if self.removed is None else self.removed.nbytes))


@dataclass(frozen=True)
class OldKeys:
    """The keys of some rows of one earlier output file (made under this run's fingerprint)."""

    file: int  # the file's position in sorted path order
    path: str
    ids: pa.Array  # string
    hashes: np.ndarray  # uint64, `hash_keys` of its text_hash column

    def take(self, positions: np.ndarray) -> OldKeys:
        return OldKeys(self.file, self.path, self.ids.take(positions), self.hashes[positions])

    @classmethod
    def of(cls, file: int, path: str, ids: pa.Array, hashes: pa.Array) -> OldKeys:
        """The keys of an earlier file's rows; a row whose text_hash is not one (null, not hex) cannot be reused."""
        keys, valid = hash_keys(hashes)
        ids = ids.cast(pa.string())
        if not valid.all():
            ids, keys = ids.filter(pa.array(valid)), keys[valid]
        return cls(file, path, ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids, keys)


def id_bucket(record_id: str, buckets: int) -> int:
    """The bucket of an id: stable across processes and machines (CRC-32, not Python's salted hash)."""
    return zlib.crc32(record_id.encode("utf-8", "surrogatepass")) % buckets


def by_bucket(keys: NewKeys | OldKeys, buckets: int) -> Iterator[tuple[int, NewKeys | OldKeys]]:
    """(bucket, the keys whose id falls in it), for every bucket of the buckets that has any.

    Copies, not slices: a pickled slice may carry its whole parent's buffers.
    """
    ids = keys.ids.to_pylist()
    of = np.fromiter((id_bucket(i, buckets) for i in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(of, kind="stable")
    ends = np.cumsum(np.bincount(of, minlength=buckets))
    start = 0
    for bucket, end in enumerate(ends.tolist()):
        if end > start:
            yield bucket, keys.take(order[start:end])
        start = end


@dataclass(frozen=True)
class ShardDecisions:
    """What the keys decided for some records of one shard; lines are record numbers (int32, int64 past 2**31).

    Reused: reused_lines, reused_files the earlier file whose row each reuses, and reused_removed the
    control characters its text lost (counted in the manifest, though the reader need not parse it again). Duplicates:
    duplicate_lines, and the occurrence of the same id that is embedded or reused (first_shards,
    first_lines; sources names those shards).
    """

    reused_lines: np.ndarray
    reused_files: np.ndarray
    reused_removed: np.ndarray
    duplicate_lines: np.ndarray
    first_shards: np.ndarray
    first_lines: np.ndarray
    sources: dict[int, str]


@dataclass(frozen=True)
class Resolved:
    """A bucket's decisions, by shard index, and the earlier rows to copy: ids by (file, path)."""

    decisions: dict[int, ShardDecisions]
    copies: dict[tuple[int, str], pa.Array]


def resolve_keys(new: Sequence[NewKeys], old: Sequence[OldKeys]) -> Resolved:
    """Decide the records whose keys are in new, given the earlier rows in old (all of their ids' keys).

    Per id, the first occurrence (lowest shard, then line) is the one embedded or reused; every later
    one is a duplicate of it. The first is reused when an earlier row holds its id with the same text
    hash; of several, the last file in sorted path order (so the newest dt=...) wins, and that row is
    copied with --snapshot. Ids of old that this run does not hold decide nothing.
    """
    sources = {k.shard: k.source for k in new}
    paths = {k.file: k.path for k in old}
    table = pa.table({
        "id": _concat([k.ids for k in new]),
        "shard": np.concatenate([np.full(len(k.lines), k.shard, np.int64) for k in new] or [np.empty(0, np.int64)]),
        "line": np.concatenate([k.lines.astype(np.int64) for k in new] or [np.empty(0, np.int64)]),
        "text_hash": np.concatenate([k.hashes for k in new] or [np.empty(0, np.uint64)]),
        "removed": np.concatenate([np.zeros(len(k.lines), np.int64) if k.removed is None else k.removed
                                   for k in new] or [np.empty(0, np.int64)]),
    }).sort_by([("id", "ascending"), ("shard", "ascending"), ("line", "ascending")])
    rows = table.num_rows
    first = np.ones(rows, dtype=bool)
    if rows > 1:
        ids = table.column("id").combine_chunks()
        first[1:] = pc.not_equal(ids.slice(1), ids.slice(0, rows - 1)).to_numpy(zero_copy_only=False)
    shard, line = table.column("shard").to_numpy(), table.column("line").to_numpy()  # sorted as table is
    starts = np.flatnonzero(first)
    later = np.flatnonzero(~first)
    first_of_later = starts[np.cumsum(first)[later] - 1]
    reused = _reused(table.take(starts), old)
    reused_shard, reused_line, reused_file, reused_removed = (
        reused.column(n).to_numpy() for n in ("shard", "line", "file", "removed"))
    by_shard_reused = dict(_groups(reused_shard, reused_line, reused_file, reused_removed))
    by_shard_later = dict(_groups(shard[later], line[later], first_of_later))
    decisions = {}
    empty = np.empty(0, np.int64)
    for index in sorted(by_shard_reused.keys() | by_shard_later.keys()):
        lines, files, removed = by_shard_reused.get(index, (empty, empty, empty))
        duplicate_lines, firsts = by_shard_later.get(index, (empty, empty))
        first_shards = shard[firsts]
        decisions[index] = ShardDecisions(
            _narrow(lines), _narrow(files), _narrow(removed), _narrow(duplicate_lines), _narrow(first_shards),
            _narrow(line[firsts]), {s: sources[s] for s in set(first_shards.tolist())})
    copies = {}
    for file in np.unique(reused_file).tolist():
        copies[(file, paths[file])] = pc.filter(reused.column("id"), pa.array(reused_file == file)).combine_chunks()
    return Resolved(decisions, copies)


def _groups(keys: np.ndarray, *columns: np.ndarray) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
    """(key, the columns' values at its rows) for every distinct key; one sort, not a pass per key."""
    order = np.argsort(keys, kind="stable")
    values, starts = np.unique(keys[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)] if len(starts) else []
    for key, start, end in zip(values.tolist(), starts.tolist(), ends, strict=True):
        yield key, tuple(column[order[start:end]] for column in columns)


def _narrow(values: np.ndarray) -> np.ndarray:
    """int32 when the values fit: decisions cross a grouping, where every byte a record is held in memory on
    local runners."""
    fits = not len(values) or (values.min() >= -(2**31) and values.max() < 2**31)
    return values.astype(np.int32) if fits else values


def _concat(arrays: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def _reused(firsts: pa.Table, old: Sequence[OldKeys]) -> pa.Table:
    """id, shard, line, removed, file of the first occurrences an earlier row holds with the same text hash."""
    if not firsts.num_rows or not old:
        return pa.table({"id": pa.array([], pa.string()), **{n: pa.array([], pa.int64())
                                                            for n in ("shard", "line", "removed", "file")}})
    earlier = pa.table({
        "id": _concat([k.ids for k in old]),
        "text_hash": np.concatenate([k.hashes for k in old]),
        "file": np.concatenate([np.full(len(k.ids), k.file, np.int64) for k in old]),
    })
    newest = earlier.group_by(["id", "text_hash"]).aggregate([("file", "max")]).rename_columns(
        {"file_max": "file"})
    matched = firsts.join(newest, keys=["id", "text_hash"], join_type="inner")
    return matched.select(["id", "shard", "line", "removed", "file"])


def decisions_by_line(decisions: Iterable[ShardDecisions]) -> dict[int, Decision]:
    """One shard's decisions as the reading stage looks them up, by record number."""
    out: dict[int, Decision] = {}
    for found in decisions:
        reused = zip(found.reused_files.tolist(), found.reused_removed.tolist(), strict=True)
        out.update(zip(found.reused_lines.tolist(), [Reused(f, r) for f, r in reused], strict=True))
        firsts = [Duplicate(found.sources[s], n)
                  for s, n in zip(found.first_shards.tolist(), found.first_lines.tolist(), strict=True)]
        out.update(zip(found.duplicate_lines.tolist(), firsts, strict=True))
    return out
