"""Runs: several shards of the formats asked for, kept fields of different types, ids repeating across shards."""

from __future__ import annotations

import bz2
import gzip

import pyarrow as pa
import zstandard
from hypothesis import strategies as st

from tests.pipeline.generated.csv_rows import csv_shard
from tests.pipeline.generated.json_lines import JSON_FLAVORS, PREFIX_KINDS, jsonl_shard, prefix_records
from tests.pipeline.generated.parquet import LEAVES, WIDENING, member_type, parquet_kind, parquet_shard, shard_type
from tests.pipeline.generated.records import KEPT, IdPool, Run

_COMPRESSIONS = {"": lambda data: data, ".gz": lambda data: gzip.compress(data, mtime=0), ".bz2": bz2.compress,
                 ".zst": lambda data: zstandard.ZstdCompressor().compress(data)}


@st.composite
def runs(draw, formats: tuple[str, ...] = (), late_values: bool = False) -> Run:
    """Several shards of the given formats, kept fields k0.. of every kind, ids repeating across shards.

    late_values: one JSON Lines shard instead, whose first SAMPLE_RECORDS records decide the kept columns'
    types, and the records after them hold values of any kind.
    """
    kept = KEPT[: len(KEPT) - draw(st.integers(0, len(KEPT) - 1))]  # mostly all: more types per job run
    pool = IdPool()
    flavors = {k: draw(st.sampled_from(sorted(JSON_FLAVORS))) for k in kept}
    # A run's kept fields hold values of different types.
    leaves = draw(st.lists(st.sampled_from(LEAVES), min_size=len(kept), max_size=len(kept), unique=True))
    kinds = {k: draw(parquet_kind(flavors[k], family)) for k, (family, _) in zip(kept, leaves, strict=True)}
    bases = {k: draw(member_type(kinds[k], leaf)) for k, (_, leaf) in zip(kept, leaves, strict=True)}
    for k, base in bases.items():  # dictionary-encoded one time in two: rows then share their strings
        if base in (pa.string(), pa.large_string(), pa.binary()) and draw(st.booleans()):
            bases[k] = pa.dictionary(pa.int32(), base)
    # A field whose type differs between Parquet shards: mostly of a family whose members widen into one another.
    widening = [k for k in kept if kinds[k].family in WIDENING] if draw(st.integers(0, 2)) else []
    varying = draw(st.sampled_from(widening or kept)) if draw(st.integers(0, 2)) == 0 else None
    shards = []
    if late_values:
        prefix = prefix_records({k: draw(st.sampled_from(sorted(PREFIX_KINDS))) for k in kept})
        pool.ids += ["p0", "p999"]
        shards.append(draw(jsonl_shard("s0.jsonl", pool, {k: "anything" for k in kept}, prefix)))
    for index in range(0 if late_values else draw(st.integers(1, 4) if varying is None else st.integers(2, 4))):
        fmt = draw(st.sampled_from(formats))
        name = f"s{index}.{fmt}"
        if fmt in ("jsonl", "csv", "tsv"):
            shard = draw(jsonl_shard(name, pool, flavors) if fmt == "jsonl" else csv_shard(name, pool, kept))
            compression = draw(st.sampled_from(sorted(_COMPRESSIONS))) if draw(st.integers(0, 3)) == 0 else ""
            shard.name += compression
            shard.data = _COMPRESSIONS[compression](shard.data)
            shards.append(shard)
        else:
            types = {k: draw(shard_type(kinds[k], bases[k], k == varying)) for k in kept}
            shards.append(draw(parquet_shard(name, pool, types)))
    return Run(shards, kept, draw(st.booleans()), draw(st.sampled_from([2, 3, 10_000])))
