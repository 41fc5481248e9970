"""The `_SUCCESS` manifest: counts that must reconcile, files written, settings, performance; built and read back."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipeline.formats import storage


class ReconciliationError(Exception):
    """Counts do not add up: some record was neither embedded, skipped nor dead-lettered."""


@dataclass(frozen=True)
class ShardStats:
    """What the reader saw in one shard, and into how many parts it cut it."""

    source: str
    read: int
    skipped: int
    removed_chars: int = 0  # control characters removed by normalisation
    parts: int = 1
    reused: int = 0  # already in an earlier output (--skip_existing), not embedded again
    read_seconds: float = 0.0  # reading, decoding, validating and normalising its records


@dataclass(frozen=True)
class PartStats:
    """What embedding one part of a shard did, the files it staged, and which encoder build did it."""

    source: str
    part: int
    embedded: int
    failed: tuple[tuple[str, int], ...]  # (reason, records)
    files: tuple[str, ...]  # names relative to the output directory
    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    encode_seconds: float = 0.0
    encoder_build: str = ""  # unique per encoder construction
    process: str = ""  # host:pid of the worker process
    build_seconds: float = 0.0
    stage_seconds: tuple[tuple[str, float], ...] = ()  # busy seconds by stage (see `performance`)
    chosen: tuple[tuple[str, object], ...] = ()  # (setting, value) the build chose for each automatic setting


@dataclass(frozen=True)
class Manifest:
    """A `_SUCCESS` manifest read back, as every reader uses it (report, search, the rerun check, the summary).

    Manifests of earlier versions read too: a part they lack (performance, incremental) is empty.
    """

    counts: Mapping[str, int]  # read, embedded, skipped, failed (and reused with --skip_existing)
    settings: Mapping[str, object]  # every recorded setting (JSON values), version, model_fingerprint
    shards: tuple[Mapping[str, object], ...]  # one row of counts per shard
    embeddings: tuple[str, ...]  # the embeddings files, relative to the output
    failed_files: tuple[str, ...]  # the dead-letter files, relative to the output
    failed_by_reason: Mapping[str, int]
    performance: Mapping[str, object]
    incremental: Mapping[str, object] | None  # with --skip_existing
    control_chars_removed: int | None
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """The manifest in data (parsed JSON); ValueError saying what is missing unless it is one this job wrote."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        files = data.get("files")
        ok = (isinstance(data.get("counts"), dict) and isinstance(data.get("settings"), dict)
              and isinstance(data.get("shards"), list) and isinstance(files, dict)
              and isinstance(files.get("embeddings"), list) and all(isinstance(n, str) for n in files["embeddings"]))
        if not ok:
            raise ValueError("expected JSON with counts, settings, shards and files")
        frozen = MappingProxyType
        return cls(
            counts=frozen(data["counts"]), settings=frozen(data["settings"]),
            shards=tuple(frozen(row) if isinstance(row, dict) else frozen({}) for row in data["shards"]),
            embeddings=tuple(files["embeddings"]), failed_files=tuple(files.get("failed") or ()),
            failed_by_reason=frozen(data.get("failed_by_reason") or {}),
            performance=frozen(data.get("performance") or {}),
            incremental=frozen(data["incremental"]) if isinstance(data.get("incremental"), dict) else None,
            control_chars_removed=data.get("control_chars_removed"),
            started_at=data.get("started_at"), finished_at=data.get("finished_at"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """A manifest from the bytes of a `_SUCCESS` file; ValueError (UnicodeError, JSON errors too) if not one."""
        return cls.from_json(json.loads(raw.decode("utf-8")))

    @classmethod
    def read(cls, path: str) -> Manifest:
        """The manifest in the `_SUCCESS` file at path, on any filesystem (`pipeline.formats.storage`).

        OSError when it cannot be read, ValueError when it is not one; each caller says what that means to it.
        """
        with storage.open_file(path) as f:
            return cls.from_bytes(f.read())


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def build_manifest(
    shard_stats: Iterable[ShardStats],
    part_stats: Iterable[PartStats],
    settings: Mapping[str, object],
    started: float,
    finished: float,
    incremental: Mapping[str, object] | None = None,
) -> dict:
    """Assemble the manifest; started/finished are Unix times in seconds.

    Raises ReconciliationError unless every part of every shard was embedded exactly once
    and read = embedded + skipped + failed + reused for each shard. incremental is the
    summary of --skip_existing (see `incremental_summary`), whose reused rows are counted here.
    """
    part_stats = sorted(part_stats, key=lambda s: (s.source, s.part))
    parts_by_shard: dict[str, list[PartStats]] = {}
    for stats in part_stats:
        parts_by_shard.setdefault(stats.source, []).append(stats)
    shards = []
    files: dict[str, list[str]] = {"embeddings": [], "failed": []}
    shard_stats_list = sorted(shard_stats, key=lambda s: s.source)
    for stats in shard_stats_list:
        parts = parts_by_shard.pop(stats.source, [])
        if [p.part for p in parts] != list(range(stats.parts)):
            raise ReconciliationError(
                f"shard {stats.source} was cut into {stats.parts} parts but parts "
                f"{[p.part for p in parts]} were embedded"
            )
        reasons: Counter[str] = Counter()
        for part in parts:
            reasons.update(dict(part.failed))
            for name in part.files:
                files["failed" if name.endswith(".jsonl") else "embeddings"].append(name)
        row = {
            "source": stats.source,
            "read": stats.read,
            "embedded": sum(p.embedded for p in parts),
            "skipped": stats.skipped,
            "failed": sum(reasons.values()),
            "reused": stats.reused,
            "failed_by_reason": dict(sorted(reasons.items())),
        }
        if row["read"] != row["embedded"] + row["skipped"] + row["failed"] + row["reused"]:
            raise ReconciliationError(f"counts do not reconcile for shard {stats.source}: {row}")
        shards.append(row)
    if parts_by_shard:
        raise ReconciliationError(f"records from shards the reader never reported: {sorted(parts_by_shard)}")
    counts = {key: sum(s[key] for s in shards) for key in ("read", "embedded", "skipped", "failed", "reused")}
    if incremental is None:  # reused is only possible, and only reported, with --skip_existing
        del counts["reused"]
        for row in shards:
            del row["reused"]
    else:
        files["embeddings"] += list(incremental.get("snapshot_files", []))
        if incremental.get("snapshot") and incremental.get("snapshot_rows") != counts["reused"]:
            raise ReconciliationError(
                f"{counts['reused']} records were reused but {incremental.get('snapshot_rows')} rows were copied"
            )
    failed_by_reason: Counter[str] = Counter()
    for row in shards:
        failed_by_reason.update(row["failed_by_reason"])
    return {
        "counts": counts,
        "failed_by_reason": dict(sorted(failed_by_reason.items())),
        "control_chars_removed": sum(s.removed_chars for s in shard_stats_list),
        "shards": shards,
        "files": {kind: sorted(names) for kind, names in files.items()},
        "settings": dict(settings),
        **({"incremental": {k: v for k, v in incremental.items() if k != "snapshot_files"}} if incremental else {}),
        "performance": performance(part_stats, counts["embedded"], finished - started, shard_stats_list),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
    }


def performance(part_stats: list[PartStats], embedded: int, wall_seconds: float,
                shard_stats: Iterable[ShardStats] = ()) -> dict:
    """Throughput, padding efficiency, busy time by stage, and how many encoders were built in how many processes.

    `stage_seconds` add up busy time by stage over all worker threads, so they overlap and can
    sum to more than the wall time. On the thread that runs the DoFns: read (read, decode,
    validate, normalise), wait (for the host thread), device (the compiled model), copy (vectors
    back into place, chunk pooling), arrow (hashes and the Arrow table). On the host thread:
    tokenize, batch (plan and pad). On the writer thread: parquet (encode and write the files).
    `device_busy_share` is device time over the wall time after the encoder build, per worker
    process: near 1, the device never waited for the host; well below 1 on a GPU, the host path
    (read, tokenize, Beam) is the bottleneck.
    """
    real = sum(s.real_tokens for s in part_stats)
    padded = sum(s.padded_tokens for s in part_stats)
    builds = {s.encoder_build: s.build_seconds for s in part_stats if s.batches}
    wall = max(wall_seconds, 1e-9)
    stages: Counter[str] = Counter({"read": sum(s.read_seconds for s in shard_stats)})
    for stats in part_stats:
        stages.update(dict(stats.stage_seconds))
    processes = max(len({s.process for s in part_stats if s.batches}), 1)
    build = max(builds.values(), default=0.0)
    # An encoder built before this job (kept by an earlier run in the same process) cost it nothing.
    after_build = wall - build if build < wall else wall
    return {
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
        "device_busy_share": round(min(stages["device"] / (after_build * processes), 1.0), 4),
        "wall_seconds": round(wall_seconds, 3),
        "texts_per_second": round(embedded / wall, 2),
        "real_tokens_per_second": round(real / wall, 1),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_efficiency": round(real / padded, 4) if padded else None,
        "batches": sum(s.batches for s in part_stats),
        "encode_seconds": round(sum(s.encode_seconds for s in part_stats), 3),
        "encoder_builds": len(builds),
        "worker_processes": len({s.process for s in part_stats if s.batches}),
        "encoder_build_seconds": round(max(builds.values(), default=0.0), 2),
        **chosen_summary(part_stats),
    }


def chosen_summary(part_stats: Iterable[PartStats]) -> dict:
    """What the encoder builds chose for the automatic settings (`encoders.auto`).

    {"chosen": {setting: value}} when every worker process chose the same (the usual case: one kind
    of machine); otherwise "chosen" is null and "chosen_by_processes" lists each distinct choice with
    how many processes made it, most common first.
    """
    choices = Counter(chosen for _, chosen in {(s.process, s.chosen) for s in part_stats})
    if len(choices) <= 1:
        return {"chosen": dict(next(iter(choices), ()))}
    ranked = sorted(choices.items(), key=lambda item: (-item[1], repr(item[0])))
    return {"chosen": None, "chosen_by_processes": [{**dict(chosen), "processes": n} for chosen, n in ranked]}


def incremental_summary(
    pattern: str, existing: Iterable[tuple[str, bool, int]], snapshot: bool, copied: Iterable[tuple[str, int]]
) -> dict:
    """The manifest's account of --skip_existing: which earlier files could be used, and what was copied."""
    existing = sorted(existing)
    same = [path for path, usable, _ in existing if usable]
    copied = sorted(copied)
    summary = {
        "skip_existing": pattern,
        "files_matched": len(existing),
        "files_same_fingerprint": len(same),
        "files_other_fingerprint": len(existing) - len(same),
        "snapshot": snapshot,
        "snapshot_rows": sum(n for _, n in copied),
        "snapshot_files": [name for name, _ in copied],
    }
    if existing and not same:
        summary["note"] = ("no earlier file was made with this model fingerprint (model or settings changed), "
                           "so nothing was reused")
    return summary
