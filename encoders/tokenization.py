"""Tokenization with Hugging Face `tokenizers`, for both backends: a model's own tokenizer.json, or BERT WordPiece.

A model directory with a tokenizer.json (WordPiece, Unigram/SentencePiece or BPE alike) is tokenized by it,
as sentence-transformers does, framed by the special tokens its post-processor adds (`JsonTokenizer`). A
WordPiece tokenizer is built from a vocab file and the lowercasing flag, which both a transformers model
directory and a Hub BERT module carry, so the two backends tokenize identically; CJK characters become one
token each, as in bert-base-chinese. `Tokenizer` is what the encoder needs of any tokenizer (also
`encoders.hub_preprocessing`'s).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import BertWordPieceTokenizer
from tokenizers import Tokenizer as HfTokenizer

from encoders.errors import EncoderConfigError

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]")


@dataclass
class Tokenized:
    """Token ids per text, with [CLS]/[SEP] added and cut to max_seq_length."""

    token_ids: list[list[int]]
    n_tokens: np.ndarray  # int32, len(token_ids[i])
    truncated: np.ndarray  # bool, the text had more tokens than max_seq_length


@dataclass
class Windowed:
    """Texts cut into model-sized windows: every window's token ids and the text it came from."""

    token_ids: list[list[int]]  # per window, with [CLS]/[SEP]
    owner: np.ndarray  # int64 [windows], index of the window's text
    n_tokens: np.ndarray  # int32 [texts], all tokens of the text plus [CLS]/[SEP]
    n_chunks: np.ndarray  # int32 [texts], windows per text


@dataclass
class TokenRuns:
    """Token ids of many texts without [CLS]/[SEP]: one flat array and where each text's run starts.

    Columnar, so truncating, windowing and padding are array operations, not per-text lists.
    """

    flat: np.ndarray  # int32 [all tokens]
    starts: np.ndarray  # int64 [texts], offset of each text's first token in flat
    lengths: np.ndarray  # int64 [texts], tokens of each text

    @classmethod
    def from_lengths(cls, flat: np.ndarray, lengths: np.ndarray) -> TokenRuns:
        """Runs laid end to end in flat, lengths[i] tokens for text i."""
        lengths = np.asarray(lengths, dtype=np.int64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return cls(np.asarray(flat, dtype=np.int32), starts, lengths)

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]]) -> TokenRuns:
        """Runs of per-text id lists."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return cls.from_lengths(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32,
                                            count=int(lengths.sum())), lengths)


def cut_windows(lengths: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, ...]:
    """Windows of at most size tokens, stride apart, covering each text of the given token counts.

    Returns (owner text, start within the text, body length) per window, and windows per text.
    A text that fits (or is empty) is one window.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = 1 + np.maximum(-(-(lengths - size) // stride), 0)
    owner = np.repeat(np.arange(len(lengths)), counts)
    first = np.cumsum(counts) - counts
    starts = (np.arange(int(counts.sum())) - first[owner]) * stride
    return owner, starts, np.minimum(size, lengths[owner] - starts), counts.astype(np.int32)


class Tokenizer(abc.ABC):
    """What the encoder needs of a tokenizer: token runs without specials, and the special ids.

    Packing ([CLS] body [SEP], first tokens kept, then padding) is the encoder's, shared by all tokenizers.
    """

    cls_id: int
    sep_id: int
    pad_id: int
    vocab_size: int | None  # ids run below this (None when the tokenizer cannot say)

    @abc.abstractmethod
    def token_runs(self, texts: Sequence[str]) -> TokenRuns:
        """Token ids of each text, no special tokens, no truncation. Thread-safe."""

    def tokenize(self, texts: Sequence[str], max_seq_length: int) -> Tokenized:
        """Tokenize a batch as lists; texts longer than max_seq_length keep their first tokens.

        The per-text list form of what the encoder does with arrays (`token_runs`), for inspection and tests.
        """
        runs = self.token_runs(texts)
        body = np.minimum(runs.lengths, max_seq_length - 2)
        return Tokenized(self._with_specials(runs.flat, runs.starts, body), (body + 2).astype(np.int32),
                         runs.lengths > max_seq_length - 2)

    def windows(self, texts: Sequence[str], max_seq_length: int, overlap: int) -> Windowed:
        """Cut each text into windows of max_seq_length tokens ([CLS]/[SEP] included) sharing overlap tokens.

        A text that fits is one window, identical to what `tokenize` gives it. List form of `cut_windows`.
        """
        runs = self.token_runs(texts)
        size = max_seq_length - 2
        owner, starts, lengths, n_chunks = cut_windows(runs.lengths, size, size - overlap)
        token_ids = self._with_specials(runs.flat, runs.starts[owner] + starts, lengths)
        return Windowed(token_ids, owner, (runs.lengths + 2).astype(np.int32), n_chunks)

    def _with_specials(self, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        return [[self.cls_id, *flat[start:start + n].tolist(), self.sep_id]
                for start, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


class WordPieceTokenizer(Tokenizer):
    """Fast BERT tokenizer; thread-safe for encode calls."""

    def __init__(
        self,
        vocab_path: str,
        lowercase: bool,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
    ) -> None:
        vocab: dict[str, int] = {}
        with open(vocab_path, encoding="utf-8") as f:
            for index, line in enumerate(f):
                token = line.rstrip("\n\r")
                if token:
                    vocab[token] = index  # a repeated token keeps its last index, as transformers does
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise EncoderConfigError(
                f"vocab file {vocab_path} lacks BERT special tokens {', '.join(missing)}"
            )
        self._tokenizer = BertWordPieceTokenizer(
            vocab,
            lowercase=lowercase,
            strip_accents=strip_accents,
            handle_chinese_chars=handle_chinese_chars,
            clean_text=True,
        )
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.lowercase = lowercase
        self.vocab_size = max(vocab.values()) + 1  # ids run up to this; the model needs as many rows
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab["[PAD]"]

    def token_runs(self, texts: Sequence[str]) -> TokenRuns:
        """Tokenize a batch with `tokenizers`' own threads; no special tokens, no truncation."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return TokenRuns.from_lists([encoding.ids for encoding in encodings])

    def tokens(self, text: str) -> list[str]:
        """The WordPiece strings of one text, without special tokens (for inspection)."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


class JsonTokenizer(Tokenizer):
    """A model's own tokenizer.json; thread-safe for encode calls.

    The frame (`cls_id` body `sep_id`: [CLS]/[SEP] for BERT, <s>/</s> for XLM-RoBERTa) is what its
    post-processor adds around one text; the encoder packs, truncates and windows with it. Truncation and
    padding saved in the file are turned off: the encoder cuts to --max_seq_length itself.
    """

    def __init__(self, path: str, pad_id: int | None = None) -> None:
        try:
            self._tokenizer = HfTokenizer.from_file(path)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a malformed file
            raise EncoderConfigError(f"cannot read tokenizer {path}: {' '.join(str(exc).split())}") from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        frame = self._tokenizer.encode("", add_special_tokens=True).ids
        if len(frame) != 2 or self._tokenizer.num_special_tokens_to_add(False) != 2:
            raise EncoderConfigError(
                f"tokenizer {path} adds {len(frame)} special tokens around a text; supported: one before and one "
                "after (BERT's [CLS] ... [SEP], XLM-RoBERTa's <s> ... </s>)"
            )
        self.cls_id, self.sep_id = frame
        if pad_id is None:
            pad_id = next((i for t in ("[PAD]", "<pad>") if (i := self._tokenizer.token_to_id(t)) is not None), None)
        if pad_id is None:
            raise EncoderConfigError(f"tokenizer {path} has no padding token ([PAD] or <pad>) and config.json no "
                                     "pad_token_id")
        self.pad_id = pad_id
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_runs(self, texts: Sequence[str]) -> TokenRuns:
        """Tokenize a batch with `tokenizers`' own threads; no special tokens, no truncation."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return TokenRuns.from_lists([encoding.ids for encoding in encodings])

    def tokens(self, text: str) -> list[str]:
        """The token strings of one text, without special tokens (for inspection)."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens
