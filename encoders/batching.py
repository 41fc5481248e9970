"""Planning inference batches from token counts.

Texts are sorted by length and cut into batches by a padded-token budget. Batch shapes come from a
small fixed set, because every new [rows, length] a process meets costs oneDNN (TensorFlow's CPU
kernels) compiled kernels and cached primitives, per thread, for the life of the process: with free
shapes a worker's memory kept climbing as it met the long tail of row counts and lengths (embedding
60,000 texts took 165 MB more than 6,000 with a 1-layer model). So:

- a batch is padded to its longest member rounded up onto a grid of eight steps per doubling
  (`grid_length`: 32, 36, ..., 64, 72, ..., 128, 144, ...), at most 1/8 padding. Shorter lengths stay
  exact: every run meets all of them early, so they do not make memory grow, and rounding them would
  cost the most padding (multiples of 8 cost 26% more tokens on texts of median 12 words);
- a batch short of its full row count (the tail of a group, or one closed to spare padding) runs as
  power-of-two pieces (32 + 4 + 1 rows for 37), which adds no padding and a few small calls.

Under XLA the lengths are a few bucket lengths and rows are padded to the full count, since XLA
compiles once per distinct shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# --max_tokens_per_batch auto on a CPU (`encoders.auto`): the fixed default of earlier versions, which measured
# best on 2-core CPU workers (larger batches gain nothing once the cores are busy and hold more padding).
CPU_TOKEN_BUDGET = 8192
BUCKET_LENGTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EXACT_BELOW = 32  # `grid_length` rounds lengths from here on
# A batch closes when the next (shorter) text would carry more padding than this share of
# the batch length: with sorted input this only splits the sparse long tail into tighter batches.
MAX_PADDING_SHARE = 0.2


@dataclass(frozen=True)
class BatchPlan:
    """Positions (into the caller's list) of the texts in one batch, and its padded length."""

    indices: tuple[int, ...]
    padded_length: int


def bucket_length(n_tokens: int, max_seq_length: int) -> int:
    """Smallest bucket length >= n_tokens, never above max_seq_length."""
    for length in BUCKET_LENGTHS:
        if length >= n_tokens:
            return min(length, max_seq_length)
    return max_seq_length


def grid_length(n_tokens: int, max_seq_length: int) -> int:
    """n_tokens rounded up onto eight steps per doubling from EXACT_BELOW on, never above max_seq_length."""
    if n_tokens < EXACT_BELOW:
        return min(max(n_tokens, 1), max_seq_length)
    step = (1 << (n_tokens.bit_length() - 1)) // 8
    return min(-(-n_tokens // step) * step, max_seq_length)


def pad_length_for(n_tokens: int, max_seq_length: int, bucketed: bool) -> int:
    """Length a batch whose longest text has n_tokens is padded to."""
    if bucketed:
        return bucket_length(n_tokens, max_seq_length)
    return grid_length(n_tokens, max_seq_length)


def batch_rows(length: int, max_batch_size: int, max_tokens_per_batch: int) -> int:
    """Rows of a full batch padded to `length`: the shape XLA sees for that bucket."""
    return max(1, min(max_batch_size, max_tokens_per_batch // length))


def plan_batches(
    lengths: Sequence[int],
    max_seq_length: int,
    max_batch_size: int,
    max_tokens_per_batch: int,
    bucketed: bool = False,
) -> list[BatchPlan]:
    """Group texts so each batch holds at most max_tokens_per_batch padded tokens, in shapes from a small set.

    lengths are token counts (already capped at max_seq_length). Longest batches come
    first so the peak memory is reached at once, not after an hour. A single text always
    fits a batch of its own, whatever the budget. Unless bucketed, a batch short of
    `batch_rows` rows is split into power-of-two pieces, each padded for its own longest text.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[tuple[list[int], int]] = []
    current: list[int] = []
    current_len = 0
    for i in order:
        own_length = pad_length_for(max(lengths[i], 1), max_seq_length, bucketed)
        if current:
            fits_count = len(current) < max_batch_size
            fits_tokens = (len(current) + 1) * current_len <= max_tokens_per_batch
            fits_length = own_length >= (1 - MAX_PADDING_SHARE) * current_len
            if fits_count and fits_tokens and fits_length:
                current.append(i)
                continue
            batches.append((current, current_len))
        current = [i]
        current_len = own_length
    if current:
        batches.append((current, current_len))
    if bucketed:
        return [BatchPlan(tuple(indices), length) for indices, length in batches]
    return [piece for indices, length in batches
            for piece in _pieces(indices, length, lengths, max_seq_length,
                                 batch_rows(length, max_batch_size, max_tokens_per_batch))]


def _pieces(indices: list[int], padded_length: int, lengths: Sequence[int], max_seq_length: int,
            full_rows: int) -> list[BatchPlan]:
    """A batch as it is when full, else as power-of-two pieces, largest first (indices run longest first)."""
    if len(indices) >= full_rows:
        return [BatchPlan(tuple(indices), padded_length)]
    pieces = []
    start = 0
    for bit in reversed(range(len(indices).bit_length())):
        if len(indices) - start >= 1 << bit:
            piece = tuple(indices[start:start + (1 << bit)])
            pieces.append(BatchPlan(piece, grid_length(max(lengths[piece[0]], 1), max_seq_length)))
            start += 1 << bit
    return pieces


def pad_batch(
    token_ids: Sequence[Sequence[int]], length: int, pad_id: int, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to int32 arrays (ids, mask) of shape [rows, length].

    Rows beyond len(token_ids) (to give XLA a fixed shape) are all padding.
    """
    rows = len(token_ids) if rows is None else rows
    ids = np.full((rows, length), pad_id, dtype=np.int32)
    mask = np.zeros((rows, length), dtype=np.int32)
    for row, seq in enumerate(token_ids):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def pad_runs(
    flat: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    length: int,
    special: tuple[int, int, int],
    rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] + flat[starts[i]:starts[i]+lengths[i]] + [SEP], right-padded: int32 (ids, mask) [rows, length].

    Array operations only (no loop over rows). special is (cls_id, sep_id, pad_id); lengths count
    body tokens and must be at most length - 2. Rows beyond len(starts) are all padding.
    """
    cls_id, sep_id, pad_id = special
    count = len(starts)
    rows = count if rows is None else rows
    ids = np.full((rows, length), pad_id, dtype=np.int32)
    mask = np.zeros((rows, length), dtype=np.int32)
    if not count:
        return ids, mask
    lengths = np.asarray(lengths, dtype=np.int64)
    columns = np.arange(length)
    body = (columns >= 1) & (columns <= lengths[:, None])  # row-major order = each run in order
    first = np.cumsum(lengths) - lengths  # where each run begins among the gathered tokens
    gather = np.repeat(np.asarray(starts, dtype=np.int64) - first, lengths) + np.arange(int(lengths.sum()))
    ids[:count][body] = flat[gather]
    ids[:count, 0] = cls_id
    ids[np.arange(count), lengths + 1] = sep_id
    mask[:count] = columns <= lengths[:, None] + 1
    return ids, mask
