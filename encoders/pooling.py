"""Turning per-token BERT outputs into one vector per text, inside the compiled graph.

TensorFlow ops, so pooling runs with the forward pass in one `tf.function` (and under
XLA when asked): only [batch, hidden] floats leave the device, not [batch, seq, hidden].
"""

from __future__ import annotations

POOLING_METHODS = ("mean", "cls", "pooler", "max")


def pool(method: str, sequence_output, input_mask, pooled_output=None):
    """Pool a batch to float32 vectors of shape [batch, hidden].

    sequence_output: [batch, seq, hidden] (any float dtype); input_mask: [batch, seq], 1 for
    real tokens. pooled_output: BERT's tanh pooler over [CLS], needed only for "pooler".
    Padding never contributes to "mean" or "max".
    """
    import tensorflow as tf

    if method == "cls":
        return tf.cast(sequence_output[:, 0, :], tf.float32)
    if method == "pooler":
        if pooled_output is None:
            raise ValueError("pooling 'pooler' needs the model's pooled output")
        return tf.cast(pooled_output, tf.float32)
    seq = tf.cast(sequence_output, tf.float32)
    mask = tf.cast(input_mask, tf.float32)[:, :, tf.newaxis]
    if method == "mean":
        return tf.reduce_sum(seq * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    if method == "max":
        # Same convention as sentence-transformers: padding is pushed far below any activation.
        return tf.reduce_max(tf.where(mask > 0, seq, -1e9), axis=1)
    raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLING_METHODS)}")


def l2_normalize(vectors, eps: float = 1e-12):
    """Scale each row to unit length; an all-zero row stays zero instead of becoming NaN."""
    import tensorflow as tf

    norms = tf.norm(vectors, axis=1, keepdims=True)
    return vectors / tf.maximum(norms, eps)
