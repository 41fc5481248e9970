"""The whole job as a sentence-transformers user writes it: a text file in, a Parquet file of vectors out.

    bench/.venv-st/bin/python bench/st_job.py --input FILE --output FILE.parquet --max_seq_length N [--batch_size 32]

Run with the separate benchmark venv (torch CPU, pyarrow; `make bench-venv`) and timed from outside, imports
and model load included, by bench/cpu.py. One text per line; the rows are `id` (`<input>:<line number>`, as our
job names a plain-text record) and `embedding` (fixed-size list of float32). The model's own modules
(Transformer, Pooling, Normalize) decide pooling and normalisation, as they do for any user of the package.
"""


import pyarrow as pa
import pyarrow.parquet as pq

# Run as a script, so bench/ is on sys.path: one definition of where the model lives.
from st_encode import model_and_texts


def main() -> None:
    args, model, texts = model_and_texts(__doc__.split("\n")[0], "input", output=True)
    vectors = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), vectors.shape[1])
    ids = pa.array([f"{args.input}:{line}" for line in range(1, len(texts) + 1)], type=pa.string())
    pq.write_table(pa.table({"id": ids, "embedding": embedding}), args.output)


if __name__ == "__main__":
    main()
