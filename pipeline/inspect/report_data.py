"""What the run report shows, read from a finished output: its manifest and one streaming pass over its Parquet files.

Memory stays bounded whatever the corpus size: files are read one at a time, a few columns and
a few thousand rows at a time; token counts and vector norms are tallied by value (norms rounded
to float16, about 3 significant digits), and near-duplicates are looked for in a fixed-size
sample. Works on every filesystem Beam knows (local, gs://, ...) and on fsspec's (memory://, ...).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders import value_type
from pipeline.formats.manifest import Manifest
from pipeline.inspect.finished import embedding_vectors, embeddings_file_sizes, recorded_storage, row_batches

logger = logging.getLogger(__name__)

NEAR_DUPLICATE = 0.99  # cosine similarity from which two vectors count as near-duplicates
SAMPLE_SEED = 20261127  # fixed, so the same output always gives the same sample and the same page
COLUMNS = ("id", "embedding", "n_tokens", "truncated")
_FLOAT16_MAX = 65504.0


@dataclass
class Tally:
    """Counts by value, for histograms drawn after the pass (the values seen so far need no range up front)."""

    counts: Counter = field(default_factory=Counter)
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, values: np.ndarray, exact: np.ndarray | None = None) -> None:
        """Count values; exact (same length) gives the true min and max when values are rounded."""
        if not len(values):
            return
        keys, counts = np.unique(values, return_counts=True)
        self.counts.update(dict(zip(keys.tolist(), counts.tolist(), strict=True)))
        seen = values if exact is None else exact
        self.low = min(self.low, float(seen.min()))
        self.high = max(self.high, float(seen.max()))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Sample:
    """A fixed-size uniform sample of rows: each row gets a seeded random key, the smallest keys stay.

    The files are read in the manifest's order and their rows are fixed by the input, so the
    same output always yields the same sample.
    """

    def __init__(self, size: int, seed: int = SAMPLE_SEED) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._ids: list[str] = []
        self._groups: list[str] = []
        self._vectors: np.ndarray | None = None

    def offer(self, ids, vectors: np.ndarray, groups: Sequence[str] | None = None) -> None:
        """ids: a pyarrow string array (only sampled ones are converted); vectors: float32 [n, dim]; groups: what
        each row is coloured by on the embedding map (its shard, or a kept field's value)."""
        keys = self._rng.random(len(vectors))
        if self.size <= 0:
            return
        chosen = np.flatnonzero(keys < self._keys.max()) if len(self._keys) >= self.size else np.arange(len(keys))
        if not len(chosen):
            return
        new_ids = ids.take(chosen).to_pylist()
        all_keys = np.concatenate([self._keys, keys[chosen]])
        all_ids = self._ids + new_ids
        all_groups = self._groups + ([groups[i] for i in chosen] if groups is not None else [""] * len(chosen))
        new_vectors = vectors[chosen]
        all_vectors = new_vectors if self._vectors is None else np.concatenate([self._vectors, new_vectors])
        if len(all_keys) > self.size:
            keep = np.argpartition(all_keys, self.size - 1)[: self.size]
            all_keys, all_vectors = all_keys[keep], all_vectors[keep]
            all_ids = [all_ids[i] for i in keep]
            all_groups = [all_groups[i] for i in keep]
        self._keys, self._ids, self._groups, self._vectors = all_keys, all_ids, all_groups, all_vectors

    def rows(self) -> tuple[list[str], np.ndarray, list[str]]:
        """(ids, vectors, groups) of the sample in key order, so the result does not depend on merge order."""
        if self._vectors is None:
            return [], np.zeros((0, 0), dtype=np.float32), []
        order = np.argsort(self._keys, kind="stable")
        return [self._ids[i] for i in order], self._vectors[order], [self._groups[i] for i in order]


def projection(vectors: np.ndarray) -> np.ndarray:
    """The rows' coordinates [n, 2] on their first two principal components (centred; a component's sign fixed so
    its largest coordinate is positive, so the same sample draws the same map)."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    centred = np.asarray(vectors, dtype=np.float64) - np.mean(vectors, axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    if points.shape[1] < 2:
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    signs = np.sign(points[np.abs(points).argmax(axis=0), [0, 1]])
    return points * np.where(signs == 0, 1, signs)


@dataclass(frozen=True)
class NearDuplicates:
    """Near-duplicates within a sample: which rows have one, each row's nearest neighbour, a few example pairs."""

    sample_size: int
    has_duplicate: np.ndarray  # bool [sample_size]
    nearest: np.ndarray  # float32 [sample_size]: cosine similarity to the most similar other row
    pairs: int  # pairs (i < j) at or above the threshold
    examples: list[tuple[str, str, float]]  # (id, id, cosine), most similar first

    @property
    def share(self) -> float:
        return float(self.has_duplicate.mean()) if self.sample_size else 0.0


def near_duplicates(ids: list[str], vectors: np.ndarray, threshold: float = NEAR_DUPLICATE, block: int = 256,
                    examples: int = 5) -> NearDuplicates:
    """Compare every row of the sample with every other by cosine similarity, block rows at a time.

    Memory is block x len(vectors) floats. Zero vectors are similar to nothing. Example pairs are the
    most similar, ties broken by position in the sample.
    """
    n = len(ids)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True) if n else np.zeros((0, 1))
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float32), where=norms > 0)
    has_duplicate = np.zeros(n, dtype=bool)
    nearest = np.full(n, np.nan, dtype=np.float32)
    found: list[tuple[float, int, int]] = []
    pairs = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = unit[start:stop] @ unit.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # a row is not its own duplicate
        if n > 1:
            nearest[start:stop] = sims.max(axis=1)
        hits = sims >= threshold
        has_duplicate[start:stop] = hits.any(axis=1)
        rows, cols = np.nonzero(hits)
        rows = rows + start
        later = cols > rows
        rows, cols = rows[later], cols[later]
        pairs += len(rows)
        if len(rows):
            top = np.lexsort((cols, rows, -sims[rows - start, cols]))[:examples]
            found += [(float(sims[rows[k] - start, cols[k]]), int(rows[k]), int(cols[k])) for k in top]
            found = sorted(found, key=lambda item: (-item[0], item[1], item[2]))[:examples]
    return NearDuplicates(n, has_duplicate, nearest, pairs, [(ids[i], ids[j], s) for s, i, j in found])


@dataclass
class RunData:
    """Everything the page draws from the Parquet files (the rest comes from the manifest)."""

    rows: int = 0
    truncated: int = 0
    tokens: Tally = field(default_factory=Tally)
    norms: Tally = field(default_factory=Tally)
    duplicates: NearDuplicates | None = None
    map_points: np.ndarray | None = None  # [sample, 2]: the sample on its first two principal components
    map_groups: list[str] = field(default_factory=list)  # what each point is coloured by
    color_by: str = "shard"
    files: int = 0
    file_bytes: int = 0  # the embeddings files' size on storage
    vector_bytes: int = 0  # one vector as stored (--output_precision)


def read_run(output: str, manifest: Manifest, sample_size: int, color_by: str | None = None) -> RunData:
    """One pass over the embeddings files the manifest lists, a file at a time.

    color_by: a column of the files (a kept field) whose value colours the embedding map; else each row's
    shard. Raises NotAFinishedRun when a file's embedding column does not hold vectors of the recorded dim,
    or when color_by is not one of its columns.
    """
    data = RunData(color_by=color_by or "shard")
    sample = Sample(sample_size)
    stored = recorded_storage(output, manifest)
    data.vector_bytes = stored.width * value_type(stored.precision).itemsize
    sizes = embeddings_file_sizes(output, manifest)  # one listing, not a request a file
    data.file_bytes = sum(sizes.values())
    for path in sizes:
        columns = (*COLUMNS, color_by) if color_by else COLUMNS
        shard = _shard_of(path, manifest)
        for batch in row_batches(path, columns):
            groups = ([_group(v) for v in batch.column(color_by).to_pylist()] if color_by
                      else [shard] * batch.num_rows)
            _add_batch(data, sample, batch, embedding_vectors(path, batch.column("embedding"), stored), groups)
        data.files += 1
        logger.debug("read %s (%d rows so far)", path, data.rows)
    ids, vectors, groups = sample.rows()
    data.duplicates = near_duplicates(ids, vectors)
    data.map_points, data.map_groups = projection(vectors), groups
    return data


def _shard_of(path: str, manifest: Manifest) -> str:
    """The input shard an output file's rows came from (its name says the shard's position), or "reused"."""
    name = path.rsplit("/", 1)[-1]
    parts = name.split("-")
    if len(parts) == 3 and parts[1].isdigit():
        index = int(parts[1])
        if index < len(manifest.shards):
            return str(manifest.shards[index].get("source", index))
    return "reused rows" if "reused" in name else name


def _group(value: object) -> str:
    return "null" if value is None else str(value)


def _add_batch(data: RunData, sample: Sample, batch, embeddings: np.ndarray, groups: Sequence[str]) -> None:
    """Tally one batch; embeddings: its embedding column as [rows, dim] floats, checked by `embedding_vectors`."""
    n_tokens = batch.column("n_tokens").to_numpy(zero_copy_only=False)
    truncated = batch.column("truncated").to_numpy(zero_copy_only=False)
    vectors = embeddings.astype(np.float32, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    data.rows += len(n_tokens)
    data.truncated += int(truncated.sum())
    data.tokens.add(n_tokens.astype(np.int64))
    data.norms.add(np.minimum(norms, _FLOAT16_MAX).astype(np.float16).astype(np.float64), exact=norms)
    sample.offer(batch.column("id"), vectors, groups)
