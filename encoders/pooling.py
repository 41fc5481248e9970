"""Turning per-token BERT outputs into one vector per text, and reading a model's own pooling config.

Pooling is TensorFlow ops, so it runs with the forward pass in one `tf.function` (and under
XLA when asked): only [batch, hidden] floats leave the device, not [batch, seq, hidden].
A sentence-transformers model directory says how it pools, whether it normalises and how
long its inputs are (modules.json, the Pooling module's config.json, sentence_bert_config.json);
we read those instead of asking users to repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass

from encoders.errors import EncoderConfigError
from encoders.model_source import ModelSource, read_model_json

POOLING_METHODS = ("mean", "cls", "pooler", "max")
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


@dataclass(frozen=True)
class PoolingConfig:
    """What a model directory says about its pooling stages (defaults when it says nothing)."""

    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None  # None: the model's maximum


def model_pooling_config(source: ModelSource) -> PoolingConfig:
    """Read the sentence-transformers modules of a model directory, if it has any."""
    modules = read_model_json(source, "modules.json")
    if not modules:
        return PoolingConfig()
    pooling, normalize = "mean", False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            pooling = _st_pooling(source, module.get("path", ""))
        elif kind.endswith("Normalize"):
            normalize = True
    length = (read_model_json(source, "sentence_bert_config.json") or {}).get("max_seq_length")
    return PoolingConfig(pooling, normalize, int(length) if length else None)


def _st_pooling(source: ModelSource, path: str) -> str:
    where = f"{path}/config.json" if path else "config.json"
    config = read_model_json(source, where)
    if not config:
        return "mean"
    chosen = [name for key, name in _ST_POOLING_KEYS.items() if config.get(key)]
    if len(chosen) != 1:
        raise EncoderConfigError(
            f"model pooling config {where} selects {chosen or 'no mode'}; pass --pooling explicitly"
        )
    return chosen[0]


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
