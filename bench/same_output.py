"""Do two finished outputs hold the same thing? For checking that a faster job changed nothing.

    .venv/bin/python -m bench.same_output OUT_A OUT_B

Compares what a reader sees: every embeddings file by name with its rows (every column, vectors bit for
bit, in order), the dead letters, and the manifest less what differs from run to run (times, the
performance block, the output path). Exits 0 when they match, 1 (saying where) when not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pyarrow.parquet as pq

logger = logging.getLogger(__name__)
_VARYING = ("performance", "started_at", "finished_at")


def manifest(output: Path) -> dict:
    """The manifest without what differs between two runs of the same job."""
    found = json.loads((output / "_SUCCESS").read_text(encoding="utf-8"))
    for key in _VARYING:
        found.pop(key, None)
    found.get("settings", {}).pop("output", None)
    return found


def differences(a: Path, b: Path) -> list[str]:
    """What differs between outputs a and b, in words; empty when they match."""
    found = []
    manifest_a, manifest_b = manifest(a), manifest(b)
    for key in sorted(set(manifest_a) | set(manifest_b)):
        if manifest_a.get(key) != manifest_b.get(key):
            found.append(f"manifest {key}: {manifest_a.get(key)!r:.300} != {manifest_b.get(key)!r:.300}")
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and p.name != "_SUCCESS")
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name != "_SUCCESS")
    if names_a != names_b:
        found.append(f"files: {sorted(set(names_a) ^ set(names_b))[:10]} are in one output only")
    for name in sorted(set(names_a) & set(names_b)):
        if name.endswith(".parquet"):
            table_a, table_b = pq.read_table(a / name), pq.read_table(b / name)
            if not table_a.equals(table_b):
                found.append(f"{name}: rows differ ({table_a.num_rows} vs {table_b.num_rows} rows)")
            elif table_a.schema.metadata != table_b.schema.metadata:
                found.append(f"{name}: file metadata differs")
        elif (a / name).read_bytes() != (b / name).read_bytes():
            found.append(f"{name}: contents differ")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    found = differences(args.a, args.b)
    for line in found:
        logger.error("%s", line)
    if found:
        sys.exit(1)
    logger.info("same output: %s and %s", args.a, args.b)


if __name__ == "__main__":
    main()
