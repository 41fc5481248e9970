"""Print how closely the job reproduces the reference vectors and how closely the backends agree.

    .venv/bin/python scripts/check_parity.py [--reference tests/data/minilm_known_answers.json]

Runs the whole pipeline (DirectRunner) with the default model on the reference texts through the
transformers backend and through Hub modules exported from it (dict and list signatures), and prints the
largest differences. The tests assert the same thresholds; this shows the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from encoders.export_hub import export_hub_module
from pipeline.cli import main as run_job


def _embeddings(output: Path) -> tuple[list[str], np.ndarray, list[int]]:
    manifest = json.loads((output / "_SUCCESS").read_text())
    table = pa.concat_tables([pq.read_table(output / f) for f in manifest["files"]["embeddings"]]).sort_by("id")
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    return table.column("id").to_pylist(), vectors, table.column("n_tokens").to_pylist()


def main() -> None:
    default_reference = Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_known_answers.json"
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", default=str(default_reference))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    known = json.loads(Path(args.reference).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        corpus = tmp_path / "known.txt"
        extra = ["今天天气很好，我们去公园散步吧。" * 30, "Mixed 中文 and English"]
        corpus.write_text("\n".join(known["texts"] + extra) + "\n", encoding="utf-8")
        assert run_job(["--input", str(corpus), "--output", str(tmp_path / "hf")]) == 0
        ids, vectors, n_tokens = _embeddings(tmp_path / "hf")
        n = len(known["texts"])
        dims = np.abs(vectors[:n, :8] - np.array(known["first_8_dims"])).max()
        cosines = np.abs(vectors[:n] @ vectors[:n].T - np.array(known["cosine"])).max()
        print(f"known answers: max |first 8 dims - reference| = {dims:.2e}, max |cosine - reference| = {cosines:.2e}, "
              f"n_tokens {'exact' if n_tokens[:n] == known['n_tokens'] else 'DIFFER'} ({n_tokens[:n]})")
        for signature in ("dict", "list"):
            module = tmp_path / f"hub-{signature}"
            export_hub_module("embedded:all-MiniLM-L6-v2", str(module), signature=signature)
            out = tmp_path / f"out-{signature}"
            assert run_job(["--input", str(corpus), "--output", str(out), "--backend", "hub",
                            "--model", str(module)]) == 0
            hub_ids, hub_vectors, hub_tokens = _embeddings(out)
            same = hub_ids == ids and hub_tokens == n_tokens
            print(f"hub ({signature} signature) vs transformers: ids and n_tokens {'identical' if same else 'DIFFER'}, "
                  f"max |vector difference| = {np.abs(hub_vectors - vectors).max():.2e} over {len(ids)} texts")


if __name__ == "__main__":
    main()
