"""Tokenizing with a TF Hub BERT preprocessing SavedModel (`--hub_preprocessor`), as the Hub recipe does.

Hub encoders such as bert_zh_L-12_H-768_A-12 are documented as `encoder(preprocessor(texts))`.
The preprocessor's tokenizer is TF Text's BertTokenizer, which is not the original BERT one we
follow otherwise (lower_case=True case-folds with NFKC: full-width `ＡＢＣ１２３` becomes
`abc123`), so matching the recipe's vectors means taking the token ids from the module itself.
We use its `tokenize` part only; packing ([CLS] ids [SEP], first tokens kept, padding) stays the
encoder's, which is what the module's `bert_pack_inputs` does for one segment (checked in
tests/encoders/test_hub_preprocessing.py), so length limits, token counts, truncation flags,
chunk mode and our batching work unchanged. Loading the module needs `tensorflow-text`.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from encoders.errors import EncoderConfigError
from encoders.model_source import resolve_hub_handle
from encoders.tokenization import Tokenizer, TokenRuns

TENSORFLOW_TEXT = "tensorflow_text"
EXTRA = "hub-preprocessing"  # setup.py's extra that installs tensorflow-text
PARTS = ("tokenize", "bert_pack_inputs")  # what we call on a preprocessor: attributes of its root object


def check_tensorflow_text(module: str = TENSORFLOW_TEXT) -> None:
    """Raise EncoderConfigError naming the extra to install when tensorflow-text is missing (nothing imported)."""
    if importlib.util.find_spec(module) is None:
        raise EncoderConfigError(
            f"--hub_preprocessor needs tensorflow-text, which is not installed: pip install '.[{EXTRA}]' "
            "(the version constraints.txt pins)"
        )


def check_location(location: str) -> None:
    """A --hub_preprocessor value must be a URL, a remote path or an existing local directory."""
    if "://" not in location and not Path(location).is_dir():
        raise EncoderConfigError(f"--hub_preprocessor {location}: no such directory (give a TF Hub URL, "
                                 "a local directory or a gs:// path)")


@functools.lru_cache(maxsize=2)
def load_preprocessor(location: str):
    """The loaded preprocessing SavedModel; once per process and location (encoders built in a process share it)."""
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - registers the ops the module's graph uses

    try:
        module = hub.load(location)
    except Exception as exc:  # noqa: BLE001 - any load failure means the module is unusable
        raise EncoderConfigError(f"cannot load TF Hub preprocessor {location}: {exc}") from exc
    missing = [part for part in PARTS if not hasattr(module, part)] + ([] if callable(module) else ["__call__"])
    if missing:
        raise not_a_preprocessor(location, missing)
    return module


def not_a_preprocessor(location: str, missing: Sequence[str]) -> EncoderConfigError:
    """The one message for a --hub_preprocessor that lacks what we call, whether found in its files or once loaded."""
    return EncoderConfigError(f"--hub_preprocessor {location} is not a TF Hub BERT preprocessing model "
                              f"(it has no {' and '.join(missing)})")


@dataclass(frozen=True)
class PreprocessorFacts:
    """What a preprocessor's files say about it (None where they do not say)."""

    seq_length: int | None  # what calling it on strings packs to: the recipe's length
    vocab_size: int | None  # lines of its vocab.txt asset (WordPiece preprocessors)


def read_preprocessor(location: str) -> PreprocessorFacts:
    """Check that it is a preprocessor and read its length and vocabulary size, running no TensorFlow op.

    Reads saved_model.pb and the assets only. Loading or calling the module would fix TensorFlow's
    thread pools and GPU settings before the encoder chooses them (`encoders.device`), and this runs
    before the encoder is built: on the launcher when the model is local, else in a worker's first step.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf.saved_model_pb2 import SavedModel

    directory = resolve_hub_handle(location) if location.startswith(("http://", "https://")) else location
    try:
        with tf.io.gfile.GFile(f"{directory}/saved_model.pb", "rb") as f:
            saved = SavedModel.FromString(f.read())
    except Exception as exc:  # noqa: BLE001 - missing or unreadable: unusable either way
        raise EncoderConfigError(f"no TF Hub SavedModel (saved_model.pb) at --hub_preprocessor {location}") from exc
    graph = saved.meta_graphs[0]
    # The root object's attributes, as hub.load would restore them (e.g. an encoder module has neither part).
    nodes = graph.object_graph_def.nodes  # nodes[0] is the root; a TF1 Hub module has no object graph
    attributes = {child.local_name for child in nodes[0].children} if nodes else set()
    missing = [part for part in PARTS if part not in attributes]
    if missing:
        raise not_a_preprocessor(location, missing)
    serving = graph.signature_def.get("serving_default")
    lengths = {dims[1].size for output in (serving.outputs.values() if serving else ())
               if len(dims := output.tensor_shape.dim) == 2 and dims[1].size > 0}
    vocab_size = None
    for asset in graph.asset_file_def:
        if asset.filename.endswith("vocab.txt"):
            with tf.io.gfile.GFile(f"{directory}/assets/{asset.filename}", "r") as f:
                vocab_size = sum(1 for _ in f)
    return PreprocessorFacts(lengths.pop() if len(lengths) == 1 else None, vocab_size)


class HubPreprocessorTokenizer(Tokenizer):
    """Token ids from a Hub preprocessor's `tokenize` (words split into wordpieces, flattened per text)."""

    def __init__(self, location: str) -> None:
        import tensorflow as tf

        self._module = load_preprocessor(location)
        # Packing nothing at length 3 gives [CLS] [SEP] [PAD]: the special ids through the documented interface.
        empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32), tf.constant([0], tf.int64))
        packed = self._module.bert_pack_inputs([empty], seq_length=tf.constant(3))["input_word_ids"]
        self.cls_id, self.sep_id, self.pad_id = (int(i) for i in packed[0])

    def token_runs(self, texts: Sequence[str]) -> TokenRuns:
        import tensorflow as tf

        if not texts:
            return TokenRuns.from_lists([])
        tokens = self._module.tokenize(tf.constant(list(texts), dtype=tf.string))
        if tokens.ragged_rank > 1:  # [batch, words, wordpieces] (WordPiece); SentencePiece gives [batch, tokens]
            tokens = tokens.merge_dims(1, -1)
        return TokenRuns.from_lengths(tokens.flat_values.numpy(), tokens.row_lengths().numpy())
