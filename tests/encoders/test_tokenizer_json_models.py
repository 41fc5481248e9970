"""Models that ship only a tokenizer.json (BERT, XLM-RoBERTa or RoBERTa layers; a Unigram or byte-level BPE
vocabulary): our tokenizer and forward pass against `tokenizers` and transformers' own TensorFlow classes."""

import json
import re
import shutil

import numpy as np
import pytest

from encoders import build_encoder, for_queries
from encoders.errors import EncoderConfigError
from encoders.spec import resolve_spec
from encoders.tokenization import JsonTokenizer
from tests.model_factory import ST_PROMPTS, review_lines, write_sentence_transformers_files

TEXTS = [*review_lines()[:30], "hello world, the man is eating bread", "", "  多个   空格  ", "好" * 300]


def reference_vectors(model_dir, texts, max_seq_length, prompt="", skip=0):
    """Per text, one at a time: `tokenizers` with its post-processor and truncation, then transformers'
    TFBertModel, TFRobertaModel or TFXLMRobertaModel on the PyTorch weights (transformers' own name mapping),
    mean pooled and normalised as the directory's sentence-transformers modules say. The prompt goes before each
    text; skip leading tokens are left out of the mean (include_prompt: false)."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from transformers import (
        BertConfig,
        RobertaConfig,
        TFBertModel,
        TFRobertaModel,
        TFXLMRobertaModel,
        XLMRobertaConfig,
    )
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    config = json.loads((model_dir / "config.json").read_text())
    model_class, config_class = {"bert": (TFBertModel, BertConfig), "roberta": (TFRobertaModel, RobertaConfig),
                                 "xlm-roberta": (TFXLMRobertaModel, XLMRobertaConfig)}[config["model_type"]]
    model = model_class(config_class(**config))
    state = load_file(str(model_dir / "model.safetensors"))
    _, info = load_pytorch_state_dict_in_tf2_model(model, state, output_loading_info=True,
                                                   skip_logger_warnings=True)
    assert not info["missing_keys"]
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length)
    vectors, lengths = [], []
    for text in texts:
        ids = tokenizer.encode(prompt + text).ids
        hidden = model(input_ids=np.array([ids]), attention_mask=np.ones((1, len(ids)), np.int32))[0][0].numpy()
        vector = hidden[skip:].mean(axis=0)
        vectors.append(vector / np.linalg.norm(vector))
        lengths.append(len(ids))
    return np.array(vectors), np.array(lengths)


def test_only_a_tokenizer_json_embeds_as_tokenizers_and_transformers_do(tokenizer_json_dir):
    encoder = build_encoder(resolve_spec(model=str(tokenizer_json_dir)))
    assert encoder.spec.max_seq_length == 48  # sentence_bert_config.json
    ours = encoder.encode(TEXTS)
    expected, lengths = reference_vectors(tokenizer_json_dir, TEXTS, 48)
    np.testing.assert_array_equal(ours.n_tokens, lengths)
    full = JsonTokenizer(str(tokenizer_json_dir / "tokenizer.json")).token_runs(TEXTS).lengths + 2
    np.testing.assert_array_equal(ours.truncated, full > 48)
    assert ours.truncated.any() and not ours.truncated.all()
    np.testing.assert_allclose(ours.vectors, expected, atol=1e-5)


def test_the_frame_and_padding_come_from_the_tokenizer_and_the_config(tokenizer_json_dir):
    tokenizer = build_encoder(resolve_spec(model=str(tokenizer_json_dir))).tokenizer
    bert = json.loads((tokenizer_json_dir / "config.json").read_text())["model_type"] == "bert"
    frame = ("[CLS]", "[SEP]", "[PAD]") if bert else ("<s>", "</s>", "<pad>")
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_json_dir / "tokenizer.json")).get_vocab()
    assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id) == tuple(vocab[t] for t in frame)


def test_a_tokenizer_that_does_not_frame_a_text_is_a_config_error(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    bare = Tokenizer(WordLevel({"[PAD]": 0, "a": 1, "[UNK]": 2}, unk_token="[UNK]"))
    bare.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(EncoderConfigError, match="adds 0 special tokens around a text"):
        JsonTokenizer(str(tmp_path / "tokenizer.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(EncoderConfigError, match="cannot read tokenizer"):
        JsonTokenizer(str(tmp_path / "broken.json"))


def test_roberta_counts_positions_past_the_padding_row_and_stops_two_short_of_the_table(tokenizer_json_dir):
    config = json.loads((tokenizer_json_dir / "config.json").read_text())
    if config["model_type"] == "bert":
        pytest.skip("(XLM-)RoBERTa only")
    with pytest.raises(EncoderConfigError, match="max_seq_length"):
        resolve_spec(model=str(tokenizer_json_dir), max_seq_length=config["max_position_embeddings"] - 1)
    assert resolve_spec(model=str(tokenizer_json_dir), max_seq_length=config["max_position_embeddings"] - 2)


def _variant(model_dir, tmp_path, **st_kwargs):
    """The same weights and tokenizer under other sentence-transformers settings."""
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy)
    return write_sentence_transformers_files(copy, **st_kwargs)


def test_prompt_and_prompt_name_embed_the_prompted_text(tokenizer_json_dir):
    by_name = resolve_spec(model=str(tokenizer_json_dir), prompt_name="document")
    assert by_name.prompt == "passage: " and resolve_spec(model=str(tokenizer_json_dir)).prompt is None
    given = resolve_spec(model=str(tokenizer_json_dir), prompt="passage: ")
    expected, lengths = reference_vectors(tokenizer_json_dir, TEXTS, 48, prompt="passage: ")
    for spec in (by_name, given):
        ours = build_encoder(spec).encode(TEXTS)
        np.testing.assert_array_equal(ours.n_tokens, lengths)  # the prompt counts in max_seq_length
        np.testing.assert_allclose(ours.vectors, expected, atol=1e-5)


def test_the_default_prompt_applies_unless_another_or_an_empty_one_is_asked_for(tokenizer_json_dir, tmp_path):
    model = _variant(tokenizer_json_dir, tmp_path, prompts=ST_PROMPTS, default_prompt_name="query")
    assert resolve_spec(model=str(model)).prompt == "query: "
    assert resolve_spec(model=str(model), prompt_name="document").prompt == "passage: "
    assert resolve_spec(model=str(model), prompt="").prompt is None


def test_include_prompt_false_leaves_the_prompt_and_cls_out_of_the_mean(tokenizer_json_dir, tmp_path):
    model = _variant(tokenizer_json_dir, tmp_path, prompts=ST_PROMPTS, include_prompt=False)
    spec = resolve_spec(model=str(model), prompt_name="query")
    prompt_tokens = len(JsonTokenizer(str(model / "tokenizer.json")).token_runs(["query: "]).flat)
    expected, _ = reference_vectors(model, TEXTS, 48, prompt="query: ", skip=1 + prompt_tokens)
    np.testing.assert_allclose(build_encoder(spec).encode(TEXTS).vectors, expected, atol=1e-5)


@pytest.mark.parametrize(("settings", "message"), [
    ({"prompt_name": "passage"}, "--prompt_name 'passage' is not one of the model's prompts (query, document)"),
    ({"prompt_name": "query", "prompt": "q: "}, "--prompt and --prompt_name both name a prompt"),
])
def test_prompt_mistakes_are_config_errors(tokenizer_json_dir, settings, message):
    with pytest.raises(EncoderConfigError, match=re.escape(message)):
        resolve_spec(model=str(tokenizer_json_dir), **settings)


def test_truncate_dim_keeps_the_first_dimensions_normalised_after_the_cut(tokenizer_json_dir):
    spec = resolve_spec(model=str(tokenizer_json_dir), truncate_dim=12)
    assert spec.dim == 12
    ours = build_encoder(spec).encode(TEXTS).vectors
    full, _ = reference_vectors(tokenizer_json_dir, TEXTS, 48)
    cut = full[:, :12] / np.linalg.norm(full[:, :12], axis=1, keepdims=True)
    np.testing.assert_allclose(ours, cut, atol=1e-5)
    with pytest.raises(EncoderConfigError, match="--truncate_dim must be at most the model's 32 dimensions, got 33"):
        resolve_spec(model=str(tokenizer_json_dir), truncate_dim=33)


def test_a_query_gets_the_models_query_prompt_unless_told_otherwise(tokenizer_json_dir, tmp_path):
    records = resolve_spec(model=str(tokenizer_json_dir), prompt_name="document")
    assert for_queries(records).prompt == "query: "
    assert for_queries(records, prompt_name="document").prompt == "passage: "
    assert for_queries(records, prompt="").prompt is None
    with pytest.raises(EncoderConfigError, match="--query_prompt_name 'q' is not one of the model's prompts"):
        for_queries(records, prompt_name="q")
    with pytest.raises(EncoderConfigError, match="--query_prompt and --query_prompt_name both"):
        for_queries(records, prompt="q: ", prompt_name="query")
    symmetric = _variant(tokenizer_json_dir, tmp_path, prompts={"all": "text: "}, default_prompt_name="all")
    assert for_queries(resolve_spec(model=str(symmetric))).prompt == "text: "  # no query prompt: the default


def test_long_text_chunk_frames_each_window_with_the_models_own_special_tokens(tokenizer_json_dir):
    spec = resolve_spec(model=str(tokenizer_json_dir), long_text="chunk", max_seq_length=16, chunk_overlap=2)
    encoder = build_encoder(spec)
    windows = encoder.tokenizer.windows([TEXTS[-1]], 16, 2)
    assert len(windows.token_ids) > 1
    assert all(w[0] == encoder.tokenizer.cls_id and w[-1] == encoder.tokenizer.sep_id for w in windows.token_ids)
    ours = encoder.encode([TEXTS[-1]])
    assert ours.n_chunks[0] == len(windows.token_ids) and not ours.truncated[0]
    assert ours.n_tokens[0] == windows.n_tokens[0]


def test_a_hub_module_exported_from_it_gives_the_same_vectors_with_its_own_tokenizer(tokenizer_json_dir, tmp_path):
    """The Hub path knows the architecture: the module carries the tokenizer.json and where positions start."""
    from encoders.export_hub import export_hub_module

    module = tmp_path / "module"
    export_hub_module(str(tokenizer_json_dir), str(module))
    hub = build_encoder(resolve_spec(backend="hub", model=str(module), prompt_name="query"))
    ours = build_encoder(resolve_spec(model=str(tokenizer_json_dir), prompt_name="query"))
    assert isinstance(hub.tokenizer, JsonTokenizer) and hub.spec.max_seq_length == 48
    assert (hub.tokenizer.cls_id, hub.tokenizer.sep_id, hub.tokenizer.pad_id) == (
        ours.tokenizer.cls_id, ours.tokenizer.sep_id, ours.tokenizer.pad_id)
    longest = 64  # the config's positions, whatever the architecture's offset
    assert resolve_spec(backend="hub", model=str(module), max_seq_length=longest)
    with pytest.raises(EncoderConfigError, match="--max_seq_length must be between 2 and 64"):
        resolve_spec(backend="hub", model=str(module), max_seq_length=longest + 1)
    np.testing.assert_allclose(hub.encode(TEXTS).vectors, ours.encode(TEXTS).vectors, atol=1e-5)


def test_the_fingerprint_knows_the_architecture(tokenizer_json_dir, tmp_path):
    from encoders import model_fingerprint

    other = tmp_path / "other"
    shutil.copytree(tokenizer_json_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "roberta" if config["model_type"] == "xlm-roberta" else "xlm-roberta"
    config["pad_token_id"] = 1
    (other / "config.json").write_text(json.dumps(config))
    fingerprints = {model_fingerprint(resolve_spec(model=str(d)), "0") for d in (tokenizer_json_dir, other)}
    assert len(fingerprints) == 2


def test_a_wordpiece_tokenizer_json_beside_vocab_txt_gives_the_vocab_txt_path_s_vectors(tiny_bert_dir, tmp_path):
    """bge-zh and most BERT checkpoints ship both: the tokenizer.json (WordPiece, made here from the same vocab.txt
    and lower-casing as transformers' fast BERT tokenizer makes it) is read, and nothing changes."""
    from tokenizers import BertWordPieceTokenizer

    both = tmp_path / "both"
    shutil.copytree(tiny_bert_dir, both)
    BertWordPieceTokenizer(str(both / "vocab.txt"), lowercase=True).save(str(both / "tokenizer.json"))
    texts = [*TEXTS[:20], "Hello World, THE man is eating bread"]
    with_json = build_encoder(resolve_spec(model=str(both), max_seq_length=32))
    assert isinstance(with_json.tokenizer, JsonTokenizer)
    plain = build_encoder(resolve_spec(model=str(tiny_bert_dir), max_seq_length=32))
    assert not isinstance(plain.tokenizer, JsonTokenizer)
    ours, theirs = with_json.encode(texts), plain.encode(texts)
    np.testing.assert_array_equal(ours.n_tokens, theirs.n_tokens)
    np.testing.assert_allclose(ours.vectors, theirs.vectors, atol=1e-6)
