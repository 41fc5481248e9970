"""BERT through TensorFlow Hub: `hub.KerasLayer` over a Hub BERT SavedModel.

Serves both signature families: the newer dict one (`input_word_ids`, `input_mask`,
`input_type_ids` -> dict with `pooled_output`, `sequence_output`) and the older list one
(`[input_word_ids, input_mask, segment_ids]` -> `[pooled_output, sequence_output]`). The
tokenizer comes from the module's own `vocab_file` asset and `do_lower_case` flag.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from encoders.base import Encoder
from encoders.errors import EncoderConfigError
from encoders.spec import EncoderSpec
from encoders.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)

DICT_SIGNATURE = "dict"
LIST_SIGNATURE = "list"


class HubEncoder(Encoder):
    """Encoder over a TF Hub BERT module, loaded once when constructed."""

    def __init__(self, spec: EncoderSpec) -> None:
        import tensorflow_hub as hub

        try:
            self._layer = hub.KerasLayer(spec.model, trainable=False)
        except Exception as exc:  # noqa: BLE001 - any load failure means the module is unusable
            raise EncoderConfigError(f"cannot load TF Hub module {spec.model}: {exc}") from exc
        module = self._layer.resolved_object
        super().__init__(spec, _module_tokenizer(module, spec.model))
        self._family = _signature_family(module)
        probe = tf.constant([[self.tokenizer.cls_id, self.tokenizer.sep_id]], dtype=tf.int32)
        sequence_output, _ = self._forward(probe, tf.ones_like(probe))
        self._dim = int(sequence_output.shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def signature_family(self) -> str:
        """"dict" or "list": which Hub BERT calling convention the module uses."""
        return self._family

    def _forward(self, input_ids: tf.Tensor, input_mask: tf.Tensor):
        type_ids = tf.zeros_like(input_ids)
        if self._family == DICT_SIGNATURE:
            outputs = self._layer(
                {"input_word_ids": input_ids, "input_mask": input_mask, "input_type_ids": type_ids}
            )
            return outputs["sequence_output"], outputs["pooled_output"]
        pooled_output, sequence_output = self._layer([input_ids, input_mask, type_ids])
        return sequence_output, pooled_output


def _module_tokenizer(module, handle: str) -> WordPieceTokenizer:
    vocab_file = getattr(module, "vocab_file", None)
    do_lower_case = getattr(module, "do_lower_case", None)
    if vocab_file is None or do_lower_case is None:
        raise EncoderConfigError(
            f"TF Hub module {handle} has no vocab_file/do_lower_case; it is not a BERT encoder module"
        )
    vocab_path = vocab_file.asset_path.numpy().decode("utf-8")
    return WordPieceTokenizer(vocab_path, lowercase=bool(do_lower_case.numpy()))


def _signature_family(module) -> str:
    """Read the calling convention off the module's traced __call__ input signature."""
    call = module.__call__ if callable(module) else None
    for concrete in getattr(call, "concrete_functions", None) or []:
        args = concrete.structured_input_signature[0]
        if args and isinstance(args[0], dict):
            return DICT_SIGNATURE
        if args and isinstance(args[0], (list, tuple)):
            return LIST_SIGNATURE
    raise EncoderConfigError(
        "cannot tell the TF Hub module's input signature: expected a dict "
        "(input_word_ids/input_mask/input_type_ids) or a list of three tensors"
    )
