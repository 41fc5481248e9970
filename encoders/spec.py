"""The encoder's settings, declared once, and resolving the unset ones from the model's own files.

Pooling, normalisation and maximum length default to what the model directory's own
sentence-transformers config says (see `encoders.pooling.model_pooling_config`); without it:
mean pooling, no normalisation, and the model's maximum length. With --hub_preprocessor the
length defaults to the preprocessor's own, as in the Hub recipe.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from encoders.batching import CPU_TOKEN_BUDGET
from encoders.declare import AUTO, MODEL_PATH, PATH, RECORDED, VECTORS, check_declared, setting
from encoders.device import BFLOAT16_MIN_SPEEDUP
from encoders.errors import EncoderConfigError
from encoders.model_source import EMBEDDED_MODEL, ModelSource, parse_model_source
from encoders.pooling import POOLING_METHODS, model_pooling_config
from encoders.registry import backend_names, get_backend

PRECISIONS = ("float32", "bfloat16", "float16")
LONG_TEXT_MODES = ("truncate", "chunk")
_MODEL = "model"
_BATCHING = "batching"


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides the vectors, plus batch limits. Plain data: it travels to workers.

    As given, None means "what the model says"; `resolve_spec` fills every field (and `dim`) except
    the automatic ones (`precision` "auto", `max_tokens_per_batch` None), which `build_encoder`
    chooses on the machine that runs the model (`encoders.auto`).
    """

    backend: str = setting(
        "transformers", "transformers: a Hugging Face BERT model (name or directory); hub: TF Hub BERT module "
        "(default: transformers)",
        VECTORS, choices=backend_names, group=_MODEL, headline=True)
    model: str | None = setting(
        None, "model name, local or gs:// directory, or TF Hub URL (default: the embedded all-MiniLM-L6-v2)",
        VECTORS, metavar="NAME_OR_PATH", group=_MODEL, path=MODEL_PATH, headline=True)
    weights: str | None = setting(
        None, "Keras HDF5 weights file of a fine-tuned TFBertMainLayer model, loaded by layer name",
        VECTORS, metavar="FILE", group=_MODEL, path=PATH)
    hub_preprocessor: str | None = setting(
        None, "with --backend hub: tokenize with this TF Hub BERT preprocessing model (URL, local or gs:// "
        "directory) instead of the encoder's vocabulary, as Hub's recipe preprocessor -> encoder does (e.g. "
        "bert_zh_preprocess); needs pip install '.[hub-preprocessing]'",
        VECTORS, metavar="URL_OR_DIR", group=_MODEL, path=PATH, later=True)
    pooling: str | None = setting(
        None, "how token vectors become one vector: mean (masked, padding ignored), cls, pooler (BERT's tanh "
        "pooler over [CLS]), max (default: the model's own config, else mean)",
        VECTORS, choices=POOLING_METHODS, group=_MODEL, headline=True)
    normalize: bool | None = setting(
        None, "L2-normalise vectors (default: the model's own config, else off)", VECTORS,
        negation=("no_normalize", "do not L2-normalise"), group=_MODEL, headline=True)
    max_seq_length: int | None = setting(
        None, "tokens per text incl. [CLS]/[SEP]; longer texts are truncated (default: --hub_preprocessor's own "
        "length, else the model's own config, else its maximum)", VECTORS, minimum=2, metavar="N", group=_MODEL,
        headline=True)
    long_text: str = setting(
        "truncate", "a text longer than --max_seq_length: truncate keeps its first tokens and sets `truncated`; "
        "chunk embeds every window and averages them weighted by tokens, setting `n_chunks` (default: truncate)",
        VECTORS, choices=LONG_TEXT_MODES, group=_MODEL, headline=True)
    chunk_overlap: int | None = setting(
        None, "with --long_text chunk: tokens shared by consecutive windows (default: one eighth of the window)",
        VECTORS, minimum=0, metavar="N", group=_MODEL)
    max_batch_size: int = setting(
        64, "most texts in one forward pass (default: 64)", RECORDED, minimum=1, metavar="N", group=_BATCHING)
    max_tokens_per_batch: int | None = setting(
        None, f"most padded tokens in one forward pass; auto: {CPU_TOKEN_BUDGET} on a CPU, on a GPU sized from its "
        "free memory and the model's shape, chosen on each worker and reported in the manifest; changes speed "
        "only, never the vectors (default: auto)", RECORDED, minimum=1, metavar="N", auto=True, group=_BATCHING)
    precision: str = setting(
        "float32", "compute type (transformers backend); bfloat16/float16 run the matmuls and attention in that "
        "type (vectors within cosine 0.999 of float32); auto chooses on each worker: bfloat16 on GPUs of compute "
        "capability 8.0+ (A100, L4, H100), "
        f"float16 on 7.x (T4, V100), bfloat16 on a CPU where a quick probe measures it {BFLOAT16_MIN_SPEEDUP}x "
        "faster, else float32 (the manifest reports the choice). The default stays float32: the known-answer tests "
        "and comparisons with sentence-transformers rely on its vectors (default: float32)",
        VECTORS, choices=(*PRECISIONS, AUTO), group=_BATCHING, headline=True)
    jit_compile: bool = setting(
        False, "compile the forward pass and pooling with XLA, one program per bucket length", RECORDED,
        group=_BATCHING)
    dim: int | None = setting(None, "width of the vectors, read from the model", VECTORS, flag="", headline=True)

    def __post_init__(self) -> None:
        check_declared(self, EncoderConfigError)

    @property
    def resolved(self) -> bool:
        """Whether every setting has its final value (the model's files have been read)."""
        return self.dim is not None


def check_settings(spec: EncoderSpec) -> ModelSource:
    """The checks that need no model files (so no network); returns where the model is.

    A job submitted to a distributed runner with a remote model stops here at launch and
    resolves the rest on its workers.
    """
    if spec.chunk_overlap is not None and spec.long_text != "chunk":
        raise EncoderConfigError("--chunk_overlap applies only with --long_text chunk")
    source = parse_model_source(spec.model or EMBEDDED_MODEL)
    get_backend(spec.backend).check(source, spec)
    return source


def resolve_spec(spec: EncoderSpec | None = None, /, **settings) -> EncoderSpec:
    """Check the settings and fill the unset ones from the model's own config.

    Takes an EncoderSpec, or its fields as keyword arguments. Reads only small config files
    (remote ones too); no weights are loaded. Raises EncoderConfigError.
    """
    spec = EncoderSpec(**settings) if spec is None else dataclasses.replace(spec, **settings)
    source = check_settings(spec)
    shape = get_backend(spec.backend).inspect(source, spec)
    own = model_pooling_config(source)
    default = shape.packed_length or own.max_seq_length  # a preprocessor's length is the Hub recipe's
    length = spec.max_seq_length or (min(default, shape.max_positions) if default else shape.max_positions)
    if not 2 <= length <= shape.max_positions:
        raise EncoderConfigError(
            f"--max_seq_length must be between 2 and {shape.max_positions} for this model, got {length}"
        )
    window = length - 2  # text tokens per window, [CLS] and [SEP] aside
    overlap = spec.chunk_overlap
    if overlap is None:
        overlap = window // 8 if spec.long_text == "chunk" else 0
    if spec.long_text == "chunk" and window < 1:
        raise EncoderConfigError("--long_text chunk needs --max_seq_length of at least 3")
    if spec.long_text == "chunk" and not 0 <= overlap < window:
        raise EncoderConfigError(
            f"--chunk_overlap must be at least 0 and less than {window} (--max_seq_length minus 2), got {overlap}"
        )
    return dataclasses.replace(
        spec,
        model=spec.model or EMBEDDED_MODEL,
        pooling=spec.pooling or own.pooling,
        normalize=own.normalize if spec.normalize is None else spec.normalize,
        max_seq_length=length,
        chunk_overlap=overlap,
        dim=shape.dim,
    )


@functools.lru_cache(maxsize=4)
def resolved_once(spec: EncoderSpec) -> EncoderSpec:
    """`resolve_spec` at most once per process and spec (a worker reading a remote model's config)."""
    return spec if spec.resolved else resolve_spec(spec)


def is_local_file(path: str) -> bool:
    """Whether a --weights value names an existing local file (remote ones are checked on the workers)."""
    return Path(path).expanduser().is_file()
