"""What each --output_precision (and --truncate_dim) stores per vector, measured in the files the job writes.

    .venv/bin/python -m bench.storage [--corpus bench/data/reviews-zh.txt] [--texts 4000]

Runs the job with the default model (all-MiniLM-L6-v2, 384 dimensions) on the corpus's first texts once per
setting and reads back the Parquet footers: the embedding column's stored bytes per row (Parquet's compressed
size, so what compression gains is counted) and the whole files' bytes per row. int8/uint8 calibrate their
ranges at launch. Writes bench/results-storage.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [(None, p) for p in ("float32", "float16", "int8", "uint8", "binary", "ubinary")] + [
    (128, p) for p in ("float32", "int8", "ubinary")]


def measure(corpus: Path, texts: int, truncate_dim: int | None, precision: str, work: Path) -> dict:
    """One run: the embedding column's and the files' bytes per row."""
    out = work / f"{precision}-{truncate_dim or 'all'}"
    flags = ["--output_precision", precision] + (["--truncate_dim", str(truncate_dim)] if truncate_dim else [])
    subprocess.run([sys.executable, "-m", "pipeline", "--input", str(corpus), "--output", str(out), "--progress",
                    "off", "--overwrite", *flags], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    rows = column = files = 0
    for path in sorted(out.glob("embeddings-*.parquet")):
        meta = pq.ParquetFile(path).metadata
        rows += meta.num_rows
        files += path.stat().st_size
        for group in range(meta.num_row_groups):
            chunk = meta.row_group(group)
            column += sum(chunk.column(i).total_compressed_size for i in range(chunk.num_columns)
                          if chunk.column(i).path_in_schema.startswith("embedding"))
    assert rows == texts, f"{rows} rows, expected {texts}"
    return {"truncate_dim": truncate_dim, "precision": precision, "rows": rows,
            "vector_bytes_per_row": column / rows, "file_bytes_per_row": files / rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "bench" / "data" / "reviews-zh.txt")
    parser.add_argument("--texts", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines = [line for line in args.corpus.read_text(encoding="utf-8").splitlines() if line.strip()][:args.texts]
        corpus = work / "texts.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        results = [measure(corpus, len(lines), dim, precision, work) for dim, precision in SETTINGS]
    cpu = platform.processor() or platform.machine()
    (REPO / "bench" / "results-storage.json").write_text(json.dumps(
        {"date": datetime.date.today().isoformat(), "texts": len(lines), "machine": cpu, "results": results},
        indent=1))
    table = ["| dimensions | precision | vector column, bytes per row | whole file, bytes per row | "
             "vector column per million vectors |", "|---|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['truncate_dim'] or 384} | {r['precision']} | {r['vector_bytes_per_row']:.1f} | "
                     f"{r['file_bytes_per_row']:.1f} | {r['vector_bytes_per_row']:.0f} MB |")
    (REPO / "bench" / "results-storage.md").write_text(
        f"# Storage per vector (`python -m bench.storage`)\n\n{datetime.date.today().isoformat()}: the default model "
        f"(all-MiniLM-L6-v2, 384 dimensions, normalised) on the first {len(lines):,} texts of the Chinese review "
        "corpus, one run per setting, read back from the Parquet footers. The vector column's bytes are Parquet's "
        "compressed size (snappy, dictionary pages where they pay, as the job writes them); the whole file adds "
        "the id, text hash, token counts and the footer.\n\n"
        + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
