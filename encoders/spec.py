"""What encoder to build: the settings a worker needs, resolved once on the launcher.

Pooling, normalisation and maximum length default to what the model directory's own
sentence-transformers config says (modules.json, 1_Pooling/config.json,
sentence_bert_config.json); without it: mean pooling, no normalisation, and the
model's maximum length.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from encoders.errors import EncoderConfigError
from encoders.model_source import EMBEDDED_MODEL, ModelSource, parse_model_source, read_model_file
from encoders.pooling import POOLING_METHODS

BACKENDS = ("transformers", "hub")
PRECISIONS = ("float32", "bfloat16", "float16")
LONG_TEXT_MODES = ("truncate", "chunk")
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides the vectors, plus batch limits. Plain data: it travels to workers."""

    backend: str
    model: str
    weights: str | None
    pooling: str
    normalize: bool
    max_seq_length: int
    dim: int
    max_batch_size: int = 64
    max_tokens_per_batch: int = 8192
    precision: str = "float32"
    jit_compile: bool = False
    long_text: str = "truncate"  # or "chunk": embed every window of a long text and pool them
    chunk_overlap: int = 0  # tokens shared by consecutive windows in chunk mode

    def describe(self) -> dict[str, str]:
        """String settings for file metadata and the manifest."""
        return {k: str(v) if v is not None else "" for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ModelDefaults:
    """What the model directory says about itself."""

    pooling: str
    normalize: bool
    max_seq_length: int
    max_positions: int
    dim: int


def check_settings(
    backend: str = "transformers",
    model: str | None = None,
    weights: str | None = None,
    pooling: str | None = None,
    max_batch_size: int = 64,
    max_tokens_per_batch: int = 8192,
    precision: str = "float32",
    long_text: str = "truncate",
    chunk_overlap: int | None = None,
) -> ModelSource:
    """The checks that need no model files (so no network); returns where the model is.

    A job submitted to a distributed runner with a remote model stops here at launch and
    resolves the rest on its workers.
    """
    if backend not in BACKENDS:
        raise EncoderConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if pooling is not None and pooling not in POOLING_METHODS:
        raise EncoderConfigError(
            f"unknown pooling {pooling!r}; choose one of {', '.join(POOLING_METHODS)}"
        )
    if max_batch_size < 1 or max_tokens_per_batch < 1:
        raise EncoderConfigError("batch limits must be positive")
    if precision not in PRECISIONS:
        raise EncoderConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "float32" and backend == "hub":
        raise EncoderConfigError("--precision other than float32 needs --backend transformers "
                                 "(a Hub SavedModel's dtypes are fixed when it is exported)")
    if long_text not in LONG_TEXT_MODES:
        raise EncoderConfigError(f"unknown --long_text {long_text!r}; choose one of {', '.join(LONG_TEXT_MODES)}")
    if chunk_overlap is not None and long_text != "chunk":
        raise EncoderConfigError("--chunk_overlap applies only with --long_text chunk")
    model = model or EMBEDDED_MODEL
    source = parse_model_source(model)
    if backend == "hub" and source.kind == "name":
        raise EncoderConfigError(
            f"--backend hub needs a TF Hub URL, a local directory or a gs:// path, not {model!r}"
        )
    if backend == "transformers" and source.kind == "url":
        raise EncoderConfigError(
            f"--backend transformers cannot load the URL {model}; use --backend hub for TF Hub handles"
        )
    if weights is not None:
        if backend != "transformers":
            raise EncoderConfigError("--weights applies only to --backend transformers")
        if "://" not in weights and not _is_file(weights):
            raise EncoderConfigError(f"weights file not found: {weights}")
    return source


def resolve_spec(
    backend: str = "transformers",
    model: str | None = None,
    weights: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    max_seq_length: int | None = None,
    max_batch_size: int = 64,
    max_tokens_per_batch: int = 8192,
    precision: str = "float32",
    jit_compile: bool = False,
    long_text: str = "truncate",
    chunk_overlap: int | None = None,
) -> EncoderSpec:
    """Check the settings and fill the unset ones from the model's own config.

    Reads only small config files (remote ones too); no weights are loaded. Raises EncoderConfigError.
    """
    source = check_settings(backend, model, weights, pooling, max_batch_size, max_tokens_per_batch, precision,
                            long_text, chunk_overlap)
    model = model or EMBEDDED_MODEL
    defaults = model_defaults(source, backend)
    if backend == "transformers" and source.is_local:
        _check_local_model_files(Path(source.location), weights)
    length = max_seq_length if max_seq_length is not None else defaults.max_seq_length
    if not 2 <= length <= defaults.max_positions:
        raise EncoderConfigError(
            f"--max_seq_length must be between 2 and {defaults.max_positions} for this model, got {length}"
        )
    window = length - 2  # text tokens per window, [CLS] and [SEP] aside
    if chunk_overlap is None:
        chunk_overlap = window // 8 if long_text == "chunk" else 0
    if long_text == "chunk" and window < 1:
        raise EncoderConfigError("--long_text chunk needs --max_seq_length of at least 3")
    if long_text == "chunk" and not 0 <= chunk_overlap < window:
        raise EncoderConfigError(
            f"--chunk_overlap must be at least 0 and less than {window} (--max_seq_length minus 2), "
            f"got {chunk_overlap}"
        )
    return EncoderSpec(
        backend=backend,
        model=model,
        weights=weights,
        pooling=pooling or defaults.pooling,
        normalize=defaults.normalize if normalize is None else normalize,
        max_seq_length=length,
        dim=defaults.dim,
        max_batch_size=max_batch_size,
        max_tokens_per_batch=max_tokens_per_batch,
        precision=precision,
        jit_compile=jit_compile,
        long_text=long_text,
        chunk_overlap=chunk_overlap,
    )


def model_defaults(source: ModelSource, backend: str) -> ModelDefaults:
    """Pooling, normalisation and lengths from the model directory's config files."""
    max_positions, dim = _model_shape(source, backend)
    pooling, normalize, st_length = "mean", False, None
    modules_text = read_model_file(source, "modules.json")
    if modules_text:
        modules = _parse_json(modules_text, "modules.json")
        for module in modules:
            kind = str(module.get("type", ""))
            if kind.endswith("Pooling"):
                pooling = _st_pooling(source, module.get("path", ""))
            elif kind.endswith("Normalize"):
                normalize = True
        st_text = read_model_file(source, "sentence_bert_config.json")
        if st_text:
            st_length = _parse_json(st_text, "sentence_bert_config.json").get("max_seq_length")
    length = min(int(st_length), max_positions) if st_length else max_positions
    return ModelDefaults(pooling, normalize, length, max_positions, dim)


def _st_pooling(source: ModelSource, path: str) -> str:
    text = read_model_file(source, f"{path}/config.json" if path else "config.json")
    if not text:
        return "mean"
    config = _parse_json(text, f"{path}/config.json")
    chosen = [name for key, name in _ST_POOLING_KEYS.items() if config.get(key)]
    if len(chosen) != 1:
        raise EncoderConfigError(
            f"model pooling config {path}/config.json selects {chosen or 'no mode'}; "
            "pass --pooling explicitly"
        )
    return chosen[0]


def _check_local_model_files(directory: Path, weights: str | None) -> None:
    """The files a worker will need, checked now so a half-copied model fails at launch, not on every worker."""
    if not (directory / "vocab.txt").is_file():
        raise EncoderConfigError(f"no vocab.txt in model directory {directory}")
    if weights is None and not any((directory / f).is_file() for f in ("tf_model.h5", "model.safetensors")):
        raise EncoderConfigError(
            f"no weights in model directory {directory}: expected tf_model.h5 or model.safetensors (or pass --weights)"
        )


def _model_shape(source: ModelSource, backend: str) -> tuple[int, int]:
    """(maximum positions, hidden size) without loading weights."""
    if backend == "transformers":
        text = read_model_file(source, "config.json")
        if text is None:
            raise EncoderConfigError(f"no config.json in model {source.location}")
        config = _parse_json(text, "config.json")
        if config.get("model_type", "bert") != "bert":
            raise EncoderConfigError(
                f"model {source.location} is a {config.get('model_type')!r} model; only BERT is supported"
            )
        return int(config.get("max_position_embeddings", 512)), int(config.get("hidden_size", 768))
    return _hub_shape(source)


def _hub_shape(source: ModelSource) -> tuple[int, int]:
    """Shape of the position embedding table, read from the SavedModel's variables index."""
    import tensorflow as tf

    directory = source.location
    if source.kind == "url":
        from encoders.model_source import resolve_hub_handle

        directory = resolve_hub_handle(source.location)
    if not tf.io.gfile.exists(f"{directory}/saved_model.pb"):
        raise EncoderConfigError(f"no TF Hub SavedModel (saved_model.pb) at {source.location}")
    try:
        variables = _saved_variable_shapes(f"{directory}/variables/variables")
    except Exception as exc:  # noqa: BLE001
        raise EncoderConfigError(f"cannot read the variables of {source.location}: {exc}") from exc
    for path, shape in variables.items():
        if re.search(r"position_embedding", path) and len(shape) == 2:
            return int(shape[0]), int(shape[1])
    raise EncoderConfigError(f"no position embedding table in {source.location}; is it a BERT encoder?")


def _saved_variable_shapes(checkpoint: str) -> dict[str, list[int]]:
    """Shapes of a SavedModel's variables by object path (e.g. bert/embeddings/position_embeddings).

    Checkpoint keys may be positional ("variables/3/..."); the object graph stored in the
    checkpoint gives every variable a path of attribute names from the root.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph

    reader = tf.train.load_checkpoint(checkpoint)
    shapes = reader.get_variable_to_shape_map()
    graph = TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    paths: dict[int, list[str]] = {0: [""]}  # a variable can hang under several attributes
    pending = [0]
    while pending:
        node_id = pending.pop()
        for child in graph.nodes[node_id].children:
            if child.node_id not in paths:
                paths[child.node_id] = []
                pending.append(child.node_id)
            paths[child.node_id].append(f"{paths[node_id][0]}/{child.local_name}".lstrip("/"))
    result: dict[str, list[int]] = {}
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE" and attribute.checkpoint_key in shapes:
                for path in paths.get(node_id, []):
                    result[path] = shapes[attribute.checkpoint_key]
    return result


def _parse_json(text: str, what: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EncoderConfigError(f"model file {what} is not valid JSON: {exc}") from exc


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_file()
