"""Incremental runs: which records an earlier output already holds. Pure logic over Arrow tables, no Beam.

A record is reused when an earlier output file made under the same model fingerprint
(`encoders.fingerprint`) holds its id with the same text hash: same text, same model, same
settings, so the same vector.

The keys of every record (id, shard, line, text hash) and of every earlier row (id, file, text hash)
travel as Arrow tables cut into buckets by id (`id_bucket`), not as one element per record: a
bucket is resolved with a sort and a join (`resolve_keys`), so a night of millions of records costs a
few thousand elements on any runner, and each bucket sees every key of its ids.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def text_hash(text: str) -> str:
    """Hex digest (128 bits of SHA-256) of a text as embedded, i.e. after normalisation."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


DUPLICATE, REUSED = "duplicate", "reused"
# How many buckets the keys are cut into: the reuse decision's parallelism on a distributed runner, and
# (times shards plus earlier files) how many elements carry the keys.
KEY_BUCKETS = 128
# The keys of this run's records (one shard's records, or a bucket's from every shard).
NEW_KEYS = pa.schema([("id", pa.string()), ("shard", pa.int32()), ("source", pa.string()), ("line", pa.int64()),
                      ("text_hash", pa.string())])
# The keys of an earlier output's rows; file is the earlier file's position in sorted path order.
OLD_KEYS = pa.schema([("id", pa.string()), ("file", pa.int32()), ("path", pa.string()), ("text_hash", pa.string())])


def id_bucket(record_id: str) -> int:
    """The bucket of an id: stable across processes and machines (CRC-32, not Python's salted hash)."""
    return zlib.crc32(record_id.encode("utf-8", "surrogatepass")) % KEY_BUCKETS


def by_bucket(keys: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """(bucket, the rows of keys whose id falls in it), for every bucket that has any."""
    buckets = np.fromiter((id_bucket(i) for i in keys.column("id").to_pylist()), dtype=np.int64,
                          count=keys.num_rows)
    order = np.argsort(buckets, kind="stable")
    ends = np.cumsum(np.bincount(buckets, minlength=KEY_BUCKETS))
    start = 0
    for bucket, end in enumerate(ends.tolist()):
        if end > start:
            # A copy, not a slice: a pickled slice may carry its whole parent's buffers.
            yield bucket, keys.take(order[start:end])
        start = end


@dataclass(frozen=True)
class ShardDecisions:
    """What the keys decided for some records of one shard (lines are its record numbers).

    reused: line, file (the earlier file whose row it reuses); duplicates: line, first_source, first_line
    (the occurrence of the same id that is embedded or reused).
    """

    reused: pa.Table
    duplicates: pa.Table


@dataclass(frozen=True)
class Resolved:
    """A bucket's decisions, by shard name, and the earlier rows to copy: ids by (file, path)."""

    decisions: dict[str, ShardDecisions]
    copies: dict[tuple[int, str], pa.Array]


def resolve_keys(new: pa.Table, old: pa.Table) -> Resolved:
    """Decide the records whose keys are in new (NEW_KEYS), given the earlier rows in old (OLD_KEYS).

    Per id, the first occurrence (lowest shard, then line) is the one embedded or reused; every later
    one is a duplicate of it. The first is reused when an earlier row holds its id with the same text
    hash; of several, the last file in sorted path order (so the newest dt=...) wins, and that row is
    copied with --snapshot. Ids of old that this run does not hold decide nothing.
    """
    new = new.sort_by([("id", "ascending"), ("shard", "ascending"), ("line", "ascending")])
    rows = new.num_rows
    first = np.ones(rows, dtype=bool)
    if rows > 1:
        ids = new.column("id").combine_chunks()
        first[1:] = pc.not_equal(ids.slice(1), ids.slice(0, rows - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(first)
    later = np.flatnonzero(~first)
    first_of_later = starts[np.cumsum(first)[later] - 1]
    source, line = new.column("source"), new.column("line")
    duplicates = pa.table({"source": source.take(later), "line": line.take(later),
                           "first_source": source.take(first_of_later), "first_line": line.take(first_of_later)})
    firsts = new.take(starts).select(["id", "source", "line", "text_hash"])
    reused = _reused(firsts, old)
    decisions: dict[str, ShardDecisions] = {}
    for name in set(reused.column("source").to_pylist()) | set(duplicates.column("source").to_pylist()):
        decisions[name] = ShardDecisions(_of_source(reused, name, ["line", "file"]),
                                         _of_source(duplicates, name, ["line", "first_source", "first_line"]))
    copies = {}
    for file, path in sorted(set(zip(reused.column("file").to_pylist(), reused.column("path").to_pylist(),
                                     strict=True))):
        copies[(file, path)] = pc.filter(reused.column("id"), pc.equal(reused.column("file"), file)).combine_chunks()
    return Resolved(decisions, copies)


def _reused(firsts: pa.Table, old: pa.Table) -> pa.Table:
    """id, source, line, file, path of the first occurrences an earlier row holds with the same text hash."""
    if not firsts.num_rows or not old.num_rows:
        return pa.table({"id": pa.array([], pa.string()), "source": pa.array([], pa.string()),
                         "line": pa.array([], pa.int64()), "file": pa.array([], pa.int32()),
                         "path": pa.array([], pa.string())})
    newest = old.group_by(["id", "text_hash"]).aggregate([("file", "max")]).rename_columns(
        {"file_max": "file"})
    paths = old.group_by(["file", "path"]).aggregate([])
    matched = firsts.join(newest, keys=["id", "text_hash"], join_type="inner").join(paths, keys="file")
    return matched.select(["id", "source", "line", "file", "path"])


def _of_source(table: pa.Table, source: str, columns: list[str]) -> pa.Table:
    return table.filter(pc.equal(table.column("source"), source)).select(columns).combine_chunks()


def decisions_by_line(decisions: Iterable[ShardDecisions]) -> dict[int, tuple]:
    """One shard's decisions as the reading stage looks them up: {line: (REUSED, file)} and
    {line: (DUPLICATE, first source, first line)}."""
    out: dict[int, tuple] = {}
    for found in decisions:
        reused, duplicates = found.reused, found.duplicates
        out.update(zip(reused.column("line").to_pylist(),
                       [(REUSED, file) for file in reused.column("file").to_pylist()], strict=True))
        out.update(zip(duplicates.column("line").to_pylist(),
                       [(DUPLICATE, s, n) for s, n in zip(duplicates.column("first_source").to_pylist(),
                                                          duplicates.column("first_line").to_pylist(), strict=True)],
                       strict=True))
    return out
