import os

# The seed recipes in the tests build tf.keras functional models around hub.KerasLayer and
# TFBertMainLayer, which only works with Keras 2 (docs/dependencies.md); must precede TF import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.model_factory import (  # noqa: E402
    BERT_BASE_CHINESE_CONFIG,
    BERT_BASE_CHINESE_VOCAB_SIZE,
    ST_PROMPTS,
    TINY_CONFIG,
    chinese_vocab,
    write_random_bert,
    write_tokenizer_json_model,
)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with random weights and a small Chinese+English vocab (tf_model.h5)."""
    return write_random_bert(tmp_path_factory.mktemp("tiny-bert"), chinese_vocab(1200), **TINY_CONFIG)


@pytest.fixture(scope="session", params=["bert", "xlm-roberta", "roberta"])
def tokenizer_json_dir(request, tmp_path_factory):
    """A sentence-transformers directory with only a tokenizer.json (trained on reviews): a 2-layer random BERT
    framed by [CLS]/[SEP] or XLM-RoBERTa by <s>/</s> (Unigram), or RoBERTa (byte-level BPE); prompts for queries
    and documents."""
    return write_tokenizer_json_model(tmp_path_factory.mktemp(f"tokenizer-json-{request.param}"), request.param,
                                      prompts=ST_PROMPTS)


@pytest.fixture(scope="session")
def tiny_hub_dir(tiny_bert_dir, tmp_path_factory):
    from encoders.export_hub import export_hub_module

    out = tmp_path_factory.mktemp("tiny-hub") / "module"
    export_hub_module(str(tiny_bert_dir), str(out))
    return out


@pytest.fixture(scope="session")
def minilm_dir():
    """The embedded default model's directory (real all-MiniLM-L6-v2, PyTorch safetensors)."""
    from encoders.model_source import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def minilm_hub_dict(tmp_path_factory):
    from encoders.export_hub import export_hub_module

    out = tmp_path_factory.mktemp("minilm-hub-dict") / "module"
    export_hub_module("embedded:all-MiniLM-L6-v2", str(out), signature="dict")
    return out


@pytest.fixture(scope="session")
def minilm_hub_list(tmp_path_factory):
    """An older-style Hub module: list inputs [ids, mask, segment_ids] -> [pooled, sequence]."""
    from encoders.export_hub import export_hub_module

    out = tmp_path_factory.mktemp("minilm-hub-list") / "module"
    export_hub_module("embedded:all-MiniLM-L6-v2", str(out), signature="list")
    return out


@pytest.fixture(scope="session")
def bert_base_chinese_dir(tmp_path_factory):
    """Shaped exactly like bert-base-chinese (public config), random weights, our Chinese vocab."""
    vocab = chinese_vocab(BERT_BASE_CHINESE_VOCAB_SIZE)
    return write_random_bert(tmp_path_factory.mktemp("bert-base-chinese"), vocab, **BERT_BASE_CHINESE_CONFIG)
