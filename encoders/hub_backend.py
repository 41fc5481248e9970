"""The `hub` backend: BERT through TensorFlow Hub, `hub.KerasLayer` over a Hub BERT SavedModel.

Serves both signature families: the newer dict one (`input_word_ids`, `input_mask`,
`input_type_ids` -> dict with `pooled_output`, `sequence_output`) and the older list one
(`[input_word_ids, input_mask, segment_ids]` -> `[pooled_output, sequence_output]`). The
tokenizer comes from the module's own `vocab_file` asset and `do_lower_case` flag, or with
--hub_preprocessor from a Hub preprocessing model (`encoders.hub_preprocessing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from encoders.base import Encoder
from encoders.declare import AUTO
from encoders.errors import EncoderConfigError
from encoders.hub_preprocessing import (
    HubPreprocessorTokenizer,
    check_location,
    check_tensorflow_text,
    read_preprocessor,
)
from encoders.model_source import ModelSource, resolve_hub_handle
from encoders.registry import Backend, ModelShape, register_backend
from encoders.spec import EncoderSpec
from encoders.tokenization import JsonTokenizer, Tokenizer, WordPieceTokenizer

if TYPE_CHECKING:
    import tensorflow as tf

DICT_SIGNATURE = "dict"
LIST_SIGNATURE = "list"


def check(source: ModelSource, spec: EncoderSpec) -> None:
    """What a Hub module cannot serve, found without reading it."""
    if source.kind == "name":
        raise EncoderConfigError(
            f"--backend hub needs a TF Hub URL, a local directory or a gs:// path, not {source.location!r}"
        )
    if spec.weights is not None:
        raise EncoderConfigError("--weights applies only to --backend transformers")
    if spec.precision not in ("float32", AUTO):  # auto means float32 here (`encoders.auto`)
        raise EncoderConfigError("--precision other than float32 needs --backend transformers "
                                 "(a Hub SavedModel's dtypes are fixed when it is exported)")
    if spec.hub_preprocessor is not None:
        check_tensorflow_text()
        check_location(spec.hub_preprocessor)


def inspect(source: ModelSource, spec: EncoderSpec) -> ModelShape:
    """Shape of the position embedding table, read from the SavedModel's variables index (no graph loaded).

    With --hub_preprocessor, also reads the preprocessor's files: its vocabulary must fit the
    word-embedding table, and its length becomes the default --max_seq_length.
    """
    import tensorflow as tf

    directory = resolve_hub_handle(source.location) if source.kind == "url" else source.location
    if not tf.io.gfile.exists(f"{directory}/saved_model.pb"):
        raise EncoderConfigError(f"no TF Hub SavedModel (saved_model.pb) at {source.location}")
    try:
        variables = _saved_variable_shapes(f"{directory}/variables/variables")
    except Exception as exc:  # noqa: BLE001 - any failure means the module is unusable
        raise EncoderConfigError(f"cannot read the variables of {source.location}: {exc}") from exc
    positions = [shape for path, shape in variables.items() if "position_embedding" in path and len(shape) == 2]
    if not positions:
        raise EncoderConfigError(f"no position embedding table in {source.location}; is it a BERT encoder?")
    max_positions, dim = (int(n) for n in positions[0])
    max_positions -= _position_offset(f"{directory}/variables/variables")
    if spec.hub_preprocessor is None:
        return ModelShape(max_positions, dim)
    facts = read_preprocessor(spec.hub_preprocessor)
    rows = _word_embedding_rows(variables, dim)
    if facts.vocab_size is not None and rows is not None and facts.vocab_size > rows:  # a padded table is fine
        raise EncoderConfigError(
            f"--hub_preprocessor {spec.hub_preprocessor} has a {facts.vocab_size}-token vocabulary but the encoder's "
            f"word-embedding table has only {rows} rows: they are not a pair"
        )
    return ModelShape(max_positions, dim, packed_length=facts.seq_length)


def _position_offset(checkpoint: str) -> int:
    """Where a module's position table starts for a text's first token: 0 for BERT, padding id + 1 for
    (XLM-)RoBERTa, as `encoders.export_hub` records it (modules without the variable are BERT)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("position_offset/")]
    return int(reader.get_tensor(keys[0])) if keys else 0


def _word_embedding_rows(variables: dict[str, list[int]], dim: int) -> int | None:
    """Rows of the word-embedding table: the tallest [rows, dim] table under an embeddings path.

    Exporters name it differently (transformers: bert/embeddings/weight, Model Garden:
    word_embeddings/embeddings); position and token-type tables are far shorter than a vocabulary.
    """
    rows = [int(shape[0]) for path, shape in variables.items()
            if "embedding" in path.lower() and len(shape) == 2 and int(shape[1]) == dim]
    return max(rows, default=None)


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


class HubEncoder(Encoder):
    """Encoder over a TF Hub BERT module, loaded once when constructed."""

    def __init__(self, spec: EncoderSpec) -> None:
        import tensorflow as tf
        import tensorflow_hub as hub

        try:
            self._layer = hub.KerasLayer(spec.model, trainable=False)
        except Exception as exc:  # noqa: BLE001 - any load failure means the module is unusable
            raise EncoderConfigError(f"cannot load TF Hub module {spec.model}: {exc}") from exc
        module = self._layer.resolved_object
        tokenizer: Tokenizer = HubPreprocessorTokenizer(spec.hub_preprocessor) if spec.hub_preprocessor \
            else _module_tokenizer(module, spec.model)
        super().__init__(spec, tokenizer)
        self._family = _signature_family(module)
        probe = tf.constant([[self.tokenizer.cls_id, self.tokenizer.sep_id]], dtype=tf.int32)
        sequence_output, _ = self._forward(probe, tf.ones_like(probe))
        self._dim = int(sequence_output.shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def signature_family(self) -> str:
        """"dict" or "list": which Hub BERT calling convention the module uses."""
        return self._family

    def _forward(self, input_ids: tf.Tensor, input_mask: tf.Tensor):
        import tensorflow as tf

        type_ids = tf.zeros_like(input_ids)
        if self._family == DICT_SIGNATURE:
            outputs = self._layer(
                {"input_word_ids": input_ids, "input_mask": input_mask, "input_type_ids": type_ids}
            )
            return outputs["sequence_output"], outputs["pooled_output"]
        pooled_output, sequence_output = self._layer([input_ids, input_mask, type_ids])
        return sequence_output, pooled_output


def _module_tokenizer(module, handle: str) -> Tokenizer:
    tokenizer_file = getattr(module, "tokenizer_file", None)
    if tokenizer_file is not None:  # a model's own tokenizer.json (`encoders.export_hub`)
        pad_id = getattr(module, "pad_id", None)
        return JsonTokenizer(tokenizer_file.asset_path.numpy().decode("utf-8"),
                             None if pad_id is None else int(pad_id.numpy()))
    vocab_file = getattr(module, "vocab_file", None)
    do_lower_case = getattr(module, "do_lower_case", None)
    if vocab_file is None or do_lower_case is None:
        raise EncoderConfigError(
            f"TF Hub module {handle} has no vocab_file/do_lower_case; it is not a BERT encoder module"
        )
    vocab_path = vocab_file.asset_path.numpy().decode("utf-8")
    return WordPieceTokenizer(vocab_path, lowercase=bool(do_lower_case.numpy()))


def _signature_family(module) -> str:
    """Read the calling convention off the module's traced __call__ input signature."""
    call = module.__call__ if callable(module) else None
    for concrete in getattr(call, "concrete_functions", None) or []:
        args = concrete.structured_input_signature[0]
        if args and isinstance(args[0], dict):
            return DICT_SIGNATURE
        if args and isinstance(args[0], (list, tuple)):
            return LIST_SIGNATURE
    raise EncoderConfigError(
        "cannot tell the TF Hub module's input signature: expected a dict "
        "(input_word_ids/input_mask/input_type_ids) or a list of three tensors"
    )


register_backend(Backend("hub", check=check, inspect=inspect, load=HubEncoder, reduced_precision=False))
