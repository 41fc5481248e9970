"""Each dimension's range from a sample of a finished float run: the --quantize_ranges file for int8/uint8 outputs.

    python -m pipeline.ranges OUTPUT --to ranges.npy [--sample N]

sentence-transformers computes int8 steps from calibration embeddings; here they come from a seeded sample of a
float32 (or float16) run's own vectors, made with the model and settings the quantized nights will use. The
ranges are a file, not computed anew each night: its content is in the fingerprint, so every night quantizes
with the same steps and an incremental night can reuse earlier rows.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipeline.command import MISTAKES, OneLineErrorParser, configure_logging, said
from pipeline.errors import CommandError
from pipeline.formats.storage import open_file
from pipeline.inspect.finished import embedding_vectors, embeddings_files, read_manifest, recorded_storage, row_batches
from pipeline.inspect.report_data import Sample

DEFAULT_SAMPLE = 100_000


def sampled_ranges(output: str, sample_size: int) -> tuple[np.ndarray, int]:
    """[2, dim] minimums and maximums of a seeded sample of the output's vectors, and the sample's size."""
    manifest = read_manifest(output)
    stored = recorded_storage(output, manifest)
    if not stored.floats:
        raise CommandError(f"{output} stores {stored.precision} vectors: take ranges from a float32 or float16 run")
    sample = Sample(sample_size)
    for path in embeddings_files(output, manifest):
        for batch in row_batches(path, ["id", "embedding"]):
            sample.offer(batch.column("id"), embedding_vectors(path, batch.column("embedding"), stored))
    _, vectors, _ = sample.rows()
    if not len(vectors):
        raise CommandError(f"{output} holds no vectors to take ranges from")
    vectors = vectors.astype(np.float32)
    return np.stack([vectors.min(axis=0), vectors.max(axis=0)]), len(vectors)


def ranges_bytes(ranges: np.ndarray, target: str) -> bytes:
    """The file's bytes: JSON for a .json target, else NumPy .npy."""
    if target.endswith(".json"):
        return json.dumps(ranges.tolist()).encode()
    buffer = io.BytesIO()
    np.save(buffer, ranges.astype(np.float32))
    return buffer.getvalue()


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="python -m pipeline.ranges",
                                description="Write each dimension's minimum and maximum over a sample of a finished "
                                            "float run's vectors: the --quantize_ranges file of int8/uint8 runs.")
    parser.add_argument("output", metavar="OUTPUT", help="a finished float32 or float16 output of the job")
    parser.add_argument("--to", metavar="FILE", required=True, help="where to write the ranges (.npy, or .json)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
                        help=f"rows sampled, seeded (default: {DEFAULT_SAMPLE:,})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    configure_logging()
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        if args.sample < 1:
            raise CommandError(f"--sample must be positive, got {args.sample}")
        ranges, sampled = sampled_ranges(args.output.rstrip("/"), args.sample)
        with open_file(args.to, "wb") as f:
            f.write(ranges_bytes(ranges, args.to))
    except (*MISTAKES, OSError, pa.ArrowException) as exc:
        return said(exc)
    print(f"wrote {args.to}: ranges of {ranges.shape[1]} dimensions from {sampled:,} vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
