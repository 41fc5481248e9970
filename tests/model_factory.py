"""Builders for test models: BERTs with random weights from a config and a vocab we make.

Nothing is downloaded; speed and shapes do not depend on the weights being trained.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
COMMON_CJK = "今天天气很好我们去公园散步吧你好世界中文手机质量不错酒店房间干净服务态度差价格便宜快递书"
ENGLISH = ["the", "a", "is", "man", "woman", "eating", "food", "bread", "hello", "world", "good", "bad",
           "line", "second", "text", "job", "data", "test", "##s", "##ing", "##ed", "##ly"]


def chinese_vocab(size: int) -> list[str]:
    """A BERT vocab of exactly `size` tokens: specials, ASCII, common words, then CJK characters."""
    candidates = SPECIALS + [chr(c) for c in range(33, 127)] + ENGLISH
    candidates += [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)] + list(COMMON_CJK)
    tokens = list(dict.fromkeys(candidates))
    seen = set(tokens)
    code = 0x4E00
    while len(tokens) < size:
        ch = chr(code)
        if ch not in seen:
            tokens.append(ch)
            seen.add(ch)
        code += 1
    return tokens[:size]


def write_random_bert(directory: Path, vocab: list[str], seed: int = 0, **config_kwargs) -> Path:
    """Write a transformers BERT directory: config.json, vocab.txt, tokenizer_config.json, tf_model.h5."""
    import tensorflow as tf
    from transformers import BertConfig, TFBertModel

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tf.keras.utils.set_random_seed(seed)
    config = BertConfig(vocab_size=len(vocab), **config_kwargs)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(directory))
    return directory


TINY_CONFIG = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
)
BERT_BASE_CHINESE_CONFIG = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    max_position_embeddings=512, type_vocab_size=2,
)
BERT_BASE_CHINESE_VOCAB_SIZE = 21128
