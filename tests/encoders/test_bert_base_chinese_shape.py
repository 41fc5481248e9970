"""A model shaped exactly like bert-base-chinese runs through both backends (random weights)."""

import numpy as np
import pytest

from encoders import build_encoder, resolve_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bert_base_chinese_hub(bert_base_chinese_dir, tmp_path_factory):
    from encoders.export_hub import export_hub_module

    out = tmp_path_factory.mktemp("bert-base-chinese-hub") / "module"
    export_hub_module(str(bert_base_chinese_dir), str(out))
    return out


def test_both_backends_give_768_d_vectors_one_token_per_chinese_character(
    bert_base_chinese_dir, bert_base_chinese_hub
):
    texts = ["今天天气很好，我们去公园散步吧。", "中文手机质量不错"]
    hf = build_encoder(resolve_spec(model=str(bert_base_chinese_dir)))
    hub = build_encoder(resolve_spec(backend="hub", model=str(bert_base_chinese_hub)))
    assert hf.tokenizer.vocab_size == 21128
    assert hf.tokenizer.tokens(texts[1]) == list(texts[1])
    assert len(hf.tokenizer.tokens(texts[0])) == len(texts[0])  # "，" is not in our vocab: one [UNK]
    for encoder in (hf, hub):
        out = encoder.encode(texts)
        assert out.vectors.shape == (2, 768)
        assert out.n_tokens.tolist() == [len(t) + 2 for t in texts]
    assert np.abs(hf.encode(texts).vectors - hub.encode(texts).vectors).max() < 1e-4
    assert resolve_spec(backend="hub", model=str(bert_base_chinese_hub)).max_seq_length == 512
