"""--long_text chunk: long texts are cut into overlapping windows and pooled back into one vector."""

import numpy as np
import pytest

from encoders import EncoderConfigError, build_encoder, resolve_spec
from encoders.batching import pad_batch


@pytest.fixture(scope="module")
def encoders_by_mode(tiny_bert_dir):
    def build(**settings):
        return build_encoder(resolve_spec(model=str(tiny_bert_dir), max_seq_length=16, **settings))

    return {
        "truncate": build(normalize=True),
        "chunk": build(normalize=True, long_text="chunk", chunk_overlap=4),
        "raw": build(normalize=False),
    }


def test_windows_cover_the_text_with_the_requested_overlap(encoders_by_mode):
    tokenizer = encoders_by_mode["chunk"].tokenizer
    text = "天" * 30  # one token per character
    windowed = tokenizer.windows([text, "短"], max_seq_length=12, overlap=3)
    bodies = [ids[1:-1] for ids in windowed.token_ids]
    assert windowed.owner.tolist() == [0, 0, 0, 0, 1]
    assert [len(b) for b in bodies] == [10, 10, 10, 9, 1]  # starts 0, 7, 14, 21; then "短"
    assert windowed.n_chunks.tolist() == [4, 1] and windowed.n_tokens.tolist() == [32, 3]
    assert all(ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id for ids in windowed.token_ids)


def test_a_text_that_fits_gets_the_same_vector_in_both_modes(encoders_by_mode):
    texts = ["今天天气很好", "hello world"]
    chunked, truncated = encoders_by_mode["chunk"].encode(texts), encoders_by_mode["truncate"].encode(texts)
    assert np.abs(chunked.vectors - truncated.vectors).max() < 1e-6
    assert chunked.n_chunks.tolist() == [1, 1] and chunked.n_tokens.tolist() == truncated.n_tokens.tolist()


def test_a_long_text_is_the_token_weighted_mean_of_its_windows_renormalised(encoders_by_mode):
    chunk, raw = encoders_by_mode["chunk"], encoders_by_mode["raw"]
    text = "今天天气很好我们去公园散步吧" * 3  # 42 tokens: windows of 14 with 4 shared
    out = chunk.encode([text, "短"])
    assert out.n_chunks.tolist() == [4, 1] and not out.truncated.any() and out.n_tokens[0] == 44
    body = raw.tokenizer.windows([text], 10**6, 0).token_ids[0][1:-1]
    windows = [body[s:s + 14] for s in (0, 10, 20, 30)]
    rows = [[raw.tokenizer.cls_id, *w, raw.tokenizer.sep_id] for w in windows]
    ids, mask = pad_batch(rows, 16, raw.tokenizer.pad_id)
    window_vectors = raw.embed_token_ids(ids, mask)
    weights = np.array([len(r) for r in rows], dtype=np.float32)
    expected = (window_vectors * weights[:, None]).sum(0) / weights.sum()
    expected /= np.linalg.norm(expected)
    assert np.abs(out.vectors[0] - expected).max() < 1e-5
    assert abs(np.linalg.norm(out.vectors[0]) - 1) < 1e-5


def test_truncate_mode_marks_truncation_and_keeps_one_chunk(encoders_by_mode):
    out = encoders_by_mode["truncate"].encode(["天" * 40])
    assert out.truncated.tolist() == [True] and out.n_chunks.tolist() == [1] and out.n_tokens.tolist() == [16]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"chunk_overlap": 2}, "--chunk_overlap applies only with --long_text chunk"),
        ({"long_text": "chunk", "chunk_overlap": 14}, "less than 14"),
        ({"long_text": "chunk", "chunk_overlap": -1}, "at least 0"),
        ({"long_text": "summarise"}, "unknown --long_text"),
    ],
)
def test_contradictory_chunk_settings_are_config_errors(tiny_bert_dir, settings, message):
    with pytest.raises(EncoderConfigError, match=message):
        resolve_spec(model=str(tiny_bert_dir), max_seq_length=16, **settings)


def test_default_overlap_is_an_eighth_of_the_window(tiny_bert_dir):
    assert resolve_spec(model=str(tiny_bert_dir), max_seq_length=34, long_text="chunk").chunk_overlap == 4
