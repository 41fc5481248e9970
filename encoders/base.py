"""The backend-independent encoder: tokenize, plan batches, forward, pool, normalise.

A backend supplies only the forward pass (`_forward`) and its output width; batching,
pooling and normalisation are shared, so both backends give the same vectors for the
same weights.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from encoders.batching import pad_batch, plan_batches
from encoders.errors import EncoderConfigError
from encoders.pooling import l2_normalize, pool
from encoders.spec import EncoderSpec
from encoders.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """Results for a list of texts, in the caller's order."""

    vectors: np.ndarray  # float32 [n, dim]
    n_tokens: np.ndarray  # int32 [n], tokens fed to the model incl. [CLS]/[SEP]
    truncated: np.ndarray  # bool [n]


class Encoder(abc.ABC):
    """Turns texts into vectors. Thread-safe: one instance serves a worker's threads."""

    def __init__(self, spec: EncoderSpec, tokenizer: WordPieceTokenizer) -> None:
        self.spec = spec
        self.tokenizer = tokenizer

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Width of the vectors this encoder returns."""

    @abc.abstractmethod
    def _forward(self, input_ids: np.ndarray, input_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on int32 [batch, seq] arrays.

        Returns (sequence_output [batch, seq, hidden], pooled_output [batch, hidden]).
        """

    def encode(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts; any number of them, batched by the spec's token budget."""
        spec = self.spec
        tokenized = self.tokenizer.tokenize(texts, spec.max_seq_length)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        plans = plan_batches(
            tokenized.n_tokens.tolist(),
            spec.max_seq_length,
            spec.max_batch_size,
            spec.max_tokens_per_batch,
        )
        for plan in plans:
            ids, mask = pad_batch(
                [tokenized.token_ids[i] for i in plan.indices],
                plan.padded_length,
                self.tokenizer.pad_id,
            )
            sequence_output, pooled_output = self._forward(ids, mask)
            pooled = pool(spec.pooling, sequence_output, mask, pooled_output)
            vectors[list(plan.indices)] = pooled
        if spec.normalize:
            vectors = l2_normalize(vectors)
        return Embeddings(vectors, tokenized.n_tokens, tokenized.truncated)


def build_encoder(spec: EncoderSpec) -> Encoder:
    """Load the model a spec names with its backend. Slow: call once per process."""
    if spec.backend == "hub":
        from encoders.hub_backend import HubEncoder

        encoder: Encoder = HubEncoder(spec)
    else:
        from encoders.transformers_backend import TransformersEncoder

        encoder = TransformersEncoder(spec)
    if encoder.dim != spec.dim:
        raise EncoderConfigError(f"model {spec.model} gives {encoder.dim}-d vectors, expected {spec.dim}")
    return encoder
