"""TF Hub's documented recipe, `encoder(preprocessor(texts))`: the reference `--hub_preprocessor` must reproduce."""

import json
from pathlib import Path

import numpy as np

PREPROCESSOR = Path(__file__).resolve().parent / "data" / "tfm-bert-preprocess"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Full-width letters, digits and punctuation, which the preprocessor's NFKC case folding makes half-width.
FULL_WIDTH = [
    "ＡＢＣ１２３，ｈｅｌｌｏ　ｗｏｒｌｄ！",
    "价格：１２０元，质量ＯＫ，ＵＳＢ接口很好用。",
    "Ｔｈｅ ｒｏｏｍ ｗａｓ ｃｌｅａｎ． 房间很干净（５星）",
    "abc123, hello world!",
]


def example_texts() -> list[str]:
    """Every text in examples/ (the lines of the .txt files, `text` of the JSON Lines), then FULL_WIDTH."""
    texts = []
    for path in sorted(EXAMPLES.iterdir()):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts += [json.loads(line)["text"] for line in lines] if path.suffix == ".jsonl" else lines
    return texts + FULL_WIDTH


def recipe_vectors(encoder_dir, texts: list[str], pooling: str = "mean", normalize: bool = True,
                   seq_length: int | None = None, batch: int = 64) -> np.ndarray:
    """float32 [len(texts), dim]: the preprocessor called on strings, the encoder on its outputs, then pooling.

    With seq_length, packs through the preprocessor's `tokenize` and `bert_pack_inputs` at that length
    (Hub's recipe for lengths other than the default) instead of calling it on the strings.
    """
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - the preprocessor's ops

    preprocessor = hub.load(str(PREPROCESSOR))
    encoder = hub.KerasLayer(str(encoder_dir))
    parts = []
    for start in range(0, len(texts), batch):
        strings = tf.constant(texts[start:start + batch])
        if seq_length is None:
            inputs = preprocessor(strings)
        else:
            inputs = preprocessor.bert_pack_inputs([preprocessor.tokenize(strings)], seq_length=tf.constant(seq_length))
        outputs = encoder(inputs)
        if pooling == "mean":
            mask = tf.cast(inputs["input_mask"], tf.float32)[:, :, None]
            vectors = tf.reduce_sum(outputs["sequence_output"] * mask, axis=1) / tf.reduce_sum(mask, axis=1)
        elif pooling == "cls":
            vectors = outputs["sequence_output"][:, 0]
        else:
            vectors = outputs["pooled_output"]
        parts.append(vectors.numpy())
    vectors = np.concatenate(parts)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if normalize else vectors


def packed_by_preprocessor(texts: list[str], seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_word_ids, input_mask), int32 [len(texts), seq_length], from the module's tokenize + bert_pack_inputs."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - the preprocessor's ops

    preprocessor = hub.load(str(PREPROCESSOR))
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(texts))],
                                           seq_length=tf.constant(seq_length))
    return packed["input_word_ids"].numpy(), packed["input_mask"].numpy()


def packed_by_encoder(encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) as our encoder feeds the model (its own batches, put back in text order), padded to max length."""
    length = encoder.spec.max_seq_length
    prepared = encoder.prepare(texts)
    ids = np.full((prepared.n_rows, length), encoder.tokenizer.pad_id, dtype=np.int32)
    mask = np.zeros((prepared.n_rows, length), dtype=np.int32)
    for indices, batch_ids, batch_mask in prepared.batches:
        ids[indices, :batch_ids.shape[1]] = batch_ids[:len(indices)]
        mask[indices, :batch_mask.shape[1]] = batch_mask[:len(indices)]
    return ids, mask
