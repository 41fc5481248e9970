"""GPU readiness on a CPU: every op the encoder runs per batch has a GPU kernel for its dtypes.

TensorFlow would put an op without one on the CPU, silently, turning a GPU run into a crawl that no
CPU test notices. The graph checked is the real one: `Encoder.device_function()`, the traced function
`embed_token_ids` calls for every batch (forward pass and pooling), with the library functions it
calls (the Hub module's restored functions). Under XLA (`jit_compile`) the ops must have XLA's GPU
compilation kernels instead (`encoders.gpu_kernels`). The checks read TensorFlow's kernel registry,
which the wheel carries even on a machine without a GPU.

Cases: the transformers backend on the real default model at every precision, with and without XLA,
and with every pooling; the hub backend (float32 only: a Hub module's dtypes are fixed when it is
exported) on tiny exports of both signature families, made by our own exporter from transformers'
BERT layer, so the graph is the real export's with 2 layers instead of 6.

--hub_preprocessor is not part of the device graph, by design, and is not held to GPU kernels: its
tokenizer runs eagerly in `Encoder.prepare` on the host thread (`HubPreprocessorTokenizer.token_runs`),
and only int32 ids reach the device function. Its string ops have CPU kernels only (shown below), so
they run on the CPU in every real setup; what the tests hold is that the preprocessor adds nothing to
the device graph.
"""

import pytest

from encoders import build_encoder, resolve_spec
from encoders.gpu_kernels import GPU, XLA_GPU, OpUse, check_gpu_kernels
from tests.hub_recipe import PREPROCESSOR
from tests.model_factory import TINY_CONFIG, write_random_bert

PRECISIONS = ["float32", "bfloat16", "float16"]
XLA = pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])


def assert_gpu_ready(report) -> None:
    """Fail with the report's own account of what lacks a kernel (op types, dtypes, functions)."""
    __tracebackhide__ = True
    if not report.ok:
        pytest.fail(report.describe(), pytrace=False)


def device_report(**settings):
    encoder = build_encoder(resolve_spec(**settings), warm_up=False)
    return check_gpu_kernels(encoder.device_function())


@pytest.fixture(scope="module")
def tiny_hub_list(tiny_bert_dir, tmp_path_factory):
    from encoders.export_hub import export_hub_module

    out = tmp_path_factory.mktemp("tiny-hub-list") / "module"
    export_hub_module(str(tiny_bert_dir), str(out), signature="list")
    return out


@pytest.fixture(scope="module")
def tiny_hub_pairing_the_preprocessor(tmp_path_factory):
    """A tiny Hub module whose vocabulary is the preprocessor's own (30,522 tokens), so the two are a pair."""
    from encoders.export_hub import export_hub_module

    vocab = (PREPROCESSOR / "assets" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    bert = write_random_bert(tmp_path_factory.mktemp("tiny-bert-preprocessor-vocab"), vocab, **TINY_CONFIG)
    out = bert / "hub"
    export_hub_module(str(bert), str(out))
    return out


@XLA
@pytest.mark.parametrize("precision", PRECISIONS)
def test_default_model_has_a_gpu_kernel_for_every_op(precision, jit_compile):
    report = device_report(precision=precision, jit_compile=jit_compile)
    assert_gpu_ready(report)
    assert report.device_type == (XLA_GPU if jit_compile else GPU)
    # The graph checked computes attention in the precision asked for.
    assert report.checked[OpUse("BatchMatMulV2", (("T", precision),))] == 2 * 6  # two per layer, 6 layers


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler", "max"])
def test_every_pooling_has_a_gpu_kernel_for_every_op(pooling):
    report = device_report(pooling=pooling, normalize=False)
    assert_gpu_ready(report)


@XLA
@pytest.mark.parametrize("signature", ["dict", "list"])
def test_hub_module_has_a_gpu_kernel_for_every_op(request, signature, jit_compile):
    module = request.getfixturevalue("tiny_hub_dir" if signature == "dict" else "tiny_hub_list")
    report = device_report(backend="hub", model=str(module), jit_compile=jit_compile)
    assert_gpu_ready(report)
    assert report.checked[OpUse("BatchMatMulV2", (("T", "float32"),))] == 2 * 2  # inside the module's functions


@XLA
def test_hub_preprocessor_adds_nothing_to_the_device_graph(tiny_hub_pairing_the_preprocessor, jit_compile):
    module = str(tiny_hub_pairing_the_preprocessor)
    with_preprocessor = device_report(backend="hub", model=module, hub_preprocessor=str(PREPROCESSOR),
                                      jit_compile=jit_compile)
    alone = device_report(backend="hub", model=module, jit_compile=jit_compile)
    assert_gpu_ready(with_preprocessor)
    assert with_preprocessor.checked == alone.checked


def test_the_preprocessors_tokenizer_has_cpu_only_ops_so_it_stays_on_the_host():
    import tensorflow as tf

    from encoders.hub_preprocessing import load_preprocessor

    module = load_preprocessor(str(PREPROCESSOR))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        tokens = module.tokenize(texts)
        return tokens.flat_values, tokens.row_splits

    report = check_gpu_kernels(tokenize.get_concrete_function())
    assert {"WordpieceTokenizeWithOffsets", "NormalizeUTF8", "CaseFoldUTF8"} <= {use.op for use in report.missing}


def _softplus_and_string_length(jit_compile: bool):
    """A function with two ops known to lack GPU kernels: bfloat16 Softplus (in a nested function), StringLength."""
    import tensorflow as tf

    nested = tf.function(lambda x: tf.math.softplus(tf.cast(x, tf.bfloat16)))

    def run(x, texts):
        return nested(x), tf.math.softplus(x), tf.strings.length(texts)

    signature = [tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.string)]
    return tf.function(run, input_signature=signature, jit_compile=jit_compile).get_concrete_function()


def test_ops_without_a_gpu_kernel_for_their_dtypes_are_reported_with_them():
    report = check_gpu_kernels(_softplus_and_string_length(jit_compile=False))
    softplus_bf16 = OpUse("Softplus", (("T", "bfloat16"),))
    string_length = OpUse("StringLength", (("input", "string"), ("output", "int32")))
    assert set(report.missing) == {softplus_bf16, string_length}  # float32 Softplus has one
    (nested,) = report.missing[softplus_bf16]
    assert "lambda" in nested  # found inside the called function, not the caller
    message = report.describe()
    assert not report.ok
    assert "Softplus[T=bfloat16]" in message and "StringLength[input=string, output=int32]" in message


def test_under_xla_ops_are_held_to_xlas_gpu_kernels():
    report = check_gpu_kernels(_softplus_and_string_length(jit_compile=True))
    assert report.device_type == XLA_GPU
    assert [use.op for use in report.missing] == ["StringLength"]  # XLA compiles bfloat16 Softplus for a GPU
    assert "XLA cannot compile" in report.describe()


def test_an_op_pinned_to_the_cpu_is_reported():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def run(x):
        with tf.device("/CPU:0"):
            return tf.math.square(x)

    report = check_gpu_kernels(run.get_concrete_function())
    assert any(node.endswith("/Square") for node in report.pinned_to_cpu)
    assert not report.missing and not report.ok


def test_an_assert_and_its_string_message_need_no_gpu_compute():
    """Assert is a DEVICE_DEFAULT kernel taking its data in host memory; its message is a string constant."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def run(ids):
        tf.debugging.assert_less(ids, 100, message="id out of range")
        return ids + 1

    report = check_gpu_kernels(run.get_concrete_function())
    assert_gpu_ready(report)
    assert any(use.op == "Const" and ("dtype", "string") in use.dtypes for use in report.checked)
