"""--hub_preprocessor: token ids from a TF Hub preprocessing model; vectors equal Hub's preprocessor -> encoder.

The preprocessor is tests/data/tfm-bert-preprocess (TF Model Garden's exporter, all-MiniLM-L6-v2's vocabulary);
the encoder is the default model exported as a Hub module (`minilm_hub_dict`), so the two are a pair.
"""

import dataclasses
import shutil

import numpy as np
import pytest

from encoders import EncoderConfigError, build_encoder, model_fingerprint, resolve_spec
from encoders.hub_preprocessing import check_tensorflow_text
from tests.hub_recipe import (
    FULL_WIDTH,
    PREPROCESSOR,
    example_texts,
    packed_by_encoder,
    packed_by_preprocessor,
    recipe_vectors,
)

LONG = "The room was clean and the staff were friendly, but breakfast was poor. " * 12  # ~200 tokens


@pytest.fixture(scope="module")
def build(minilm_hub_dict):
    def build(**settings):
        return build_encoder(resolve_spec(backend="hub", model=str(minilm_hub_dict),
                                          hub_preprocessor=str(PREPROCESSOR), **settings))

    return build


@pytest.fixture(scope="module")
def encoder(build):
    return build()


def test_the_default_length_is_the_preprocessors_own(encoder):
    assert encoder.spec.max_seq_length == 128  # the fixture's default_seq_length; the module alone says 256


@pytest.mark.parametrize("length", [128, 24])
def test_token_ids_equal_the_preprocessors_own_packing(build, encoder, length):
    texts = [*example_texts(), LONG, ""]
    ours = packed_by_encoder(encoder if length == 128 else build(max_seq_length=length), texts)
    theirs = packed_by_preprocessor(texts, length)
    assert (ours[0] == theirs[0]).all(axis=1).sum() == len(texts)
    assert (ours[1] == theirs[1]).all()


def test_token_ids_equal_the_module_called_on_strings(encoder):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - the preprocessor's ops

    texts = example_texts()
    called = hub.load(str(PREPROCESSOR))(tf.constant(texts))
    ids, mask = packed_by_encoder(encoder, texts)
    assert (ids == called["input_word_ids"].numpy()).all() and (mask == called["input_mask"].numpy()).all()


def test_full_width_characters_are_folded_to_half_width(encoder, minilm_hub_dict):
    folded = encoder.tokenizer.tokenize(["ＡＢＣ１２３，ｈｅｌｌｏ", "abc123,hello"], 128).token_ids
    assert folded[0] == folded[1]
    # The encoder's own vocab, through the original BERT tokenizer, does not fold them.
    plain = build_encoder(resolve_spec(backend="hub", model=str(minilm_hub_dict)), warm_up=False)
    unfolded = plain.tokenizer.tokenize(["ＡＢＣ１２３，ｈｅｌｌｏ", "abc123,hello"], 128).token_ids
    assert unfolded[0] != unfolded[1]


def test_vectors_equal_hubs_preprocessor_then_encoder_recipe(encoder, minilm_hub_dict):
    texts = [*example_texts(), LONG]
    ours = encoder.encode(texts)
    expected = recipe_vectors(minilm_hub_dict, texts, pooling="mean", normalize=True)
    assert np.abs(ours.vectors - expected).max() <= 1e-5
    assert ours.truncated[-1] and ours.n_tokens[-1] == 128  # cut at the recipe's length, as the recipe cuts


def test_pooler_vectors_equal_the_recipes_pooled_output(build, minilm_hub_dict):
    texts = [*example_texts()[:20], *FULL_WIDTH, LONG]
    ours = build(pooling="pooler", normalize=False).encode(texts)
    expected = recipe_vectors(minilm_hub_dict, texts, pooling="pooler", normalize=False)
    assert np.abs(ours.vectors - expected).max() <= 1e-5


def test_token_counts_and_truncation_follow_the_preprocessors_tokens(build):
    short = build(max_seq_length=16)
    texts = ["ＡＢＣ１２３", "a b c d e f g h i j k l m n o", "a b c d e f g h i j k l m n", ""]
    out = short.encode(texts)
    assert out.n_tokens.tolist() == [5, 16, 16, 2]
    assert out.truncated.tolist() == [False, True, False, False]
    _, mask = packed_by_preprocessor(texts, 16)
    assert out.n_tokens.tolist() == mask.sum(axis=1).tolist()


def test_chunk_mode_embeds_every_window_of_the_preprocessors_tokens(build, minilm_hub_dict):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - the preprocessor's ops

    chunked = build(max_seq_length=64, long_text="chunk", chunk_overlap=8)
    out = chunked.encode([LONG, FULL_WIDTH[0]])
    body = chunked.tokenizer.token_runs([LONG]).flat.tolist()
    assert out.n_tokens[0] == len(body) + 2 and out.n_chunks[0] > 1 and not out.truncated.any()
    # The same windows packed by hand and run through the Hub encoder: token-weighted mean, renormalised.
    windows = [body[start:start + 62] for start in range(0, len(body) - 8, 54)]
    assert len(windows) == out.n_chunks[0]
    packed = hub.load(str(PREPROCESSOR)).bert_pack_inputs(
        [tf.ragged.constant(windows, dtype=tf.int32)], seq_length=tf.constant(64))
    sequence = hub.KerasLayer(str(minilm_hub_dict))(packed)["sequence_output"].numpy()
    mask = packed["input_mask"].numpy()[:, :, None]
    window_vectors = (sequence * mask).sum(1) / mask.sum(1)  # not normalised: chunk mode normalises the mean
    expected = (window_vectors * mask.sum(1)).sum(0) / mask.sum()
    assert np.abs(out.vectors[0] - expected / np.linalg.norm(expected)).max() <= 1e-5


def test_with_the_transformers_backend_it_is_a_config_error():
    with pytest.raises(EncoderConfigError, match="--hub_preprocessor applies only to --backend hub"):
        resolve_spec(hub_preprocessor=str(PREPROCESSOR))


def test_without_tensorflow_text_the_error_names_the_extra_to_install():
    with pytest.raises(EncoderConfigError, match=r"pip install '\.\[hub-preprocessing\]'"):
        check_tensorflow_text("tensorflow_text_is_not_installed")
    check_tensorflow_text()  # installed here


def test_a_missing_preprocessor_directory_is_a_config_error(minilm_hub_dict, tmp_path):
    with pytest.raises(EncoderConfigError, match="no such directory"):
        resolve_spec(backend="hub", model=str(minilm_hub_dict), hub_preprocessor=str(tmp_path / "absent"))


def test_a_preprocessor_whose_vocabulary_does_not_fit_the_encoder_is_refused_at_launch(tiny_hub_dir):
    with pytest.raises(EncoderConfigError, match="30522-token vocabulary .* 1200 rows"):
        resolve_spec(backend="hub", model=str(tiny_hub_dir), hub_preprocessor=str(PREPROCESSOR))


def test_the_fingerprint_follows_the_preprocessors_content_not_its_path(encoder, tmp_path):
    spec, version = encoder.spec, "test"
    moved = tmp_path / "moved"
    shutil.copytree(PREPROCESSOR, moved)
    assert model_fingerprint(dataclasses.replace(spec, hub_preprocessor=str(moved)), version) == \
        model_fingerprint(spec, version)
    other = tmp_path / "other"
    shutil.copytree(PREPROCESSOR, other)
    vocab = other / "assets" / "vocab.txt"
    lines = vocab.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1000], lines[1001] = lines[1001], lines[1000]  # same size, other ids
    vocab.write_text("".join(lines), encoding="utf-8")
    changed = model_fingerprint(dataclasses.replace(spec, hub_preprocessor=str(other)), version)
    without = model_fingerprint(dataclasses.replace(spec, hub_preprocessor=None), version)
    assert len({changed, without, model_fingerprint(spec, version)}) == 3


def test_an_encoder_module_given_as_the_preprocessor_is_refused_before_it_is_loaded(tiny_hub_dir):
    with pytest.raises(EncoderConfigError, match=r"^--hub_preprocessor .* is not a TF Hub BERT preprocessing model "
                                                 r"\(it has no tokenize and bert_pack_inputs\)$"):
        resolve_spec(backend="hub", model=str(tiny_hub_dir), hub_preprocessor=str(tiny_hub_dir))
