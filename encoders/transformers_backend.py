"""The `transformers` backend: a Hugging Face BERT, RoBERTa or XLM-RoBERTa model directory, run by our own forward pass.

The tokenizer is the directory's tokenizer.json when it has one (as sentence-transformers uses it), else
BERT WordPiece from its vocab.txt (`encoders.tokenization`).

Weights come from, in order: a Keras weights file given with --weights (loaded by layer
name into transformers' TFBertMainLayer, as a model built `Input -> TFBertMainLayer -> Model`
saves them), a PyTorch `model.safetensors` (read as NumPy: no torch, no transformers), or
`tf_model.h5` (through transformers' TFBertModel). The forward pass is `encoders.bert_graph`,
which gives transformers' vectors faster on a CPU; transformers' own layer stays the reference
in the tests and what `encoders.export_hub` writes. TensorFlow and transformers are imported only
when a model is loaded, so checking settings stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from encoders.base import Encoder
from encoders.bert_weights import BertConfig, BertWeights, from_keras_layer, read_safetensors
from encoders.errors import EncoderConfigError
from encoders.model_source import ModelSource, local_file, local_model_dir, parse_model_source, read_model_json
from encoders.registry import Backend, ModelShape, register_backend
from encoders.spec import EncoderSpec, is_local_file
from encoders.tokenization import JsonTokenizer, Tokenizer, WordPieceTokenizer

if TYPE_CHECKING:
    import tensorflow as tf

WEIGHT_FILES = ("tf_model.h5", "model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # in the order they are chosen


def check(source: ModelSource, spec: EncoderSpec) -> None:
    """What this backend cannot load, found without reading the model."""
    if source.kind == "url":
        raise EncoderConfigError(
            f"--backend transformers cannot load the URL {source.location}; use --backend hub for TF Hub handles"
        )
    if spec.hub_preprocessor is not None:
        raise EncoderConfigError("--hub_preprocessor applies only to --backend hub (it feeds a TF Hub encoder)")
    if spec.weights is not None and "://" not in spec.weights and not is_local_file(spec.weights):
        raise EncoderConfigError(f"weights file not found: {spec.weights}")


def inspect(source: ModelSource, spec: EncoderSpec) -> ModelShape:
    """Shape from config.json; a local directory must also hold what a worker will need."""
    config = read_model_json(source, "config.json")
    if config is None:
        raise EncoderConfigError(f"no config.json in model {source.location}")
    bert = BertConfig.from_json(config, source.location)  # a model the forward pass cannot run fails here
    if source.is_local:  # a half-copied model fails at launch, not on every worker
        directory = Path(source.location)
        if not any((directory / f).is_file() for f in TOKENIZER_FILES):
            raise EncoderConfigError(f"no tokenizer in model directory {directory}: expected tokenizer.json or "
                                     "vocab.txt")
        if spec.weights is None and not any((directory / f).is_file() for f in WEIGHT_FILES):
            raise EncoderConfigError(
                f"no weights in model directory {directory}: expected tf_model.h5 or model.safetensors "
                "(or pass --weights)"
            )
    return ModelShape(bert.max_tokens, bert.hidden_size, intermediate=bert.intermediate_size,
                      heads=bert.num_attention_heads)


@dataclass
class LoadedBert:
    """transformers' BERT main layer with weights, and what is needed to tokenize for it."""

    main_layer: object  # a tf_keras TFBertMainLayer
    model_dir: str
    tokenizer: Tokenizer


def load_bert(model: str, weights: str | None = None) -> LoadedBert:
    """transformers' own main layer (TFBertMainLayer, or (XLM-)RoBERTa's) for a --model value (and --weights
    file), float32.

    The reference implementation: `encoders.export_hub` writes Hub modules from it, and the
    tests hold our forward pass to it.
    """
    from transformers import BertConfig as TransformersBertConfig

    model_dir = local_model_dir(parse_model_source(model))
    ours = BertConfig.from_model_dir(model_dir)
    tokenizer = _checked_tokenizer(model_dir, ours)
    if ours.model_type != "bert":
        if weights is not None or not (Path(model_dir) / "model.safetensors").is_file():
            raise EncoderConfigError(f"model {model} is a {ours.model_type!r} model: its weights load from "
                                     "model.safetensors, which the directory lacks")
        return LoadedBert(_load_roberta(ours.model_type, model_dir), model_dir, tokenizer)
    config = TransformersBertConfig.from_pretrained(model_dir)
    if weights is not None:
        main_layer = _load_keras_weights(config, local_file(weights))
    else:
        main_layer = _load_pretrained(config, model_dir)
    return LoadedBert(main_layer, model_dir, tokenizer)


def load_weights(model: str, weights: str | None = None) -> tuple[BertWeights, Tokenizer]:
    """The weights and tokenizer of a --model value: safetensors read directly, Keras files via transformers."""
    model_dir = local_model_dir(parse_model_source(model))
    config = BertConfig.from_model_dir(model_dir)
    safetensors = Path(model_dir) / "model.safetensors"
    if weights is None and safetensors.is_file():
        return read_safetensors(str(safetensors), config), _checked_tokenizer(model_dir, config)
    if config.model_type != "bert":  # transformers' TF BERT classes below would misread its weights
        raise EncoderConfigError(f"model {model} is a {config.model_type!r} model: its weights load from "
                                 "model.safetensors, which the directory lacks")
    loaded = load_bert(model, weights)
    return from_keras_layer(loaded.main_layer, config), loaded.tokenizer


def _checked_tokenizer(model_dir: str, config: BertConfig) -> Tokenizer:
    tokenizer = tokenizer_from_model_dir(model_dir, config.pad_token_id)
    if tokenizer.vocab_size > config.vocab_size:
        raise EncoderConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} embeddings"
        )
    return tokenizer


def tokenizer_from_model_dir(model_dir: str, pad_id: int | None = None) -> Tokenizer:
    """The tokenizer a transformers model directory describes: its tokenizer.json, else vocab.txt (+
    tokenizer_config.json). pad_id: config.json's pad_token_id, which a tokenizer.json may not name."""
    if (Path(model_dir) / "tokenizer.json").is_file():
        return JsonTokenizer(str(Path(model_dir) / "tokenizer.json"), pad_id)
    vocab = Path(model_dir) / "vocab.txt"
    if not vocab.is_file():
        raise EncoderConfigError(f"no tokenizer in model directory {model_dir}: expected tokenizer.json or vocab.txt")
    settings = {}
    config_path = Path(model_dir) / "tokenizer_config.json"
    if config_path.is_file():
        settings = json.loads(config_path.read_text(encoding="utf-8"))
    return WordPieceTokenizer(
        str(vocab),
        lowercase=bool(settings.get("do_lower_case", True)),
        strip_accents=settings.get("strip_accents"),
        handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
    )


def _load_roberta(model_type: str, model_dir: str) -> tf.keras.layers.Layer:
    """transformers' TF (XLM-)RoBERTa main layer with the directory's PyTorch weights (its own name mapping)."""
    from safetensors.numpy import load_file
    from transformers import AutoConfig, TFRobertaModel, TFXLMRobertaModel
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = (TFXLMRobertaModel if model_type == "xlm-roberta" else TFRobertaModel)(
        AutoConfig.from_pretrained(model_dir))
    path = str(Path(model_dir) / "model.safetensors")
    _, info = load_pytorch_state_dict_in_tf2_model(model, load_file(path), output_loading_info=True,
                                                   skip_logger_warnings=True)
    if info["missing_keys"]:
        raise EncoderConfigError(f"{path} lacks weights for {len(info['missing_keys'])} variables, "
                                 f"e.g. {info['missing_keys'][0]}")
    return model.roberta


def _load_pretrained(config, model_dir: str) -> tf.keras.layers.Layer:
    from transformers import TFBertModel

    directory = Path(model_dir)
    if (directory / "tf_model.h5").is_file():
        return TFBertModel.from_pretrained(model_dir).bert
    if (directory / "model.safetensors").is_file():
        return _load_safetensors(config, str(directory / "model.safetensors"))
    raise EncoderConfigError(
        f"no weights in {model_dir}: expected tf_model.h5 or model.safetensors (or pass --weights)"
    )


def _load_safetensors(config, path: str) -> tf.keras.layers.Layer:
    # TFBertModel.from_pretrained cannot read PyTorch safetensors without torch (docs/dependencies.md);
    # the state dict is plain NumPy, so hand it to transformers' own PT->TF name mapping.
    from safetensors.numpy import load_file
    from transformers import TFBertModel
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = TFBertModel(config)
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, load_file(path), output_loading_info=True, skip_logger_warnings=True
    )
    if info["missing_keys"]:
        raise EncoderConfigError(
            f"{path} lacks weights for {len(info['missing_keys'])} variables, e.g. {info['missing_keys'][0]}"
        )
    return model.bert


def _load_keras_weights(config, path: str) -> tf.keras.layers.Layer:
    import tf_keras
    from transformers import TFBertMainLayer

    name = bert_layer_name_in_h5(path)
    main_layer = TFBertMainLayer(config, name=name)
    input_ids = tf_keras.Input(shape=(None,), dtype="int32", name="input_ids")
    input_mask = tf_keras.Input(shape=(None,), dtype="int32", name="attention_mask")
    outputs = main_layer(input_ids=input_ids, attention_mask=input_mask)
    holder = tf_keras.Model([input_ids, input_mask], [outputs[0], outputs[1]])
    try:
        holder.load_weights(path, by_name=True)
    except ValueError as exc:
        raise EncoderConfigError(f"weights in {path} do not fit this model's config: {exc}") from exc
    return main_layer


def bert_layer_name_in_h5(path: str) -> str:
    """Name of the layer holding BERT's weights in a Keras HDF5 weights file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise EncoderConfigError(
            f"--weights {path} is not a Keras HDF5 weights file (save with model.save_weights('x.h5'))"
        ) from exc
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        for raw in group.attrs.get("layer_names", []):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            weight_names = [
                w.decode() if isinstance(w, bytes) else str(w)
                for w in group[name].attrs.get("weight_names", [])
            ]
            if any("word_embeddings" in w for w in weight_names):
                return name
    raise EncoderConfigError(f"no BERT layer (with word_embeddings) in weights file {path}")


class TransformersEncoder(Encoder):
    """Encoder over a transformers BERT model directory, run by `encoders.bert_graph.BertGraph`."""

    def __init__(self, spec: EncoderSpec) -> None:
        from encoders.bert_graph import BertGraph

        weights, tokenizer = load_weights(spec.model, spec.weights)
        super().__init__(spec, tokenizer)
        self._bert = BertGraph(weights, spec.precision)
        self._dim = weights.config.hidden_size

    @property
    def dim(self) -> int:
        return self._dim

    def _forward(self, input_ids: tf.Tensor, input_mask: tf.Tensor):
        return self._bert(input_ids, input_mask)


register_backend(Backend("transformers", check=check, inspect=inspect, load=TransformersEncoder))
