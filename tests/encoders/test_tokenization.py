import pytest

from encoders.errors import EncoderConfigError
from encoders.tokenization import WordPieceTokenizer
from tests.model_factory import chinese_vocab

TEXTS = [
    "今天天气很好，我们去公园散步吧。",
    "Hello World, the man is eating bread!",
    "Mixed 中文 and English 手机 text",
    "  leading and trailing spaces  ",
    "Ünïcödé àccents",
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(chinese_vocab(1200)) + "\n", encoding="utf-8")
    return str(path)


def test_each_chinese_character_is_one_token(vocab_file):
    tokenizer = WordPieceTokenizer(vocab_file, lowercase=True)
    text = "今天天气很好"
    assert tokenizer.tokens(text) == list(text)
    assert tokenizer.tokenize([text], 64).n_tokens.tolist() == [len(text) + 2]


def test_cls_and_sep_wrap_every_text(vocab_file):
    tokenizer = WordPieceTokenizer(vocab_file, lowercase=True)
    out = tokenizer.tokenize(["hello", ""], 64)
    for ids in out.token_ids:
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id


def test_long_text_is_cut_to_max_seq_length_and_flagged(vocab_file):
    tokenizer = WordPieceTokenizer(vocab_file, lowercase=True)
    out = tokenizer.tokenize(["天" * 100, "天" * 8], 10)
    assert out.n_tokens.tolist() == [10, 10]
    assert out.truncated.tolist() == [True, False]
    assert out.token_ids[0][-1] == tokenizer.sep_id


@pytest.mark.parametrize("lowercase", [True, False])
def test_matches_transformers_reference_bert_tokenizer(vocab_file, lowercase):
    from transformers import BertTokenizer

    reference = BertTokenizer(vocab_file, do_lower_case=lowercase)
    ours = WordPieceTokenizer(vocab_file, lowercase=lowercase)
    expected = [reference.encode(t) for t in TEXTS]
    assert ours.tokenize(TEXTS, 512).token_ids == expected


def test_vocab_without_special_tokens_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\nc\n")
    with pytest.raises(EncoderConfigError, match=r"\[CLS\]"):
        WordPieceTokenizer(str(path), lowercase=True)
