"""The `_SUCCESS` manifest: counts that must reconcile, files written, settings, performance. Pure logic."""

from __future__ import annotations

import time
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
    removed_chars: int = 0  # control characters removed by normalisation


@dataclass(frozen=True)
class EmbedStats:
    """What one call of the embedding step did, and which encoder build did it."""

    embedded: tuple[tuple[str, int], ...]  # (shard name, records embedded)
    real_tokens: int
    padded_tokens: int
    batches: int
    encode_seconds: float
    encoder_build: str  # unique per encoder construction
    process: str  # host:pid of the worker process
    build_seconds: float


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def build_manifest(
    shard_stats: Iterable[ShardStats],
    embed_stats: Iterable[EmbedStats],
    failed: Iterable[tuple[tuple[str, str], int]],
    files: Mapping[str, list[str]],
    settings: Mapping[str, object],
    started: float,
    finished: float,
) -> dict:
    """Assemble the manifest; raises ReconciliationError unless read = embedded + skipped + failed per shard.

    started/finished are Unix times in seconds.
    """
    embed_stats = list(embed_stats)
    embedded_by_shard: Counter[str] = Counter()
    for stats in embed_stats:
        for source, n in stats.embedded:
            embedded_by_shard[source] += n
    failed_by_shard: Counter[str] = Counter()
    failed_by_reason: Counter[str] = Counter()
    for (source, reason), n in failed:
        failed_by_shard[source] += n
        failed_by_reason[reason] += n
    shards = []
    shard_stats_list = sorted(shard_stats, key=lambda s: s.source)
    for stats in shard_stats_list:
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
        "control_chars_removed": sum(s.removed_chars for s in shard_stats_list),
        "shards": shards,
        "files": {kind: sorted(names) for kind, names in files.items()},
        "settings": dict(settings),
        "performance": performance(embed_stats, counts["embedded"], finished - started),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
    }


def performance(embed_stats: list[EmbedStats], embedded: int, wall_seconds: float) -> dict:
    """Throughput, padding efficiency and how many encoders were built in how many processes."""
    real = sum(s.real_tokens for s in embed_stats)
    padded = sum(s.padded_tokens for s in embed_stats)
    builds = {s.encoder_build: s.build_seconds for s in embed_stats if s.batches}
    wall = max(wall_seconds, 1e-9)
    return {
        "wall_seconds": round(wall_seconds, 3),
        "texts_per_second": round(embedded / wall, 2),
        "real_tokens_per_second": round(real / wall, 1),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_efficiency": round(real / padded, 4) if padded else None,
        "batches": sum(s.batches for s in embed_stats),
        "encode_seconds": round(sum(s.encode_seconds for s in embed_stats), 3),
        "encoder_builds": len(builds),
        "worker_processes": len({s.process for s in embed_stats if s.batches}),
        "encoder_build_seconds": round(max(builds.values(), default=0.0), 2),
    }
