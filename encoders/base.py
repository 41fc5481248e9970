"""The backend-independent encoder: tokenize, plan batches, run the compiled graph.

A backend supplies only the forward pass (`_forward`, graph code) and its output width, and
registers itself by name (`encoders.registry`); batch planning, pooling, normalisation and
compilation are shared, so both backends give the same vectors for the same weights.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from encoders.batching import batch_rows, pad_batch, pad_runs, plan_batches
from encoders.errors import EncoderConfigError
from encoders.registry import get_backend
from encoders.spec import EncoderSpec
from encoders.tokenization import Tokenizer, cut_windows

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
    seconds: dict[str, float] = field(default_factory=dict)  # by stage: tokenize, batch, device, copy

    def __post_init__(self) -> None:
        if self.n_chunks is None:
            self.n_chunks = np.ones(len(self.n_tokens), dtype=np.int32)


@dataclass
class Prepared:
    """A group tokenized and cut into padded batches: everything the device needs, made on the host."""

    n_texts: int
    n_rows: int  # rows the model sees: texts, or windows in chunk mode
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (row indices, int32 ids, int32 mask)
    n_tokens: np.ndarray  # int32 [texts]
    truncated: np.ndarray  # bool [texts]
    n_chunks: np.ndarray  # int32 [texts]
    owner: np.ndarray | None  # int64 [rows], the text of each window (chunk mode only)
    row_lengths: np.ndarray  # int64 [rows], body tokens per row
    seconds: dict[str, float]  # host time by stage


def prefetch(items: Iterable, work: Callable, depth: int) -> Iterator:
    """work(item) for each item, computed by one background thread at most depth results ahead, in order.

    Bounded: the thread blocks when depth results wait. If the consumer stops early the thread
    finishes its current item and exits.
    """
    results: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                results.put(work(item))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            results.put(_Failed(exc))
        results.put(done)

    thread = threading.Thread(target=produce, name="encoder-prefetch", daemon=True)
    thread.start()
    try:
        while (result := results.get()) is not done:
            if isinstance(result, _Failed):
                raise result.error
            yield result
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get(timeout=0.05)
            except queue.Empty:
                pass


@dataclass
class _Failed:
    error: BaseException


class Encoder(abc.ABC):
    """Turns texts into vectors. Thread-safe: one instance serves a worker's threads."""

    def __init__(self, spec: EncoderSpec, tokenizer: Tokenizer) -> None:
        import tensorflow as tf

        self.spec = spec
        self.tokenizer = tokenizer
        self.build_seconds = 0.0  # set by build_encoder
        self.chosen: dict[str, object] = {}  # automatic settings and the values build_encoder chose
        self.device_streams = 1  # batches run at once (set by build_encoder: 2 on a CPU)
        self._streams_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Chunk mode pools window vectors first and normalises the result, outside the graph.
        self._normalize_in_graph = spec.normalize and spec.long_text != "chunk"
        self._prompt_skip = self._prompt_tokens_left_out(spec, tokenizer)
        signature = [tf.TensorSpec([None, None], tf.int32)] * 2
        # One graph for every shape without XLA; under XLA one compilation per bucket shape.
        # No autograph: the traced code branches only on Python values (settings), never on tensors, and
        # converting transformers' layer code cost ~2 of the ~5 s build (measured: same vectors, max diff 0.0).
        self._embed = tf.function(self._embed_graph, input_signature=signature, jit_compile=spec.jit_compile,
                                  autograph=False)

    @staticmethod
    def _prompt_tokens_left_out(spec: EncoderSpec, tokenizer: Tokenizer) -> int:
        """Leading tokens pooling leaves out: with a prompt and the model's include_prompt false, the prompt's
        own tokens and [CLS], counted as sentence-transformers counts them (the prompt tokenized alone)."""
        if not spec.prompt:
            return 0
        from encoders.model_source import parse_model_source
        from encoders.pooling import model_pooling_config

        if model_pooling_config(parse_model_source(spec.model)).include_prompt:
            return 0
        return 1 + int(tokenizer.token_runs([spec.prompt]).lengths[0])

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Width of the model's vectors (its hidden size)."""

    @property
    def width(self) -> int:
        """Width of the vectors this encoder returns: the model's, or --truncate_dim's."""
        return self.spec.truncate_dim or self.dim

    @abc.abstractmethod
    def _forward(self, input_ids, input_mask):
        """Graph code: int32 [batch, seq] tensors -> (sequence_output [b, s, h], pooled_output [b, h])."""

    def _embed_graph(self, input_ids, input_mask):
        from encoders.pooling import l2_normalize, pool

        sequence_output, pooled_output = self._forward(input_ids, input_mask)
        vectors = pool(self.spec.pooling, sequence_output, input_mask, pooled_output, self._prompt_skip)
        if self.spec.truncate_dim:  # Matryoshka: the first dimensions, normalised after the cut
            vectors = vectors[:, : self.spec.truncate_dim]
        return l2_normalize(vectors) if self._normalize_in_graph else vectors

    def encode(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts; any number of them, sorted and batched by the spec's token budget.

        In chunk mode a text longer than the model's window is cut into overlapping windows,
        each embedded, and its vector is their average weighted by each window's tokens.
        """
        return self.run(self.prepare(texts))

    def encode_groups(self, groups: Iterable[Sequence[str]], depth: int = 2) -> Iterator[Embeddings | Exception]:
        """Embed several groups of texts, one Embeddings per group, in order.

        A host thread tokenizes and pads the next groups (at most `depth` ahead, which bounds the
        memory held) while this thread runs the device on the current one: `tokenizers` and
        TensorFlow release the GIL, so a GPU need not wait for Python. A group that fails yields
        its exception instead, so the caller can isolate the bad records; the rest go on.
        depth 0 prepares each group in this thread, just before running it (no overlap).
        """
        ahead = prefetch(groups, self._prepare_or_error, depth) if depth else map(self._prepare_or_error, groups)
        while True:
            started = time.perf_counter()
            prepared = next(ahead, None)
            waited = time.perf_counter() - started  # the device's thread waiting for the host thread
            if prepared is None:
                return
            if isinstance(prepared, Exception):
                yield prepared
                continue
            try:
                result = self.run(prepared)
            except Exception as exc:  # noqa: BLE001 - handed to the caller with its group
                yield exc
                continue
            if depth:  # without a host thread the wait is the tokenizing and batching already counted
                result.seconds["wait"] = waited
            yield result

    def _prepare_or_error(self, texts: Sequence[str]) -> Prepared | Exception:
        try:
            return self.prepare(texts)
        except Exception as exc:  # noqa: BLE001 - handed to the caller with its group
            return exc

    def prepare(self, texts: Sequence[str]) -> Prepared:
        """Host work for a group: tokenize, cut windows (chunk mode), plan batches and pad them.

        Thread-safe, and needs no device, so it can run ahead of `run` on another thread.
        """
        spec = self.spec
        started = time.perf_counter()
        if spec.prompt:
            texts = [spec.prompt + text for text in texts]
        runs = self.tokenizer.token_runs(texts)
        window = spec.max_seq_length - 2  # body tokens per row, [CLS]/[SEP] aside
        if spec.long_text == "chunk":
            owner, row_starts, row_lengths, n_chunks = cut_windows(runs.lengths, window, window - spec.chunk_overlap)
            row_starts += runs.starts[owner]
            truncated = np.zeros(len(texts), dtype=bool)
            n_tokens = (runs.lengths + 2).astype(np.int32)
        else:
            owner = None
            row_starts, row_lengths = runs.starts, np.minimum(runs.lengths, window)
            truncated = runs.lengths > window
            n_tokens = (row_lengths + 2).astype(np.int32)
            n_chunks = np.ones(len(texts), dtype=np.int32)
        tokenized = time.perf_counter()
        plans = plan_batches((row_lengths + 2).tolist(), spec.max_seq_length, spec.max_batch_size,
                             spec.max_tokens_per_batch, bucketed=spec.jit_compile)
        special = (self.tokenizer.cls_id, self.tokenizer.sep_id, self.tokenizer.pad_id)
        batches = []
        for plan in plans:
            rows = batch_rows(plan.padded_length, spec.max_batch_size, spec.max_tokens_per_batch) \
                if spec.jit_compile else None
            indices = np.asarray(plan.indices, dtype=np.int64)
            ids, mask = pad_runs(runs.flat, row_starts[indices], row_lengths[indices], plan.padded_length,
                                 special, rows)
            if rows:  # filler rows hold one real token each so no row pools over nothing
                mask[len(indices):, 0] = 1
            batches.append((indices, ids, mask))
        seconds = {"tokenize": tokenized - started, "batch": time.perf_counter() - tokenized}
        return Prepared(len(texts), len(row_lengths), batches, n_tokens, truncated, n_chunks, owner, row_lengths,
                        seconds)

    def run(self, prepared: Prepared) -> Embeddings:
        """Device work for a prepared group: every batch through the compiled graph, then chunk pooling.

        With device_streams > 1 that many batches run at once (TensorFlow releases the GIL); results
        are placed in order either way.
        """
        copy = 0.0
        padded = 0
        vectors = np.zeros((prepared.n_rows, self.width), dtype=np.float32)
        started = time.perf_counter()
        for (indices, ids, _), out in zip(prepared.batches, self._device_map(prepared.batches), strict=True):
            placing = time.perf_counter()
            vectors[indices] = out[: len(indices)]
            copy += time.perf_counter() - placing
            padded += ids.size
        device = time.perf_counter() - started - copy
        if prepared.owner is not None:
            started = time.perf_counter()
            vectors = self._pool_windows(vectors, prepared)
            copy += time.perf_counter() - started
        seconds = {**prepared.seconds, "device": device, "copy": copy}
        return Embeddings(vectors, prepared.n_tokens, prepared.truncated, padded, len(prepared.batches),
                          prepared.n_chunks, seconds)

    def _device_map(self, batches: list) -> Iterator[np.ndarray]:
        """embed_token_ids of each (indices, ids, mask) batch, in order; device_streams at a time."""
        if self.device_streams <= 1 or len(batches) <= 1:
            return (self.embed_token_ids(ids, mask) for _, ids, mask in batches)
        with self._pool_lock:
            if self._streams_pool is None:
                self._streams_pool = ThreadPoolExecutor(self.device_streams, thread_name_prefix="encoder-device")
        return self._streams_pool.map(lambda batch: self.embed_token_ids(batch[1], batch[2]), batches)

    def _pool_windows(self, window_vectors: np.ndarray, prepared: Prepared) -> np.ndarray:
        """One vector per text: its windows' vectors averaged, weighted by tokens ([CLS]/[SEP] included)."""
        weights = (prepared.row_lengths + 2).astype(np.float32)
        vectors = np.zeros((prepared.n_texts, self.width), dtype=np.float32)
        np.add.at(vectors, prepared.owner, window_vectors * weights[:, None])
        totals = np.zeros(prepared.n_texts, dtype=np.float32)
        np.add.at(totals, prepared.owner, weights)
        vectors /= np.maximum(totals, 1.0)[:, None]
        if self.spec.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def embed_token_ids(self, input_ids: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
        """Run the compiled graph on already padded int32 [batch, seq] arrays; float32 [batch, dim]."""
        return self._embed(input_ids, input_mask).numpy()

    def device_function(self):
        """The traced tf ConcreteFunction every batch runs (what `embed_token_ids` calls), for inspecting its graph.

        One trace serves every batch shape: its inputs are int32 [batch, seq] ids and mask of any size.
        """
        return self._embed.get_concrete_function()

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
    """Load the model a resolved spec names with its backend. Slow: call once per process.

    Automatic settings are chosen here, for this machine: `encoder.spec` holds the values used and
    `encoder.chosen` the automatic ones; the spec given (with "auto") is what the fingerprint records.
    """
    from encoders.auto import chosen_values, resolve_for_device
    from encoders.device import configure_cpu_streams, configure_gpus

    start = time.perf_counter()
    configure_gpus()
    streams = configure_cpu_streams()
    concrete = resolve_for_device(spec)
    encoder = get_backend(spec.backend).load(concrete)
    encoder.chosen = chosen_values(spec, concrete)
    encoder.device_streams = streams
    if encoder.width != spec.dim:
        raise EncoderConfigError(f"model {spec.model} gives {encoder.width}-d vectors, expected {spec.dim}")
    if warm_up:
        encoder.warm_up()
    encoder.build_seconds = time.perf_counter() - start
    logger.info("built %s encoder for %s in %.1f s", spec.backend, spec.model, encoder.build_seconds)
    return encoder
