"""BERT weights as plain NumPy arrays under one naming, whichever file or framework they came from.

Two sources name the same weights differently: a PyTorch state dict (`model.safetensors`:
`encoder.layer.0.attention.self.query.weight`, linear weights [out, in]) and a transformers
TensorFlow layer (`.../encoder/layer_._0/attention/self/query/kernel:0`, kernels [in, out]).
Both become `BertWeights`, the input of `encoders.bert_graph`. Reading a safetensors file needs
neither TensorFlow nor transformers, which keeps the default model's load short.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.errors import EncoderConfigError

# Activations our forward pass implements, by the names transformers' configs use.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish")
# Architectures the forward pass runs, by config.json's model_type: BERT's layers, and RoBERTa's, which differ
# only in counting positions from padding_idx + 1 and in having one token type.
MODEL_TYPES = ("bert", "roberta", "xlm-roberta")
_COUNTS_FROM_PADDING = ("roberta", "xlm-roberta")


@dataclass(frozen=True)
class BertConfig:
    """The part of a transformers BERT config.json the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    model_type: str = "bert"
    pad_token_id: int | None = None

    @property
    def position_offset(self) -> int:
        """The position id of a text's first token: 0 for BERT, padding_idx + 1 for (XLM-)RoBERTa, as
        transformers' create_position_ids_from_input_ids counts them (right padding: real tokens run on)."""
        return (self.pad_token_id or 0) + 1 if self.model_type in _COUNTS_FROM_PADDING else 0

    @property
    def max_tokens(self) -> int:
        """The longest input, special tokens included, the position table holds (512 for XLM-R's 514)."""
        return self.max_position_embeddings - self.position_offset

    @classmethod
    def from_json(cls, config: dict, where: str) -> BertConfig:
        """Read and check a config.json mapping; a model our forward pass cannot run is a config error."""
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise EncoderConfigError(
                f"model {where} uses position_embedding_type {config['position_embedding_type']!r}; "
                "only 'absolute' (BERT's own) is supported"
            )
        act = config.get("hidden_act", "gelu")
        if act not in ACTIVATIONS:
            raise EncoderConfigError(
                f"model {where} uses hidden_act {act!r}; supported: {', '.join(ACTIVATIONS)}"
            )
        model_type = config.get("model_type", "bert")
        if model_type not in MODEL_TYPES:
            raise EncoderConfigError(
                f"model {where} is a {model_type!r} model; supported: {', '.join(MODEL_TYPES)}"
            )
        if model_type in _COUNTS_FROM_PADDING and config.get("pad_token_id") is None:
            raise EncoderConfigError(f"model {where} is a {model_type!r} model without pad_token_id in config.json")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise EncoderConfigError(f"model {where} is a decoder; only BERT encoders are supported")
        return cls(
            vocab_size=int(config.get("vocab_size", 30522)),
            hidden_size=int(config.get("hidden_size", 768)),
            num_hidden_layers=int(config.get("num_hidden_layers", 12)),
            num_attention_heads=int(config.get("num_attention_heads", 12)),
            intermediate_size=int(config.get("intermediate_size", 3072)),
            max_position_embeddings=int(config.get("max_position_embeddings", 512)),
            hidden_act=act,
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            model_type=model_type,
            pad_token_id=None if config.get("pad_token_id") is None else int(config["pad_token_id"]),
        )

    @classmethod
    def from_model_dir(cls, model_dir: str) -> BertConfig:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise EncoderConfigError(f"no config.json in model directory {model_dir}")
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), model_dir)


@dataclass
class BertWeights:
    """Every weight of a BERT encoder (+ pooler), float32, kernels as [in, out].

    Names follow the PyTorch state dict without its `bert.` prefix, e.g.
    `encoder.layer.3.intermediate.dense.weight`; LayerNorm scales are `.weight`, offsets `.bias`.
    """

    config: BertConfig
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise EncoderConfigError(f"the model's weights lack {name}") from None

    def layer(self, index: int, name: str) -> np.ndarray:
        return self[f"encoder.layer.{index}.{name}"]


def from_state_dict(state: dict[str, np.ndarray], config: BertConfig) -> BertWeights:
    """A PyTorch-named state dict (e.g. read from model.safetensors) as BertWeights."""
    arrays = {}
    for name, value in state.items():
        name = name.removeprefix("bert.").removeprefix("roberta.")
        if not name.startswith(("embeddings.", "encoder.", "pooler.")) or name == "embeddings.position_ids":
            continue  # pretraining heads (cls.*) and buffers are not part of the encoder
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 2 and (name.endswith("dense.weight") or _is_attention_projection(name)):
            value = value.T  # torch.nn.Linear stores [out, in]
        arrays[name] = value
    return _checked(BertWeights(config, arrays))


def read_safetensors(path: str, config: BertConfig) -> BertWeights:
    """Weights from a PyTorch-layout model.safetensors, without torch, TensorFlow or transformers."""
    from safetensors.numpy import load_file

    try:
        state = load_file(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise EncoderConfigError(f"cannot read weights file {path}: {exc}") from exc
    return from_state_dict(state, config)


_TF_LAYER = re.compile(r"layer_\._(\d+)")


def from_keras_layer(main_layer, config: BertConfig) -> BertWeights:
    """The weights of a transformers TFBertMainLayer (as loaded from tf_model.h5 or a Keras weights file)."""
    arrays = {}
    for variable in main_layer.weights:
        path = variable.name.split(":")[0].split("/")
        start = next((i for i, part in enumerate(path) if part in ("embeddings", "encoder", "pooler")), None)
        if start is None:
            continue
        parts = path[start:]
        leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "embeddings": "weight"}.get(parts[-1],
                                                                                                   parts[-1])
        name = ".".join(parts[:-1] + [leaf])
        arrays[_TF_LAYER.sub(r"layer.\1", name)] = np.asarray(variable.numpy(), dtype=np.float32)
    return _checked(BertWeights(config, arrays))


def _is_attention_projection(name: str) -> bool:
    return name.endswith((".query.weight", ".key.weight", ".value.weight"))


def _checked(weights: BertWeights) -> BertWeights:
    """Every weight present with the config's shape: a mismatched file fails at load, not mid-job."""
    c = weights.config
    h, i = c.hidden_size, c.intermediate_size
    expected = {
        "embeddings.word_embeddings.weight": (c.vocab_size, h),
        "embeddings.position_embeddings.weight": (c.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": None,
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(c.num_hidden_layers):
        prefix = f"encoder.layer.{n}."
        for part in ("query", "key", "value"):
            expected[f"{prefix}attention.self.{part}.weight"] = (h, h)
            expected[f"{prefix}attention.self.{part}.bias"] = (h,)
        expected |= {
            f"{prefix}attention.output.dense.weight": (h, h), f"{prefix}attention.output.dense.bias": (h,),
            f"{prefix}attention.output.LayerNorm.weight": (h,), f"{prefix}attention.output.LayerNorm.bias": (h,),
            f"{prefix}intermediate.dense.weight": (h, i), f"{prefix}intermediate.dense.bias": (i,),
            f"{prefix}output.dense.weight": (i, h), f"{prefix}output.dense.bias": (h,),
            f"{prefix}output.LayerNorm.weight": (h,), f"{prefix}output.LayerNorm.bias": (h,),
        }
    for name, shape in expected.items():
        array = weights[name]
        if shape is not None and array.shape != shape:
            raise EncoderConfigError(
                f"weight {name} has shape {list(array.shape)} but the model's config asks for {list(shape)}"
            )
    return weights
