"""BERT text encoders behind one small interface; knows nothing about Beam.

Importing this package registers the built-in backends but does not import TensorFlow:
configuration can be checked fast. Besides the names below, `encoders.declare` is public: the way a
setting is declared once (help, default, role), which the pipeline's own settings use too.
"""

# The built-in backends register themselves on import (`encoders.registry`).
import encoders.hub_backend  # noqa: F401
import encoders.transformers_backend  # noqa: F401
from encoders.base import Embeddings, Encoder, build_encoder
from encoders.errors import EncoderConfigError
from encoders.fingerprint import model_fingerprint
from encoders.model_source import EMBEDDED_MODEL
from encoders.pooling import POOLING_METHODS
from encoders.quantize import BITS, OUTPUT_PRECISIONS, RANGED, dequantize, quantize, stored_width, value_type
from encoders.registry import backend_names
from encoders.spec import EncoderSpec, check_settings, for_queries, quantize_ranges_of, resolve_spec, resolved_once

__version__ = "0.1.0"

__all__ = [
    "BITS",
    "EMBEDDED_MODEL",
    "OUTPUT_PRECISIONS",
    "RANGED",
    "POOLING_METHODS",
    "Embeddings",
    "Encoder",
    "EncoderConfigError",
    "EncoderSpec",
    "backend_names",
    "build_encoder",
    "check_settings",
    "dequantize",
    "for_queries",
    "model_fingerprint",
    "quantize",
    "quantize_ranges_of",
    "resolve_spec",
    "resolved_once",
    "stored_width",
    "value_type",
    "__version__",
]
