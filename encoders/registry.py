"""Backends by name: each backend module registers what it knows about its models; nothing here imports one.

Like Beam's `ModelHandler`, a backend is a small set of hooks: check settings without reading the
model, inspect the model's shape from its small files, and load it (slow, once per process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from encoders.errors import EncoderConfigError


@dataclass(frozen=True)
class ModelShape:
    """What the model's files say about its size, read without loading weights."""

    max_positions: int  # longest input, [CLS]/[SEP] included
    dim: int  # width of its token vectors
    intermediate: int | None = None  # width of the feed-forward layer, when the files say (sizes GPU batches)
    heads: int | None = None  # attention heads, when the files say
    packed_length: int | None = None  # what the model's own preprocessing packs to (a Hub preprocessor's length)


@dataclass(frozen=True)
class Backend:
    """The hooks one backend gives; see the module docstring.

    Signatures (kept out of the annotations so this module sits below the ones it names):
    check(ModelSource, EncoderSpec) -> None raises EncoderConfigError for settings the backend
    cannot serve, without reading model files; inspect(ModelSource, EncoderSpec) -> ModelShape
    reads small files only (on the launcher or a worker); load(EncoderSpec) -> Encoder loads
    weights and builds the graph: slow, once per process.
    """

    name: str
    check: Callable[..., None]
    inspect: Callable[..., ModelShape]
    load: Callable[..., object]
    reduced_precision: bool = True  # can compute in bfloat16/float16 (else --precision auto means float32)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Make a backend available under its name (a backend module calls this when imported)."""
    _BACKENDS[backend.name] = backend


def backend_names() -> tuple[str, ...]:
    """Registered backends, in registration order."""
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend registered under name; EncoderConfigError for an unknown one."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise EncoderConfigError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}") from None
