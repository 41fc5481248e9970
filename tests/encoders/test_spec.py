import json
import shutil
from pathlib import Path

import pytest

from encoders import EMBEDDED_MODEL, EncoderConfigError, resolve_spec


def test_default_model_settings_come_from_its_sentence_transformers_config():
    spec = resolve_spec()
    assert spec.model == EMBEDDED_MODEL
    assert (spec.backend, spec.pooling, spec.normalize, spec.max_seq_length, spec.dim) == (
        "transformers", "mean", True, 256, 384,
    )


def test_model_without_sentence_transformers_config_gets_mean_unnormalised_full_length(tiny_bert_dir):
    spec = resolve_spec(model=str(tiny_bert_dir))
    assert (spec.pooling, spec.normalize, spec.max_seq_length, spec.dim) == ("mean", False, 64, 32)


def test_flags_override_the_model_config():
    spec = resolve_spec(pooling="cls", normalize=False, max_seq_length=128)
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == ("cls", False, 128)


def test_pooling_mode_is_read_from_the_pooling_module_config(minilm_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(minilm_dir, model, ignore=shutil.ignore_patterns("*.safetensors"))
    (model / "model.safetensors").symlink_to(Path(minilm_dir) / "model.safetensors")  # no 90 MB copy
    config = json.loads((model / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert resolve_spec(model=str(model)).pooling == "cls"


def test_hub_module_defaults_travel_with_the_exported_module(minilm_hub_dict):
    spec = resolve_spec(backend="hub", model=str(minilm_hub_dict))
    assert (spec.pooling, spec.normalize, spec.max_seq_length, spec.dim) == ("mean", True, 256, 384)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "/no/such/model"}, "model path not found"),
        ({"pooling": "sum"}, "unknown --pooling 'sum'"),
        ({"backend": "onnx"}, "unknown --backend 'onnx'"),
        ({"max_seq_length": 4096}, "between 2 and 512"),
        ({"weights": "/no/such/weights.h5"}, "weights file not found"),
        ({"backend": "hub", "model": "bert-base-chinese"}, "needs a TF Hub URL"),
        ({"backend": "transformers", "model": "https://tfhub.dev/x/y/1"}, "use --backend hub"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(EncoderConfigError, match=message):
        resolve_spec(**kwargs)


def test_hub_backend_on_a_transformers_directory_says_there_is_no_saved_model(tiny_bert_dir):
    with pytest.raises(EncoderConfigError, match="saved_model.pb"):
        resolve_spec(backend="hub", model=str(tiny_bert_dir))


def test_reduced_precision_needs_the_transformers_backend(minilm_hub_dict):
    with pytest.raises(EncoderConfigError, match="needs --backend transformers"):
        resolve_spec(backend="hub", model=str(minilm_hub_dict), precision="bfloat16")
    with pytest.raises(EncoderConfigError, match="unknown --precision"):
        resolve_spec(precision="int8")
