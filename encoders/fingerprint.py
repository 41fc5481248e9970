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

from encoders.declare import VECTORS, values
from encoders.model_source import parse_model_source
from encoders.spec import EncoderSpec

_SAMPLE_BYTES = 1 << 20
_IDENTIFYING_SUFFIXES = (".json", ".txt", ".h5", ".safetensors", ".pb", ".index")


@functools.lru_cache(maxsize=4)
def model_fingerprint(spec: EncoderSpec, version: str) -> str:
    """Hex digest of a resolved spec's model, weights and vector settings, and the encoder version.

    A local model (or --hub_preprocessor) directory is identified by its config and vocab contents and a sample of
    its weight files (size, first and last MiB), so replacing the weights in place changes it;
    a remote model, name or URL by its name. Cached: computed once per process and spec.
    """
    # The declared values, so `--precision auto` counts as "auto", not as what a worker chose: reruns on
    # the same kind of hardware reuse each other's vectors (--skip_existing), and vectors made in another
    # precision stay within cosine 0.999 of float32 (tests/encoders/test_backends.py), so reusing them is safe.
    identity = values(spec, [VECTORS])
    identity["model"] = _model_identity(spec.model)
    # A vector setting added later is left out while unset, so outputs of earlier versions keep their
    # fingerprint (--skip_existing still reuses them). --hub_preprocessor is identified by content too:
    # its vocabulary and graph decide the token ids.
    del identity["hub_preprocessor"]
    if spec.hub_preprocessor:
        identity["hub_preprocessor"] = _model_identity(spec.hub_preprocessor)
    if spec.weights and "://" not in spec.weights:
        identity["weights"] = _file_identity(Path(spec.weights))
    identity["version"] = version
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _model_identity(model: str) -> object:
    source = parse_model_source(model)
    if not source.is_local:
        return model
    root = Path(source.location)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _IDENTIFYING_SUFFIXES)
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
