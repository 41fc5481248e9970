"""Incremental runs: which records an earlier output already holds. Pure logic, no Beam.

A record is reused when an earlier output file made under the same model fingerprint holds
its id with the same text hash: same text, same model, same settings, so the same vector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from encoders import EncoderSpec
from encoders.model_source import parse_model_source

# Settings of EncoderSpec that change vectors; batch limits and XLA only change speed.
_VECTOR_SETTINGS = ("backend", "pooling", "normalize", "max_seq_length", "dim", "precision", "long_text",
                    "chunk_overlap")
_SAMPLE_BYTES = 1 << 20


def text_hash(text: str) -> str:
    """Hex digest (128 bits of SHA-256) of a text as embedded, i.e. after normalisation."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def model_fingerprint(spec: EncoderSpec, version: str) -> str:
    """Digest of the model's identity and every setting that changes vectors.

    A local model directory is identified by its config and vocab contents and a sample of
    its weight files (size, first and last MiB), so replacing the weights in place changes it;
    a remote model, name or URL by its name.
    """
    identity = {
        "model": _model_identity(spec.model),
        "weights": _file_identity(Path(spec.weights)) if spec.weights and "://" not in spec.weights else spec.weights,
        "version": version,
        **{k: getattr(spec, k) for k in _VECTOR_SETTINGS},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _model_identity(model: str) -> object:
    source = parse_model_source(model)
    if not source.is_local:
        return model
    root = Path(source.location)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".txt", ".h5", ".safetensors",
                                                                                 ".pb", ".index"))
    return {str(p.relative_to(root)): _file_identity(p) for p in files}


def _file_identity(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            f.seek(size - _SAMPLE_BYTES)
            digest.update(f.read(_SAMPLE_BYTES))
        else:
            digest.update(f.read())
    return digest.hexdigest()[:32]


# What the grouping by id sees: ("new", shard index, source, line, text hash) for a record of this
# run, ("old", file index, path, text hash) for a row of an earlier output.
NEW, OLD = "new", "old"
DUPLICATE, REUSED = "duplicate", "reused"


def resolve_id(record_id: str, values: Iterable[tuple]) -> Iterator[tuple[str, tuple]]:
    """Decisions for the records of this run that share one id.

    Yields ("decision", ((source, line), (DUPLICATE, first source, first line))) for every later
    occurrence, ("decision", ((source, line), (REUSED, file index))) when the first occurrence's
    text hash is in an earlier output, and ("copy", ((file index, path), id)) for the earlier row it
    reuses. First means earliest by shard index then line; among earlier outputs the last file
    (in sorted path order, so the newest dt=...) wins.
    """
    new = sorted(v[1:] for v in values if v[0] == NEW)
    old = sorted(v[1:] for v in values if v[0] == OLD)
    if not new:
        return
    _, first_source, first_line, first_hash = new[0]
    for _, source, line, _ in new[1:]:
        yield "decision", ((source, line), (DUPLICATE, first_source, first_line))
    matches = [(index, path) for index, path, digest in old if digest == first_hash]
    if matches:
        index, path = matches[-1]
        yield "decision", ((first_source, first_line), (REUSED, index))
        yield "copy", ((index, path), record_id)
