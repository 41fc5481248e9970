"""BERT's forward pass written for batch inference in TensorFlow graph code, from `BertWeights`.

Same arithmetic as transformers' TFBertMainLayer (vectors within 1e-6 on float32), arranged for a
CPU: activations stay 2-D [tokens, hidden] so every projection is one MatMul + BiasAdd that
oneDNN fuses with the activation (Keras Dense on a 3-D input goes through Tensordot); Q, K and V
come from one matmul; 1/sqrt(head size) is folded into the query weights; the padding mask
becomes an additive bias once per batch, not once per layer; no dropout, no training branches.
Measured where this was written (2 cores, default model, reviews at 256): ~1.2x the transformers
layer in float32 and ~2x in bfloat16 on a CPU with AMX.
"""

from __future__ import annotations

import math

import numpy as np

from encoders.bert_weights import BertWeights

# transformers' BERT adds this to masked attention scores (not the dtype's minimum): kept for
# identical vectors, and safe in float16.
MASKED_SCORE = -10000.0


class BertGraph:
    """Holds the weights as TensorFlow variables; call it inside a tf.function.

    compute_dtype "bfloat16"/"float16" runs the matmuls and attention in that type, with the kernels
    stored in it; bias, activation, residual and LayerNorm run in float32. Measured on a 2-core CPU:
    a bfloat16 GELU costs 3x a float32 one, and TensorFlow's fused float16 MatMul+BiasAdd takes
    seconds per call on a CPU without float16 units (8.5 s for [2048, 384] x [384, 1536]).
    """

    def __init__(self, weights: BertWeights, compute_dtype: str = "float32") -> None:
        import tensorflow as tf

        config = weights.config
        self.config = config
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        scale = 1.0 / math.sqrt(self.head_size)

        def variable(array: np.ndarray, dtype=tf.float32):
            return tf.Variable(tf.cast(np.asarray(array, dtype=np.float32), dtype), trainable=False)

        compute = self.compute_dtype
        self.word_embeddings = variable(weights["embeddings.word_embeddings.weight"])
        # Token type ids are always 0 here (one segment): fold that row into the position table, which starts
        # at the first token's position (`BertConfig.position_offset`: past the padding row for RoBERTa).
        positions = weights["embeddings.position_embeddings.weight"][config.position_offset:]
        self.position_embeddings = variable(positions + weights["embeddings.token_type_embeddings.weight"][0])
        self.embedding_norm = (variable(weights["embeddings.LayerNorm.weight"]),
                               variable(weights["embeddings.LayerNorm.bias"]))
        self.layers = []
        for n in range(config.num_hidden_layers):
            def w(name: str, n: int = n) -> np.ndarray:
                return weights.layer(n, name)

            qkv_kernel = np.concatenate([w("attention.self.query.weight") * scale, w("attention.self.key.weight"),
                                         w("attention.self.value.weight")], axis=1)
            qkv_bias = np.concatenate([w("attention.self.query.bias") * scale, w("attention.self.key.bias"),
                                       w("attention.self.value.bias")])
            self.layers.append({
                "qkv": (variable(qkv_kernel, compute), variable(qkv_bias)),
                "attention_out": (variable(w("attention.output.dense.weight"), compute),
                                  variable(w("attention.output.dense.bias"))),
                "attention_norm": (variable(w("attention.output.LayerNorm.weight")),
                                   variable(w("attention.output.LayerNorm.bias"))),
                "intermediate": (variable(w("intermediate.dense.weight"), compute),
                                 variable(w("intermediate.dense.bias"))),
                "output": (variable(w("output.dense.weight"), compute), variable(w("output.dense.bias"))),
                "output_norm": (variable(w("output.LayerNorm.weight")), variable(w("output.LayerNorm.bias"))),
            })
        self.pooler = None
        if "pooler.dense.weight" in weights.arrays:
            self.pooler = (variable(weights["pooler.dense.weight"]), variable(weights["pooler.dense.bias"]))

    def __call__(self, input_ids, input_mask):
        """int32 [batch, seq] ids and mask -> (sequence_output [b, s, h] float32, pooled_output [b, h] or None)."""
        import tensorflow as tf

        hidden = self.config.hidden_size
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        x = tf.gather(self.word_embeddings, input_ids) + self.position_embeddings[:length]
        x = tf.reshape(self._norm(x, self.embedding_norm), [-1, hidden])
        mask_bias = (1.0 - tf.cast(input_mask, self.compute_dtype)) * MASKED_SCORE
        mask_bias = mask_bias[:, tf.newaxis, tf.newaxis, :]  # [b, 1, 1, s]: every head, every query
        for layer in self.layers:
            x = self._layer(layer, x, mask_bias, batch, length)
        sequence_output = tf.reshape(x, [batch, length, hidden])
        pooled_output = None
        if self.pooler is not None:
            kernel, bias = self.pooler
            pooled_output = tf.tanh(tf.matmul(sequence_output[:, 0], kernel) + bias)
        return sequence_output, pooled_output

    def _layer(self, layer: dict, x, mask_bias, batch, length):
        """One transformer layer on x float32 [tokens, hidden]."""
        import tensorflow as tf

        hidden = self.config.hidden_size
        qkv = tf.cast(self._dense(x, layer["qkv"]), self.compute_dtype)  # [b*s, 3h]
        qkv = tf.transpose(tf.reshape(qkv, [batch, length, 3, self.heads, self.head_size]), [2, 0, 3, 1, 4])
        query, key, value = qkv[0], qkv[1], qkv[2]  # [b, heads, s, d]; query already scaled
        probs = tf.nn.softmax(tf.matmul(query, key, transpose_b=True) + mask_bias)
        context = tf.reshape(tf.transpose(tf.matmul(probs, value), [0, 2, 1, 3]), [-1, hidden])
        x = self._norm(self._dense(context, layer["attention_out"]) + x, layer["attention_norm"])
        inner = self._activation(self._dense(x, layer["intermediate"]))
        return self._norm(self._dense(inner, layer["output"]) + x, layer["output_norm"])

    def _dense(self, x, kernel_bias):
        """x @ kernel + bias, float32 out; the matmul in the compute type."""
        import tensorflow as tf

        kernel, bias = kernel_bias
        if self.compute_dtype == tf.float32:
            return tf.nn.bias_add(tf.matmul(x, kernel), bias)  # oneDNN fuses these (and the GELU after)
        return tf.cast(tf.matmul(tf.cast(x, self.compute_dtype), kernel), tf.float32) + bias

    def _norm(self, x, scale_offset):
        import tensorflow as tf

        scale, offset = scale_offset
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self.config.layer_norm_eps) * scale + offset

    def _activation(self, x):
        import tensorflow as tf

        act = self.config.hidden_act
        if act == "gelu":
            return tf.nn.gelu(x, approximate=False)
        if act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):  # the tanh approximation, under three names
            return tf.nn.gelu(x, approximate=True)
        if act in ("silu", "swish"):
            return tf.nn.silu(x)
        return tf.nn.relu(x)
