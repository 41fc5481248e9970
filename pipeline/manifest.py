"""The `_SUCCESS` manifest: counts that must reconcile, files written, settings. Pure logic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class ReconciliationError(Exception):
    """Counts do not add up: some record was neither embedded, skipped nor dead-lettered."""


@dataclass(frozen=True)
class ShardStats:
    """What the reader saw in one shard."""

    source: str
    read: int
    skipped: int


def build_manifest(
    shard_stats: Iterable[ShardStats],
    embedded: Iterable[tuple[str, int]],
    failed: Iterable[tuple[tuple[str, str], int]],
    files: Mapping[str, list[str]],
    settings: Mapping[str, object],
    started_at: str,
    finished_at: str,
) -> dict:
    """Assemble the manifest; raises ReconciliationError unless read = embedded + skipped + failed per shard."""
    embedded_by_shard: Counter[str] = Counter()
    for source, n in embedded:
        embedded_by_shard[source] += n
    failed_by_shard: Counter[str] = Counter()
    failed_by_reason: Counter[str] = Counter()
    for (source, reason), n in failed:
        failed_by_shard[source] += n
        failed_by_reason[reason] += n
    shards = []
    for stats in sorted(shard_stats, key=lambda s: s.source):
        row = {
            "source": stats.source,
            "read": stats.read,
            "embedded": embedded_by_shard[stats.source],
            "skipped": stats.skipped,
            "failed": failed_by_shard[stats.source],
        }
        if row["read"] != row["embedded"] + row["skipped"] + row["failed"]:
            raise ReconciliationError(f"counts do not reconcile for shard {stats.source}: {row}")
        shards.append(row)
    known = {s["source"] for s in shards}
    stray = (set(embedded_by_shard) | set(failed_by_shard)) - known
    if stray:
        raise ReconciliationError(f"records from shards the reader never reported: {sorted(stray)}")
    counts = {key: sum(s[key] for s in shards) for key in ("read", "embedded", "skipped", "failed")}
    return {
        "counts": counts,
        "failed_by_reason": dict(sorted(failed_by_reason.items())),
        "shards": shards,
        "files": {kind: sorted(names) for kind, names in files.items()},
        "settings": dict(settings),
        "started_at": started_at,
        "finished_at": finished_at,
    }
