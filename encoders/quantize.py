"""Compact vectors: what each --output_precision stores, with sentence-transformers' `quantize_embeddings` meaning.

int8/uint8 cut each dimension's range (a row of minimums and one of maximums, `ranges` [2, dim]) into 255
steps and store the step a value falls in (uint8 0-255, int8 that minus 128); binary/ubinary keep one bit per
dimension, set when the value is positive, packed eight to a byte first dimension in the top bit (ubinary as
uint8, binary as that minus 128 in int8). float16 halves float32 (sentence-transformers has no float16; it is
numpy's rounding). Stored values go back to approximate floats (`dequantize`) so a query can be compared.
"""

from __future__ import annotations

import json

import numpy as np

from encoders.errors import EncoderConfigError

OUTPUT_PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
RANGED = ("int8", "uint8")  # need ranges
# The resolved setting holding them (EncoderSpec.quantize_ranges_values), as files' metadata and manifests name it.
RANGES_SETTING = "quantize_ranges_values"
BITS = ("binary", "ubinary")  # one bit per dimension
_VALUE_TYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
                "binary": np.int8, "ubinary": np.uint8}
_STEPS = 255


def value_type(precision: str) -> np.dtype:
    """The numpy type of one stored value."""
    return np.dtype(_VALUE_TYPES[precision])


def stored_width(dim: int, precision: str) -> int:
    """Values stored per vector: dim, or dim bits packed into bytes."""
    return -(-dim // 8) if precision in BITS else dim


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, dim] vectors as stored at this precision ([n, stored_width])."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if precision in ("float32", "float16"):
        return vectors.astype(value_type(precision))
    if precision in BITS:
        packed = np.packbits(vectors > 0, axis=-1).reshape(len(vectors), -1)
        return packed if precision == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    if ranges is None:
        raise ValueError(f"{precision} needs ranges")
    starts, steps = _starts_steps(ranges)
    buckets = np.clip(np.floor((vectors - starts) / steps), 0, _STEPS)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def dequantize(stored: np.ndarray, precision: str, dim: int, ranges: np.ndarray | None = None) -> np.ndarray:
    """Stored values back to float32 [n, dim]: a bucket's middle; a bit as +1 or -1."""
    stored = np.asarray(stored)
    if precision in ("float32", "float16"):
        return stored.astype(np.float32)
    if precision in BITS:
        bits = np.unpackbits(stored.view(np.uint8) ^ (0x80 if precision == "binary" else 0), axis=-1)[:, :dim]
        return bits.astype(np.float32) * 2 - 1
    starts, steps = _starts_steps(ranges)
    buckets = stored.astype(np.float32) + (128 if precision == "int8" else 0)
    return starts + (buckets + 0.5) * steps


def _starts_steps(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranges = np.asarray(ranges, dtype=np.float32)
    steps = (ranges[1] - ranges[0]) / _STEPS
    return ranges[0], np.where(steps == 0, 1, steps)


def parse_ranges(data: bytes, where: str, dim: int) -> np.ndarray:
    """A ranges file: NumPy .npy or JSON [[minimums], [maximums]], each of dim finite values, min <= max."""
    try:
        if data[:6] == b"\x93NUMPY":
            import io

            ranges = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            ranges = np.array(json.loads(data.decode("utf-8")), dtype=np.float32)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise EncoderConfigError(f"--quantize_ranges {where} is neither a .npy array nor JSON numbers: {exc}") from None
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, dim):
        raise EncoderConfigError(f"--quantize_ranges {where} holds an array of shape {list(ranges.shape)}; this "
                                 f"model's vectors need [2, {dim}] (minimums, then maximums)")
    if not np.isfinite(ranges).all() or (ranges[0] > ranges[1]).any():
        raise EncoderConfigError(f"--quantize_ranges {where}: every value must be finite and each minimum at most "
                                 "its maximum")
    return ranges

