"""Our BERT forward pass gives transformers' TFBertMainLayer outputs on the same weights, from every weight source."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from encoders import EncoderConfigError, resolve_spec
from encoders.bert_graph import BertGraph
from encoders.bert_weights import BertConfig, from_keras_layer, from_state_dict, read_safetensors
from encoders.transformers_backend import load_bert
from tests.model_factory import TINY_CONFIG, chinese_vocab, write_random_bert


def _ragged_batch(vocab_size: int, lengths=(7, 31, 2, 19), seed: int = 0):
    """Ids and mask of texts of different lengths, padded to the longest (as our batches are)."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, vocab_size, n)
        mask[row, :n] = 1
    return ids, mask


def _both_outputs(main_layer, graph: BertGraph, vocab_size: int):
    import tensorflow as tf

    ids, mask = _ragged_batch(vocab_size)
    theirs = main_layer(input_ids=ids, attention_mask=mask, token_type_ids=tf.zeros_like(ids), training=False)
    sequence, pooled = graph(tf.constant(ids), tf.constant(mask))
    real = mask.astype(bool)
    return (sequence.numpy()[real], theirs.last_hidden_state.numpy()[real],
            pooled.numpy(), theirs.pooler_output.numpy())


def test_default_model_from_safetensors_gives_transformers_outputs(minilm_dir):
    loaded = load_bert(str(minilm_dir))
    config = BertConfig.from_model_dir(str(minilm_dir))
    graph = BertGraph(read_safetensors(f"{minilm_dir}/model.safetensors", config))
    ours, theirs, ours_pooled, theirs_pooled = _both_outputs(loaded.main_layer, graph, config.vocab_size)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.abs(ours_pooled - theirs_pooled).max() < 1e-5


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "gelu_fast", "relu", "silu"])
def test_keras_weights_give_transformers_outputs_for_each_activation(hidden_act, tmp_path):
    model_dir = write_random_bert(tmp_path / hidden_act, chinese_vocab(300), seed=3, hidden_act=hidden_act,
                                  **TINY_CONFIG)
    loaded = load_bert(str(model_dir))
    config = BertConfig.from_model_dir(str(model_dir))
    graph = BertGraph(from_keras_layer(loaded.main_layer, config))
    ours, theirs, ours_pooled, theirs_pooled = _both_outputs(loaded.main_layer, graph, config.vocab_size)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.abs(ours_pooled - theirs_pooled).max() < 1e-5


def test_safetensors_and_keras_layer_name_every_weight_alike(minilm_dir):
    config = BertConfig.from_model_dir(str(minilm_dir))
    from_file = read_safetensors(f"{minilm_dir}/model.safetensors", config).arrays
    from_layer = from_keras_layer(load_bert(str(minilm_dir)).main_layer, config).arrays
    assert from_file.keys() == from_layer.keys()
    assert len(from_file) == 5 + 16 * config.num_hidden_layers + 2
    for name, array in from_file.items():
        np.testing.assert_array_equal(array, from_layer[name], err_msg=name)


def test_a_state_dict_with_a_prefix_and_pretraining_heads_loads(minilm_dir):
    """bert-base-chinese's file names weights `bert.…` and carries `cls.…` heads the encoder does not use."""
    from safetensors.numpy import load_file

    config = BertConfig.from_model_dir(str(minilm_dir))
    state = load_file(f"{minilm_dir}/model.safetensors")
    prefixed = {f"bert.{name}": value for name, value in state.items()}
    prefixed["cls.predictions.bias"] = np.zeros(config.vocab_size, dtype=np.float32)
    weights = from_state_dict(prefixed, config)
    assert not any(name.startswith(("bert.", "cls.")) for name in weights.arrays)
    assert weights.arrays.keys() == read_safetensors(f"{minilm_dir}/model.safetensors", config).arrays.keys()


def test_a_missing_or_misshapen_weight_is_a_config_error(minilm_dir):
    from safetensors.numpy import load_file

    config = BertConfig.from_model_dir(str(minilm_dir))
    state = load_file(f"{minilm_dir}/model.safetensors")
    missing = {k: v for k, v in state.items() if k != "encoder.layer.2.output.dense.bias"}
    with pytest.raises(EncoderConfigError, match="lack encoder.layer.2.output.dense.bias"):
        from_state_dict(missing, config)
    wide = dict(state, **{"encoder.layer.0.intermediate.dense.weight": np.zeros((16, 384), np.float32)})
    with pytest.raises(EncoderConfigError, match=r"intermediate.dense.weight has shape \[384, 16\]"):
        from_state_dict(wide, config)


@pytest.mark.parametrize("change, message", [
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"hidden_act": "mish"}, "hidden_act 'mish'"),
])
def test_a_bert_variant_the_forward_pass_cannot_run_fails_before_the_job(tiny_bert_dir, tmp_path, change, message):
    model_dir = tmp_path / "variant"
    shutil.copytree(tiny_bert_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(EncoderConfigError, match=message):
        resolve_spec(model=str(model_dir))


def test_the_default_model_builds_without_importing_transformers():
    """transformers and tf_keras cost ~0.5 s of every start; the safetensors path needs neither."""
    code = ("import sys; from encoders import build_encoder, resolve_spec; e = build_encoder(resolve_spec()); "
            "e.encode(['hello']); print(sorted(m for m in ('transformers', 'tf_keras') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # set for the seed recipes only
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
