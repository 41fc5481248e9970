"""The Parquet layout of embeddings: schema, file metadata and table building."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

EMBEDDINGS_PREFIX = "embeddings"
EMBEDDINGS_SUFFIX = ".parquet"
FAILED_DIR = "failed"
FAILED_PREFIX = "dead-letters"
FAILED_SUFFIX = ".jsonl"
SUCCESS_FILE = "_SUCCESS"


def embeddings_schema(dim: int, metadata: Mapping[str, str]) -> pa.Schema:
    """Columns id, embedding (fixed_size_list<float32>[dim]), n_tokens, truncated."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("n_tokens", pa.int32(), nullable=False),
            pa.field("truncated", pa.bool_(), nullable=False),
        ],
        metadata={k: str(v) for k, v in metadata.items()},
    )


def embeddings_table(
    ids: Sequence[str],
    vectors: np.ndarray,
    n_tokens: np.ndarray,
    truncated: np.ndarray,
    schema: pa.Schema,
) -> pa.Table:
    """A table of one batch; vectors is float32 [n, dim] matching the schema's dim."""
    dim = schema.field("embedding").type.list_size
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    columns = [
        pa.array(list(ids), type=pa.string()),
        pa.FixedSizeListArray.from_arrays(flat, dim),
        pa.array(np.asarray(n_tokens, dtype=np.int32)),
        pa.array(np.asarray(truncated, dtype=bool)),
    ]
    return pa.Table.from_arrays(columns, schema=schema)
