"""Both backends, on the same weights, give the same vectors as each other and as the seed recipes."""

import json
from pathlib import Path

import numpy as np
import pytest

from encoders import build_encoder, resolve_spec

KNOWN_ANSWERS = Path(__file__).resolve().parents[1] / "data" / "minilm_known_answers.json"
TEXTS = ["A man is eating food.", "今天天气很好，我们去公园散步吧。", "short", "word " * 300]


@pytest.fixture(scope="module")
def minilm_transformers():
    return build_encoder(resolve_spec())


def test_default_model_reproduces_known_answers(minilm_transformers):
    known = json.loads(KNOWN_ANSWERS.read_text())
    out = minilm_transformers.encode(known["texts"])
    assert out.n_tokens.tolist() == known["n_tokens"]
    np.testing.assert_allclose(out.vectors[:, :8], known["first_8_dims"], atol=1e-4)
    np.testing.assert_allclose(out.vectors @ out.vectors.T, known["cosine"], atol=1e-4)


@pytest.mark.parametrize("module_fixture", ["minilm_hub_dict", "minilm_hub_list"])
def test_hub_backend_matches_transformers_backend(request, module_fixture, minilm_transformers):
    module = request.getfixturevalue(module_fixture)
    hub = build_encoder(resolve_spec(backend="hub", model=str(module)))
    assert hub.signature_family == module_fixture.rsplit("_", 1)[1]
    ours, theirs = hub.encode(TEXTS), minilm_transformers.encode(TEXTS)
    np.testing.assert_array_equal(ours.n_tokens, theirs.n_tokens)
    np.testing.assert_array_equal(ours.truncated, [False, False, False, True])
    assert np.abs(ours.vectors - theirs.vectors).max() < 1e-5


@pytest.mark.parametrize("pooling", ["cls", "pooler", "max"])
def test_backends_agree_for_every_pooling(pooling, minilm_hub_dict):
    hub = build_encoder(resolve_spec(backend="hub", model=str(minilm_hub_dict), pooling=pooling))
    hf = build_encoder(resolve_spec(pooling=pooling))
    assert np.abs(hub.encode(TEXTS).vectors - hf.encode(TEXTS).vectors).max() < 1e-5


def _seed_inputs(encoder, texts, length):
    from encoders.batching import pad_batch

    tokenized = encoder.tokenizer.tokenize(texts, length)
    ids, mask = pad_batch(tokenized.token_ids, length, encoder.tokenizer.pad_id)
    return ids, mask, np.zeros_like(ids)


def _masked_mean(sequence, mask):
    mask = mask[:, :, None].astype(np.float32)
    return (sequence * mask).sum(1) / mask.sum(1)


def test_seed_hub_recipe_gives_our_vectors(minilm_hub_dict):
    """The seed's first recipe, literally: Input layers -> hub.KerasLayer -> tf.keras.Model."""
    import tensorflow as tf
    import tensorflow_hub as hub

    length = 64
    input_word_ids = tf.keras.layers.Input(shape=(length,), dtype=tf.int32, name="input_word_ids")
    input_mask = tf.keras.layers.Input(shape=(length,), dtype=tf.int32, name="input_mask")
    segment_ids = tf.keras.layers.Input(shape=(length,), dtype=tf.int32, name="segment_ids")
    bert_layer = hub.KerasLayer(str(minilm_hub_dict), trainable=False)
    outputs = bert_layer(
        {"input_word_ids": input_word_ids, "input_mask": input_mask, "input_type_ids": segment_ids}
    )
    model = tf.keras.Model(
        inputs=[input_word_ids, input_mask, segment_ids],
        outputs=[outputs["pooled_output"], outputs["sequence_output"]],
    )
    texts = TEXTS[:3]
    ours_pooler = build_encoder(
        resolve_spec(backend="hub", model=str(minilm_hub_dict), pooling="pooler", normalize=False)
    )
    ids, mask, types = _seed_inputs(ours_pooler, texts, length)
    pooled, sequence = model.predict([ids, mask, types], verbose=0)
    assert np.abs(ours_pooler.encode(texts).vectors - pooled).max() < 1e-5
    ours_mean = build_encoder(resolve_spec(pooling="mean", normalize=False))
    assert np.abs(ours_mean.encode(texts).vectors - _masked_mean(sequence, mask)).max() < 1e-5


@pytest.fixture(scope="module")
def seed_transformers_model(minilm_dir):
    """The seed's second recipe, literally: Input layers -> TFBertMainLayer(config) -> tf.keras.Model."""
    import tensorflow as tf
    from transformers import BertConfig, TFBertMainLayer

    length = 64
    config = BertConfig.from_pretrained(minilm_dir)
    input_ids = tf.keras.layers.Input(shape=(length,), dtype=tf.int32, name="input_ids")
    attention_mask = tf.keras.layers.Input(shape=(length,), dtype=tf.int32, name="attention_mask")
    outputs = TFBertMainLayer(config)(input_ids=input_ids, attention_mask=attention_mask)
    return tf.keras.Model(inputs=[input_ids, attention_mask], outputs=[outputs[0], outputs[1]])


@pytest.fixture(scope="module")
def fine_tuned_weights(seed_transformers_model, minilm_dir, tmp_path_factory):
    """A Keras weights file as a user who fine-tuned the seed model saves it (weights moved off MiniLM)."""
    from encoders.transformers_backend import load_bert

    rng = np.random.default_rng(0)
    source = load_bert(str(minilm_dir)).main_layer.get_weights()
    seed_transformers_model.layers[-1].set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in source])
    path = tmp_path_factory.mktemp("fine-tuned") / "bert_weights.h5"
    seed_transformers_model.save_weights(str(path))
    return path


def test_seed_transformers_recipe_with_load_weights_by_name_gives_our_vectors(
    seed_transformers_model, fine_tuned_weights, minilm_dir, minilm_transformers
):
    import tensorflow as tf

    fresh = tf.keras.models.clone_model(seed_transformers_model)
    fresh.load_weights(str(fine_tuned_weights), by_name=True)
    texts = TEXTS[:3]
    ours = build_encoder(
        resolve_spec(model=str(minilm_dir), weights=str(fine_tuned_weights), pooling="pooler", normalize=False)
    )
    ids, mask, _ = _seed_inputs(ours, texts, 64)
    sequence, pooled = fresh.predict([ids, mask], verbose=0)
    assert np.abs(ours.encode(texts).vectors - pooled).max() < 1e-5
    ours_mean = build_encoder(resolve_spec(model=str(minilm_dir), weights=str(fine_tuned_weights), normalize=False))
    assert np.abs(ours_mean.encode(texts).vectors - _masked_mean(sequence, mask)).max() < 1e-5
    # The --weights file really replaced the base weights.
    base = minilm_transformers.encode(texts).vectors
    tuned = build_encoder(resolve_spec(model=str(minilm_dir), weights=str(fine_tuned_weights))).encode(texts)
    assert np.abs(base - tuned.vectors).max() > 1e-3


def test_weights_file_that_is_not_hdf5_is_a_config_error(minilm_dir, tmp_path):
    from encoders import EncoderConfigError

    bogus = tmp_path / "weights.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(EncoderConfigError, match="not a Keras HDF5 weights file"):
        build_encoder(resolve_spec(model=str(minilm_dir), weights=str(bogus)))


def test_safetensors_and_tf_h5_weights_load_to_the_same_model(minilm_dir, minilm_transformers, tmp_path):
    import shutil

    from transformers import TFBertModel

    from encoders.transformers_backend import load_bert

    # Write tf_model.h5 the way transformers users do, from the weights read out of safetensors.
    converted = tmp_path / "minilm-h5"
    shutil.copytree(minilm_dir, converted, ignore=shutil.ignore_patterns("*.safetensors"))
    loaded = load_bert(str(minilm_dir))
    holder = TFBertModel(loaded.main_layer.config)
    holder(holder.dummy_inputs)
    holder.bert.set_weights(loaded.main_layer.get_weights())
    holder.save_pretrained(str(converted))
    assert (converted / "tf_model.h5").is_file() and not (converted / "model.safetensors").exists()
    from_h5 = build_encoder(resolve_spec(model=str(converted)))
    assert np.abs(from_h5.encode(TEXTS).vectors - minilm_transformers.encode(TEXTS).vectors).max() < 1e-6


def _real_texts(n=120):
    examples = Path(__file__).resolve().parents[2] / "examples" / "reviews-zh.txt"
    return [t for t in examples.read_text(encoding="utf-8").splitlines() if t.strip()][:n]


def test_xla_compiled_encoder_gives_the_same_vectors(minilm_transformers):
    texts = _real_texts(60) + TEXTS
    xla = build_encoder(resolve_spec(jit_compile=True, max_seq_length=128))
    plain = build_encoder(resolve_spec(max_seq_length=128))
    out = xla.encode(texts)
    assert np.abs(out.vectors - plain.encode(texts).vectors).max() < 1e-5
    assert out.padded_tokens >= int(out.n_tokens.sum()) and out.batches >= 1


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_stays_within_cosine_0999_of_float32_on_real_text(precision, minilm_transformers):
    texts = _real_texts()
    reduced = build_encoder(resolve_spec(precision=precision)).encode(texts).vectors
    full = minilm_transformers.encode(texts).vectors
    cosine = (reduced * full).sum(1) / np.linalg.norm(reduced, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() >= 0.999
    assert reduced.dtype == np.float32
