"""Turning per-token BERT outputs into one vector per text.

Plain NumPy so the maths is testable without TensorFlow; it runs on the host after
the forward pass, where its cost is negligible next to the encoder.
"""

from __future__ import annotations

import numpy as np

POOLING_METHODS = ("mean", "cls", "pooler", "max")


def pool(
    method: str,
    sequence_output: np.ndarray,
    input_mask: np.ndarray,
    pooled_output: np.ndarray | None = None,
) -> np.ndarray:
    """Pool a batch to float32 vectors of shape [batch, hidden].

    sequence_output: [batch, seq, hidden]; input_mask: [batch, seq], 1 for real tokens.
    pooled_output: BERT's tanh pooler over [CLS], needed only for method "pooler".
    Padding never contributes to "mean" or "max".
    """
    if method == "cls":
        return np.asarray(sequence_output[:, 0, :], dtype=np.float32)
    if method == "pooler":
        if pooled_output is None:
            raise ValueError("pooling 'pooler' needs the model's pooled output")
        return np.asarray(pooled_output, dtype=np.float32)
    mask = np.asarray(input_mask, dtype=np.float32)[:, :, None]
    seq = np.asarray(sequence_output, dtype=np.float32)
    if method == "mean":
        counts = np.maximum(mask.sum(axis=1), 1e-9)
        return (seq * mask).sum(axis=1) / counts
    if method == "max":
        # Same convention as sentence-transformers: padding is pushed far below any activation.
        return np.where(mask > 0, seq, np.float32(-1e9)).max(axis=1)
    raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLING_METHODS)}")


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit length; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, eps)).astype(np.float32)
