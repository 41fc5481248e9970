"""The backend-independent encoder: tokenize, plan batches, run the compiled graph.

A backend supplies only the forward pass (`_forward`, graph code) and its output width, and
registers itself by name (`encoders.registry`); batch planning, pooling, normalisation and
compilation are shared, so both backends give the same vectors for the same weights.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from encoders.batching import batch_rows, pad_batch, plan_batches
from encoders.errors import EncoderConfigError
from encoders.registry import get_backend
from encoders.spec import EncoderSpec
from encoders.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """Results for a list of texts, in the caller's order, and what computing them cost."""

    vectors: np.ndarray  # float32 [n, dim]
    n_tokens: np.ndarray  # int32 [n], tokens fed to the model incl. [CLS]/[SEP]
    truncated: np.ndarray  # bool [n]
    padded_tokens: int = 0  # tokens the model computed, padding included
    batches: int = 0
    n_chunks: np.ndarray | None = None  # int32 [n], windows per text (chunk mode; else all 1)

    def __post_init__(self) -> None:
        if self.n_chunks is None:
            self.n_chunks = np.ones(len(self.n_tokens), dtype=np.int32)


class Encoder(abc.ABC):
    """Turns texts into vectors. Thread-safe: one instance serves a worker's threads."""

    def __init__(self, spec: EncoderSpec, tokenizer: WordPieceTokenizer) -> None:
        import tensorflow as tf

        self.spec = spec
        self.tokenizer = tokenizer
        self.build_seconds = 0.0  # set by build_encoder
        # Chunk mode pools window vectors first and normalises the result, outside the graph.
        self._normalize_in_graph = spec.normalize and spec.long_text != "chunk"
        signature = [tf.TensorSpec([None, None], tf.int32)] * 2
        # One graph for every shape without XLA; under XLA one compilation per bucket shape.
        self._embed = tf.function(self._embed_graph, input_signature=signature, jit_compile=spec.jit_compile)

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Width of the vectors this encoder returns."""

    @abc.abstractmethod
    def _forward(self, input_ids, input_mask):
        """Graph code: int32 [batch, seq] tensors -> (sequence_output [b, s, h], pooled_output [b, h])."""

    def _embed_graph(self, input_ids, input_mask):
        from encoders.pooling import l2_normalize, pool

        sequence_output, pooled_output = self._forward(input_ids, input_mask)
        vectors = pool(self.spec.pooling, sequence_output, input_mask, pooled_output)
        return l2_normalize(vectors) if self._normalize_in_graph else vectors

    def encode(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts; any number of them, sorted and batched by the spec's token budget.

        In chunk mode a text longer than the model's window is cut into overlapping windows,
        each embedded, and its vector is their average weighted by each window's tokens.
        """
        spec = self.spec
        if spec.long_text != "chunk":
            tokenized = self.tokenizer.tokenize(texts, spec.max_seq_length)
            vectors, padded, batches = self._embed_rows(tokenized.token_ids)
            return Embeddings(vectors, tokenized.n_tokens, tokenized.truncated, padded, batches)
        windowed = self.tokenizer.windows(texts, spec.max_seq_length, spec.chunk_overlap)
        window_vectors, padded, batches = self._embed_rows(windowed.token_ids)
        weights = np.fromiter(map(len, windowed.token_ids), dtype=np.float32, count=len(windowed.token_ids))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(vectors, windowed.owner, window_vectors * weights[:, None])
        totals = np.zeros(len(texts), dtype=np.float32)
        np.add.at(totals, windowed.owner, weights)
        vectors /= np.maximum(totals, 1.0)[:, None]
        if spec.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        truncated = np.zeros(len(texts), dtype=bool)
        return Embeddings(vectors, windowed.n_tokens, truncated, padded, batches, windowed.n_chunks)

    def _embed_rows(self, token_ids: list[list[int]]) -> tuple[np.ndarray, int, int]:
        """(vectors [rows, dim] in the given order, padded tokens computed, batches) for tokenized rows."""
        spec = self.spec
        vectors = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        plans = plan_batches(
            [len(t) for t in token_ids],
            spec.max_seq_length,
            spec.max_batch_size,
            spec.max_tokens_per_batch,
            bucketed=spec.jit_compile,
        )
        padded = 0
        for plan in plans:
            rows = None
            if spec.jit_compile:
                rows = batch_rows(plan.padded_length, spec.max_batch_size, spec.max_tokens_per_batch)
            ids, mask = pad_batch([token_ids[i] for i in plan.indices], plan.padded_length, self.tokenizer.pad_id, rows)
            if rows:  # filler rows hold one real token each so no row pools over nothing
                mask[len(plan.indices):, 0] = 1
            vectors[list(plan.indices)] = self.embed_token_ids(ids, mask)[: len(plan.indices)]
            padded += ids.size
        return vectors, padded, len(plans)

    def embed_token_ids(self, input_ids: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
        """Run the compiled graph on already padded int32 [batch, seq] arrays; float32 [batch, dim]."""
        return self._embed(input_ids, input_mask).numpy()

    def warm_up(self) -> None:
        """Trace (and under XLA compile) every bucket shape now rather than mid-job."""
        from encoders.batching import BUCKET_LENGTHS

        spec = self.spec
        lengths = [n for n in BUCKET_LENGTHS if n < spec.max_seq_length] + [spec.max_seq_length]
        for length in lengths if spec.jit_compile else lengths[:1]:
            rows = batch_rows(length, spec.max_batch_size, spec.max_tokens_per_batch)
            ids, mask = pad_batch([[self.tokenizer.cls_id, self.tokenizer.sep_id]], length, self.tokenizer.pad_id, rows)
            mask[:, 0] = 1
            self.embed_token_ids(ids, mask)


def build_encoder(spec: EncoderSpec, warm_up: bool = True) -> Encoder:
    """Load the model a resolved spec names with its backend. Slow: call once per process."""
    from encoders.device import configure_gpus

    start = time.perf_counter()
    configure_gpus()
    encoder = get_backend(spec.backend).load(spec)
    if encoder.dim != spec.dim:
        raise EncoderConfigError(f"model {spec.model} gives {encoder.dim}-d vectors, expected {spec.dim}")
    if warm_up:
        encoder.warm_up()
    encoder.build_seconds = time.perf_counter() - start
    logger.info("built %s encoder for %s in %.1f s", spec.backend, spec.model, encoder.build_seconds)
    return encoder
