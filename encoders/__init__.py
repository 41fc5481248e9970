"""BERT text encoders behind one small interface; knows nothing about Beam.

Importing this package does not import TensorFlow: configuration can be checked fast.
"""

from encoders.base import Embeddings, Encoder, build_encoder
from encoders.errors import EncoderConfigError
from encoders.model_source import EMBEDDED_MODEL
from encoders.pooling import POOLING_METHODS
from encoders.spec import BACKENDS, EncoderSpec, check_settings, resolve_spec

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "EMBEDDED_MODEL",
    "POOLING_METHODS",
    "Embeddings",
    "Encoder",
    "EncoderConfigError",
    "EncoderSpec",
    "build_encoder",
    "check_settings",
    "resolve_spec",
    "__version__",
]
