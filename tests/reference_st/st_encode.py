"""Run inside the sentence-transformers virtualenv: encode texts as a user of the library would.

    python st_encode.py REQUEST.json OUT.npz

REQUEST: {"model": dir, "texts": [...], "runs": {name: {encode keyword arguments}}, "floats": [[...]] (vectors to
quantize, named "floats"), "quantize": {name: {"of": run name or "floats", "precision": ..., "ranges": [[...],
[...]] or absent, "calibration_rows": N or absent}}}. Writes one array per run and quantization.
"""

import json
import sys

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.quantization import quantize_embeddings


def main(request_path: str, out_path: str) -> None:
    request = json.loads(open(request_path, encoding="utf-8").read())
    arrays = {}
    if "floats" in request:
        arrays["floats"] = np.array(request["floats"], dtype=np.float32)
    if request.get("runs"):
        model = SentenceTransformer(request["model"], device="cpu")
    for name, kwargs in request.get("runs", {}).items():
        arrays[name] = model.encode(request["texts"], convert_to_numpy=True, **kwargs).astype(np.float32)
    for name, q in request.get("quantize", {}).items():
        ranges = np.array(q["ranges"], dtype=np.float32) if q.get("ranges") is not None else None
        rows = q.get("calibration_rows")  # calibrate on the first rows of the quantized vectors
        calibration = arrays[q["of"]][:rows] if rows else None
        arrays[name] = quantize_embeddings(arrays[q["of"]], precision=q["precision"], ranges=ranges,
                                           calibration_embeddings=calibration)
    np.savez(out_path, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
