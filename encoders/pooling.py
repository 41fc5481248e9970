"""Turning per-token BERT outputs into one vector per text, and reading a model's own pooling config.

Pooling is TensorFlow ops, so it runs with the forward pass in one `tf.function` (and under
XLA when asked): only [batch, hidden] floats leave the device, not [batch, seq, hidden].
A sentence-transformers model directory says how it pools, whether it normalises, how
long its inputs are and which prompts it expects (modules.json, the Pooling module's config.json,
sentence_bert_config.json, config_sentence_transformers.json); we read those instead of asking
users to repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    include_prompt: bool = True  # False: a prompt's tokens (and [CLS]) are left out of mean and max pooling
    prompts: dict[str, str] = field(default_factory=dict)  # by name, e.g. {"query": "query: "}
    default_prompt_name: str | None = None  # the prompt every text gets when none is asked for


def model_pooling_config(source: ModelSource) -> PoolingConfig:
    """Read the sentence-transformers modules of a model directory, if it has any."""
    modules = read_model_json(source, "modules.json")
    if not modules:
        return PoolingConfig()
    pooling, normalize, include_prompt = "mean", False, True
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            pooling, include_prompt = _st_pooling(source, module.get("path", ""))
        elif kind.endswith("Normalize"):
            normalize = True
    length = (read_model_json(source, "sentence_bert_config.json") or {}).get("max_seq_length")
    st_config = read_model_json(source, "config_sentence_transformers.json") or {}
    prompts = st_config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise EncoderConfigError("config_sentence_transformers.json: prompts must map names to texts")
    default = st_config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise EncoderConfigError(f"config_sentence_transformers.json: default_prompt_name {default!r} is not one "
                                 f"of its prompts ({', '.join(prompts) or 'none'})")
    return PoolingConfig(pooling, normalize, int(length) if length else None, include_prompt, dict(prompts), default)


def _st_pooling(source: ModelSource, path: str) -> tuple[str, bool]:
    where = f"{path}/config.json" if path else "config.json"
    config = read_model_json(source, where)
    if not config:
        return "mean", True
    chosen = [name for key, name in _ST_POOLING_KEYS.items() if config.get(key)]
    if len(chosen) != 1:
        raise EncoderConfigError(
            f"model pooling config {where} selects {chosen or 'no mode'}; pass --pooling explicitly"
        )
    return chosen[0], bool(config.get("include_prompt", True))


def pool(method: str, sequence_output, input_mask, pooled_output=None, skip: int = 0):
    """Pool a batch to float32 vectors of shape [batch, hidden].

    sequence_output: [batch, seq, hidden] (any float dtype); input_mask: [batch, seq], 1 for
    real tokens. pooled_output: BERT's tanh pooler over [CLS], needed only for "pooler".
    Padding never contributes to "mean" or "max", nor do the first skip tokens (a prompt, with
    [CLS], when the model's pooling config says include_prompt: false, as sentence-transformers does).
    """
    import tensorflow as tf

    if skip and method in ("mean", "max"):
        input_mask = input_mask * tf.cast(tf.range(tf.shape(input_mask)[1]) >= skip, input_mask.dtype)

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
