"""The model fingerprint: one digest of the model's identity and every setting that changes its vectors.

Two outputs with the same fingerprint hold interchangeable vectors, which is what lets a later
run reuse them (`--skip_existing`). The settings come from `EncoderSpec`'s declarations (role
"vectors"), so a new vector-changing setting joins the fingerprint by being declared.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from encoders.declare import MODEL_PATH, PATH, VECTORS, declared, values
from encoders.model_source import parse_model_source
from encoders.spec import EncoderSpec

_SAMPLE_BYTES = 1 << 20
_IDENTIFYING_SUFFIXES = (".json", ".txt", ".h5", ".safetensors", ".pb", ".index")


@functools.lru_cache(maxsize=4)
def model_fingerprint(spec: EncoderSpec, version: str) -> str:
    """Hex digest of a resolved spec's model, weights and vector settings, and the encoder version.

    A local model (or --hub_preprocessor) directory is identified by its config and vocab contents and a sample of
    its weight files (size, first and last MiB), so replacing the weights in place changes it;
    a remote model, name or URL by its name. A setting declared `later` counts only once set, so outputs
    made before it existed keep their fingerprint. Cached: computed once per process and spec.
    """
    # The declared values, so `--precision auto` counts as "auto", not as what a worker chose: reruns on
    # the same kind of hardware reuse each other's vectors (--skip_existing), and vectors made in another
    # precision stay within cosine 0.999 of float32 (tests/encoders/test_backends.py), so reusing them is safe.
    # Each setting's declaration alone decides how it counts: a place (a model, weights, a preprocessor) by
    # what it holds when it is local, a setting declared `later` only once it is set.
    identity = values(spec, [VECTORS])
    for item in declared(EncoderSpec):
        if item.name not in identity:
            continue
        value = getattr(spec, item.name)
        if item.declaration.later and value == item.default:
            del identity[item.name]
        elif item.declaration.path == MODEL_PATH:
            identity[item.name] = _model_identity(value)
        elif item.declaration.path == PATH and value and "://" not in value:
            identity[item.name] = _local_identity(Path(value))
    identity["version"] = version
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _model_identity(model: str) -> object:
    source = parse_model_source(model)
    return _local_identity(Path(source.location)) if source.is_local else model


def _local_identity(path: Path) -> object:
    """A local file by its content (size and sampled bytes); a directory by its identifying files'."""
    if not path.is_dir():
        return _file_identity(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _IDENTIFYING_SUFFIXES)
    return {str(p.relative_to(path)): _file_identity(p) for p in files}


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
