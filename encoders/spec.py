"""The encoder's settings, declared once, and resolving the unset ones from the model's own files.

Pooling, normalisation and maximum length default to what the model directory's own
sentence-transformers config says (see `encoders.pooling.model_pooling_config`); without it:
mean pooling, no normalisation, and the model's maximum length. With --hub_preprocessor the
length defaults to the preprocessor's own, as in the Hub recipe.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.batching import CPU_TOKEN_BUDGET
from encoders.declare import AUTO, MODEL_PATH, PATH, RECORDED, VECTORS, check_declared, setting
from encoders.device import BFLOAT16_MIN_SPEEDUP
from encoders.errors import EncoderConfigError
from encoders.model_source import EMBEDDED_MODEL, ModelSource, parse_model_source
from encoders.pooling import POOLING_METHODS, PoolingConfig, model_pooling_config
from encoders.quantize import OUTPUT_PRECISIONS, RANGED, parse_ranges
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
    prompt: str | None = setting(
        None, "text put before every text before tokenizing, as sentence-transformers' prompt= (e5 and bge expect "
        "e.g. 'passage: '); it counts in --max_seq_length (default: --prompt_name's, else the model's default "
        "prompt, else none)", VECTORS, metavar="TEXT", group=_MODEL, later=True)
    prompt_name: str | None = setting(
        None, "take --prompt from the model's config_sentence_transformers.json prompts by name (e.g. document, "
        "query)", RECORDED, metavar="NAME", group=_MODEL)
    truncate_dim: int | None = setting(
        None, "keep the first N dimensions of each vector, as sentence-transformers' truncate_dim (for Matryoshka "
        "models); with normalisation the cut vector is normalised, so a dot product stays a cosine (default: all)",
        VECTORS, minimum=1, metavar="N", group=_MODEL, later=True)
    output_precision: str = setting(
        "float32", "how each vector is stored, as sentence-transformers' quantize_embeddings: float16 halves it; "
        "int8/uint8 keep one byte a dimension, its step of 255 between that dimension's minimum and maximum "
        "(--quantize_ranges; without it, those of the run being replaced, of the --skip_existing outputs, else of "
        "--calibration_size records embedded at launch); "
        "binary/ubinary one bit a dimension (positive or not), packed eight to a byte (default: float32)",
        VECTORS, choices=OUTPUT_PRECISIONS, group=_MODEL, later=True)
    quantize_ranges: str | None = setting(
        None, "with --output_precision int8/uint8: a file of each dimension's minimum and maximum (.npy, or JSON "
        "[[minimums], [maximums]]), e.g. from a sample of your vectors; written into every file's metadata so "
        "queries are quantized the same way", VECTORS, metavar="FILE", group=_MODEL, path=PATH, later=True)
    calibration_size: int = setting(
        1000, "with --output_precision int8/uint8 and no ranges to reuse: how many records, taken from the start of "
        "up to 16 shards spread over the input, the launcher embeds to find each dimension's range (default: 1000)",
        RECORDED, minimum=1, metavar="N", group=_MODEL, later=True)
    quantize_ranges_values: str | None = setting(
        None, "int8/uint8: each dimension's minimum and maximum as JSON [[minimums], [maximums]], from "
        "--quantize_ranges or found at launch; recorded so queries are quantized the same way", VECTORS, flag="",
        later=True)
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
    if spec.quantize_ranges is not None and spec.output_precision not in RANGED:
        raise EncoderConfigError(
            f"--quantize_ranges applies only with --output_precision int8 or uint8, not {spec.output_precision}")
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
    if spec.truncate_dim is not None and spec.truncate_dim > shape.dim:
        raise EncoderConfigError(f"--truncate_dim must be at most the model's {shape.dim} dimensions, got "
                                 f"{spec.truncate_dim}")
    ranges = spec.quantize_ranges_values
    if spec.quantize_ranges is not None and ranges is None:
        ranges = json.dumps(quantize_ranges_of(spec.quantize_ranges, spec.truncate_dim or shape.dim).tolist())
    elif ranges is not None:  # found at launch (`pipeline.calibration`): the same checks as a file's
        parse_ranges(ranges.encode(), "(the ranges found at launch)", spec.truncate_dim or shape.dim)
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
        prompt=chosen_prompt(spec, own),
        model=spec.model or EMBEDDED_MODEL,
        pooling=spec.pooling or own.pooling,
        normalize=own.normalize if spec.normalize is None else spec.normalize,
        max_seq_length=length,
        chunk_overlap=overlap,
        dim=spec.truncate_dim or shape.dim,
        quantize_ranges_values=ranges,
    )


def chosen_prompt(spec: EncoderSpec, own: PoolingConfig) -> str | None:
    """The prompt every text gets, with sentence-transformers' precedence: --prompt, then --prompt_name from the
    model's prompts, then its default_prompt_name; None when there is none (or it is empty)."""
    if spec.resolved:  # already chosen (and --prompt_name kept beside it, as given)
        return spec.prompt
    if spec.prompt is not None and spec.prompt_name is not None:
        raise EncoderConfigError("--prompt and --prompt_name both name a prompt; give one")
    if spec.prompt is not None:
        return spec.prompt or None
    return _named_prompt(own, spec.prompt_name, "--prompt_name", own.default_prompt_name)


def for_queries(spec: EncoderSpec, prompt: str | None = None, prompt_name: str | None = None) -> EncoderSpec:
    """A resolved spec with a query's prompt in place of the records' one, as sentence-transformers' encode_query
    chooses it: the given prompt, else the named one, else the model's "query" prompt, else its default prompt,
    else none."""
    if prompt is not None and prompt_name is not None:
        raise EncoderConfigError("--query_prompt and --query_prompt_name both name a prompt; give one")
    if prompt is None:
        own = model_pooling_config(parse_model_source(spec.model))
        fallback = "query" if "query" in own.prompts else own.default_prompt_name
        prompt = _named_prompt(own, prompt_name, "--query_prompt_name", fallback)
    return dataclasses.replace(spec, prompt=prompt or None, prompt_name=None)


def _named_prompt(own: PoolingConfig, name: str | None, flag: str, fallback: str | None) -> str | None:
    """The model's prompt called name (a config error naming flag if it has none), else fallback's, else None."""
    if name is not None and name not in own.prompts:
        raise EncoderConfigError(f"{flag} {name!r} is not one of the model's prompts "
                                 f"({', '.join(own.prompts) or 'it has none'})")
    return own.prompts.get(name or fallback or "") or None


@functools.lru_cache(maxsize=4)
def resolved_once(spec: EncoderSpec) -> EncoderSpec:
    """`resolve_spec` at most once per process and spec (a worker reading a remote model's config)."""
    return spec if spec.resolved else resolve_spec(spec)


def quantize_ranges_of(path: str, dim: int) -> np.ndarray:
    """The [2, dim] ranges a --quantize_ranges file holds (local, or copied from gs:// and the like)."""
    from encoders.model_source import local_file

    return parse_ranges(Path(local_file(path)).read_bytes(), path, dim)


def is_local_file(path: str) -> bool:
    """Whether a --weights value names an existing local file (remote ones are checked on the workers)."""
    return Path(path).expanduser().is_file()
