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


# --- models that ship only a tokenizer.json: tiny random BERT and XLM-RoBERTa, as sentence-transformers saves them

REVIEWS = Path(__file__).parent / "data" / "reviews-zh-2k.txt.gz"  # 2,000 lines of Chinese reviews (README)
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4: <pad> 1, as XLM-RoBERTa has it
ST_PROMPTS = {"query": "query: ", "document": "passage: "}


def review_lines() -> list[str]:
    import gzip

    with gzip.open(REVIEWS, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def train_unigram_tokenizer(path: Path, specials: list[str], frame: tuple[str, str], vocab_size: int = 4000) -> Path:
    """A SentencePiece-style Unigram tokenizer.json trained on the reviews, framing a text as frame[0] ... frame[1]."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    unk = "<unk>" if "<unk>" in specials else "[UNK]"
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk,
                                      show_progress=False)
    tokenizer.train_from_iterator(review_lines() + [" ".join(ENGLISH)] * 20, trainer=trainer)
    first, last = frame
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=f"{first} $A {last} {last} $B {last}",
        special_tokens=[(first, tokenizer.token_to_id(first)), (last, tokenizer.token_to_id(last))])
    tokenizer.save(str(path))
    return path


def train_byte_bpe_tokenizer(path: Path, specials: list[str], vocab_size: int = 4000) -> Path:
    """A RoBERTa-style byte-level BPE tokenizer.json trained on the reviews (no unknown token: any byte is one),
    framing a text as <s> ... </s> with RoBERTa's post-processor."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(review_lines() + [" ".join(ENGLISH)] * 20, trainer=trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=("</s>", tokenizer.token_to_id("</s>")), cls=("<s>", tokenizer.token_to_id("<s>")),
        add_prefix_space=False)
    tokenizer.save(str(path))
    return path


def write_random_safetensors(directory: Path, model_type: str, vocab_size: int, pad_token_id: int, seed: int = 0,
                             **config_kwargs) -> Path:
    """config.json and a PyTorch-named model.safetensors of random weights, as transformers' PyTorch classes save
    a BertModel or XLMRobertaModel (no prefix); no tokenizer."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    offset = pad_token_id + 1 if model_type != "bert" else 0
    config = {"model_type": model_type, "vocab_size": vocab_size, "pad_token_id": pad_token_id,
              "type_vocab_size": 1 if model_type != "bert" else 2, "layer_norm_eps": 1e-5, **config_kwargs}
    config["max_position_embeddings"] += offset
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    rng = np.random.default_rng(seed)
    h, i = config["hidden_size"], config["intermediate_size"]

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    state = {"embeddings.word_embeddings.weight": normal(vocab_size, h),
             "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
             "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
             "embeddings.LayerNorm.weight": 1 + normal(h), "embeddings.LayerNorm.bias": normal(h),
             "pooler.dense.weight": normal(h, h), "pooler.dense.bias": normal(h)}
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for name, shape in (("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (i, h)), ("output.dense", (h, i))):
            state[f"{p}{name}.weight"], state[f"{p}{name}.bias"] = normal(*shape), normal(shape[0])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[f"{p}{norm}.weight"], state[f"{p}{norm}.bias"] = 1 + normal(h), normal(h)
    save_file(state, str(directory / "model.safetensors"))
    return directory


def write_sentence_transformers_files(directory: Path, pooling: str = "mean", normalize: bool = True,
                                      max_seq_length: int = 48, prompts: dict | None = None,
                                      default_prompt_name: str | None = None, include_prompt: bool = True) -> Path:
    """modules.json, the Pooling module's config, sentence_bert_config.json and config_sentence_transformers.json."""
    hidden = json.loads((directory / "config.json").read_text())["hidden_size"]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    (directory / "modules.json").write_text(json.dumps(modules, indent=1))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "include_prompt": include_prompt}, indent=1))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                     "do_lower_case": False}))
    (directory / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": prompts or {}, "default_prompt_name": default_prompt_name, "similarity_fn_name": "cosine"},
        indent=1))
    return directory


def write_tokenizer_json_model(directory: Path, model_type: str, seed: int = 0, **st_kwargs) -> Path:
    """A sentence-transformers model directory with only a tokenizer.json: a 2-layer, 32-wide random BERT
    ([CLS]/[SEP] around a Unigram vocabulary), XLM-RoBERTa (<s>/</s>, <pad> 1, Unigram) or RoBERTa (the same
    frame around a byte-level BPE vocabulary)."""
    directory.mkdir(parents=True, exist_ok=True)
    specials = XLMR_SPECIALS if model_type != "bert" else SPECIALS
    frame = ("<s>", "</s>") if model_type != "bert" else ("[CLS]", "[SEP]")
    if model_type == "roberta":
        tokenizer = train_byte_bpe_tokenizer(directory / "tokenizer.json", specials)
    else:
        tokenizer = train_unigram_tokenizer(directory / "tokenizer.json", specials, frame)
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(tokenizer))
    pad = loaded.token_to_id(specials[1] if model_type != "bert" else "[PAD]")
    write_random_safetensors(directory, model_type, loaded.get_vocab_size(), pad, seed=seed, **TINY_CONFIG)
    # What transformers' AutoTokenizer needs beside a bare tokenizer.json (sentence-transformers loads with it).
    names = dict(zip(("bos_token", "pad_token", "eos_token", "unk_token", "mask_token"), XLMR_SPECIALS, strict=True))
    if model_type == "bert":
        names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}
    else:
        names |= {"cls_token": "<s>", "sep_token": "</s>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **names}, indent=1))
    return write_sentence_transformers_files(directory, **st_kwargs)
