"""Incremental runs: which records an earlier output already holds. Pure logic, no Beam.

A record is reused when an earlier output file made under the same model fingerprint
(`encoders.fingerprint`) holds its id with the same text hash: same text, same model, same
settings, so the same vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


def text_hash(text: str) -> str:
    """Hex digest (128 bits of SHA-256) of a text as embedded, i.e. after normalisation."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# What the grouping by id sees: ("new", shard index, source, line, text hash) for a record of this
# run, ("old", file index, path, text hash) for a row of an earlier output.
NEW, OLD = "new", "old"
DUPLICATE, REUSED = "duplicate", "reused"


def resolve_id(record_id: str, values: Iterable[tuple]) -> Iterator[tuple[str, tuple]]:
    """Decisions for the records of this run that share one id.

    Yields ("decision", ((source, line), (DUPLICATE, first source, first line))) for every later
    occurrence, ("decision", ((source, line), (REUSED, file index))) when the first occurrence's
    text hash is in an earlier output, and ("copy", ((file index, path), id)) for the earlier row it
    reuses. First means earliest by shard index then line; among earlier outputs the last file
    (in sorted path order, so the newest dt=...) wins.
    """
    new = sorted(v[1:] for v in values if v[0] == NEW)
    old = sorted(v[1:] for v in values if v[0] == OLD)
    if not new:
        return
    _, first_source, first_line, first_hash = new[0]
    for _, source, line, _ in new[1:]:
        yield "decision", ((source, line), (DUPLICATE, first_source, first_line))
    matches = [(index, path) for index, path, digest in old if digest == first_hash]
    if matches:
        index, path = matches[-1]
        yield "decision", ((first_source, first_line), (REUSED, index))
        yield "copy", ((index, path), record_id)
