"""Print how exactly --hub_preprocessor reproduces a TF Hub preprocessing model on a corpus (ids and vectors).

    .venv/bin/python -m encoders.export_hub --model embedded:all-MiniLM-L6-v2 --output build/minilm-hub
    .venv/bin/python scripts/check_hub_preprocessor.py CORPUS.txt build/minilm-hub [--vectors 3000]

For every line of the corpus: our token ids and mask (the encoder's own batches) against the
module's `tokenize` + `bert_pack_inputs` at 128, 256 and 512 tokens, and against the module called on
the strings (its default length); how many lines our usual tokenizer (the original BERT one) would
tokenize differently; then, on the first --vectors lines, our vectors against Hub's recipe
`encoder(preprocessor(texts))` through `hub.KerasLayer`. The tests assert the same on examples/.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders import build_encoder, resolve_spec  # noqa: E402
from tests.hub_recipe import PREPROCESSOR, packed_by_encoder, packed_by_preprocessor, recipe_vectors  # noqa: E402

LENGTHS = (128, 256, 512)
CHUNK = 1024


def _token_lists(encoder, texts: list[str]) -> list[tuple[int, ...]]:
    runs = encoder.tokenizer.token_runs(texts)
    return [tuple(runs.flat[s:s + n]) for s, n in zip(runs.starts, runs.lengths, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="text file, one document per line")
    parser.add_argument("encoder", help="a Hub BERT encoder module with the preprocessor's vocabulary")
    parser.add_argument("--vectors", type=int, default=3000, help="lines whose vectors are compared (default: 3000)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 - the preprocessor's ops

    texts = [line for line in args.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"{args.corpus}: {len(texts):,} texts")
    module = hub.load(str(PREPROCESSOR))
    for length in LENGTHS:
        spec = resolve_spec(backend="hub", model=args.encoder, hub_preprocessor=str(PREPROCESSOR),
                            max_seq_length=length)
        encoder = build_encoder(spec, warm_up=False)
        same = called_same = 0
        started = time.perf_counter()
        for start in range(0, len(texts), CHUNK):
            part = texts[start:start + CHUNK]
            ids, mask = packed_by_encoder(encoder, part)
            want_ids, want_mask = packed_by_preprocessor(part, length)
            same += int(((ids == want_ids) & (mask == want_mask)).all(axis=1).sum())
            if length == LENGTHS[0]:  # the module's own default length (128 for Model Garden's exporter)
                called = module(tf.constant(part))
                called_same += int(((called["input_word_ids"].numpy() == ids)
                                    & (called["input_mask"].numpy() == mask)).all(axis=1).sum())
        truncated = int((encoder.tokenizer.token_runs(texts).lengths > length - 2).sum())
        line = f"max_seq_length {length}: ids and mask equal to tokenize + bert_pack_inputs {same:,}/{len(texts):,}"
        if length == LENGTHS[0]:
            line += f", to the module called on strings {called_same:,}/{len(texts):,}"
        print(f"{line}; {truncated:,} truncated ({time.perf_counter() - started:.0f} s)")
    ours = _token_lists(build_encoder(resolve_spec(backend="hub", model=args.encoder, hub_preprocessor=str(
        PREPROCESSOR)), warm_up=False), texts)
    usual = _token_lists(build_encoder(resolve_spec(backend="hub", model=args.encoder), warm_up=False), texts)
    differ = sum(a != b for a, b in zip(ours, usual, strict=True))
    counts = sum(len(a) != len(b) for a, b in zip(ours, usual, strict=True))
    print(f"our usual (original BERT) tokenizer on the same vocabulary: {differ:,}/{len(texts):,} texts tokenized "
          f"differently, {counts:,} with a different token count")

    sample = texts[:args.vectors]
    encoder = build_encoder(resolve_spec(backend="hub", model=args.encoder, hub_preprocessor=str(PREPROCESSOR)))
    started = time.perf_counter()
    vectors = encoder.encode(sample).vectors
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference = recipe_vectors(args.encoder, sample)
    recipe_seconds = time.perf_counter() - started
    diff = np.abs(vectors - reference)
    print(f"vectors of the first {len(sample):,} (mean pooling, normalised, max_seq_length "
          f"{encoder.spec.max_seq_length}): max abs difference {diff.max():.2e}, rows over 1e-5: "
          f"{int((diff.max(axis=1) > 1e-5).sum())}, min cosine {(vectors * reference).sum(axis=1).min():.8f} "
          f"(ours {ours_seconds:.0f} s, recipe {recipe_seconds:.0f} s)")


if __name__ == "__main__":
    main()
