"""Busy time and volume of the job's bookkeeping stages (keys, earlier outputs, snapshot copy, commit) as Beam counters.

The manifest's `stage_seconds` account for reading and embedding; these stages run elsewhere in the graph
(before reading, after embedding) and their cost only shows at scale, so they report to the job's
metrics, which every runner collects (the portable runner's job service returns user counters only).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from apache_beam.metrics import Metrics

METRICS_NAMESPACE = "embedding_job"

# Counter names; *_ms counters hold milliseconds summed over every element (and worker) of the stage.
KEYS_MS = "keys_ms"  # reading (id, position, text hash) of every record and handing them on to the grouping
KEYS_RECORDS = "keys_records"
KEY_BYTES = "key_bytes"  # what the keys carry into the grouping: their arrays (ids, lines, hashes, removed)
EARLIER_KEYS_MS = "earlier_keys_ms"  # reading ids and text hashes of earlier output files (--skip_existing)
EARLIER_ROWS = "earlier_rows"
SNAPSHOT_COPY_MS = "snapshot_copy_ms"  # --snapshot: copying reused rows into this output
COMMIT_MS = "commit_ms"  # building the manifest, moving staged files into place, writing _SUCCESS
COMMIT_FILES = "commit_files"
# Bytes one key holds besides its id: 64 bits of its text hash and a 4-byte record number (a lower bound per key).
KEY_FIXED_BYTES = 8 + 4


def counter(name: str):
    """The job's counter of this name (count inside process/finish_bundle: counts in setup are lost)."""
    return Metrics.counter(METRICS_NAMESPACE, name)


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Add the milliseconds the block takes to the counter name.

    Around a generator's body the time includes what the runner does with each yielded element
    before asking for the next (in a fused stage, handing it to the next step).
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        counter(name).inc(round((time.perf_counter() - start) * 1000))
