"""Write a TF Hub-format BERT SavedModel from anything the transformers backend loads.

    python -m encoders.export_hub --model SRC --output DIR [--weights FILE] [--signature dict|list]

The module follows the Reusable SavedModel conventions `hub.KerasLayer` expects
(`__call__`, `variables`, `trainable_variables`) plus the BERT extras Hub encoders carry
(`vocab_file` asset, `do_lower_case`). The model directory's sentence-transformers
configs are copied beside it, so pooling and length defaults travel with the module.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from encoders.errors import EncoderConfigError

logger = logging.getLogger(__name__)

_ST_CONFIG_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def export_hub_module(model: str, output: str, weights: str | None = None, signature: str = "dict") -> None:
    """Export `model` (a --model value) as a Hub BERT module in directory `output`."""
    import tensorflow as tf

    from encoders.bert_weights import BertConfig
    from encoders.tokenization import WordPieceTokenizer
    from encoders.transformers_backend import load_bert

    if signature not in ("dict", "list"):
        raise EncoderConfigError(f"unknown signature {signature!r}; choose dict or list")
    loaded = load_bert(model, weights)
    bert = loaded.main_layer
    spec = tf.TensorSpec([None, None], tf.int32)

    def run(input_word_ids, input_mask, input_type_ids):
        outputs = bert(
            input_ids=input_word_ids,
            attention_mask=input_mask,
            token_type_ids=input_type_ids,
            training=False,
        )
        return outputs.pooler_output, outputs.last_hidden_state

    if signature == "dict":
        names = ("input_word_ids", "input_mask", "input_type_ids")

        @tf.function(input_signature=[{name: spec for name in names}])
        def call(inputs):
            pooled, sequence = run(*(inputs[name] for name in names))
            return {"pooled_output": pooled, "sequence_output": sequence, "default": pooled}

    else:

        @tf.function(input_signature=[[spec, spec, spec]])
        def call(inputs):
            pooled, sequence = run(*inputs)
            return [pooled, sequence]

    module = tf.train.Checkpoint()
    module.bert = bert
    module.variables = list(bert.variables)
    module.trainable_variables = list(bert.trainable_variables)
    module.regularization_losses = []
    if isinstance(loaded.tokenizer, WordPieceTokenizer):  # what Hub BERT modules carry
        module.vocab_file = tf.saved_model.Asset(str(Path(loaded.model_dir) / "vocab.txt"))
        module.do_lower_case = tf.Variable(loaded.tokenizer.lowercase, trainable=False, name="do_lower_case")
    else:  # the model's own tokenizer.json, and the padding id its config names
        module.tokenizer_file = tf.saved_model.Asset(str(Path(loaded.model_dir) / "tokenizer.json"))
        module.pad_id = tf.Variable(loaded.tokenizer.pad_id, trainable=False, name="pad_id")
    # Where the position table starts for a text's first token (RoBERTa: past the padding row).
    offset = BertConfig.from_model_dir(loaded.model_dir).position_offset
    module.position_offset = tf.Variable(offset, trainable=False, name="position_offset")
    module.__call__ = call
    tf.saved_model.save(module, output)
    _copy_sentence_transformers_config(Path(loaded.model_dir), Path(output))
    logger.info("wrote TF Hub BERT module (%s signature) to %s", signature, output)


def _copy_sentence_transformers_config(source: Path, target: Path) -> None:
    for name in _ST_CONFIG_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    for pooling_config in source.glob("*_Pooling/config.json"):
        (target / pooling_config.parent.name).mkdir(exist_ok=True)
        shutil.copy(pooling_config, target / pooling_config.parent.name / "config.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoders.export_hub", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model name, local or gs:// directory (as --model of the job)")
    parser.add_argument("--output", required=True, help="directory to write the SavedModel to")
    parser.add_argument("--weights", help="Keras HDF5 weights file to load by layer name")
    parser.add_argument("--signature", default="dict", choices=("dict", "list"),
                        help="dict (newer Hub BERT encoders) or list (older ones)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        export_hub_module(args.model, args.output, args.weights, args.signature)
    except EncoderConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
