"""Automatic precision and token budget: chosen from the device facts; only the device query is faked.

GPU paths cannot run here (docs/dependencies.md, "GPU facts"), so `encoders.device.query_device` is
replaced by one returning what a GPU machine would report; everything else is the real code.
"""

import dataclasses
import json
import subprocess
import sys
import time
import types

import pytest

from encoders import EncoderConfigError, EncoderSpec, resolve_spec
from encoders import device as device_module
from encoders.auto import CPU_TOKEN_BUDGET, choose_precision, chosen_values, gpu_token_budget, resolve_for_device
from encoders.device import DeviceInfo, cpu_streams

GB = 10**9
BERT_BASE = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "max_position_embeddings": 512}


def gpus(*capabilities, memory=24 * GB, name="NVIDIA L4") -> DeviceInfo:
    return DeviceInfo("GPU", (name,) * len(capabilities), capabilities, memory, memory)


def cpu(speedup: float) -> DeviceInfo:
    return DeviceInfo("CPU", bfloat16_speedup=speedup)


A100, L4, H100, T4, V100, P100 = (8, 0), (8, 9), (9, 0), (7, 5), (7, 0), (6, 0)


@pytest.fixture
def fake_device(monkeypatch):
    """Make the device query report info; returns the probe flag of every call (the real query probes only then)."""
    calls = []

    def install(info: DeviceInfo) -> list[bool]:
        def query_device(probe: bool = False) -> DeviceInfo:
            calls.append(probe)
            return info if probe else dataclasses.replace(info, bfloat16_speedup=None)

        monkeypatch.setattr(device_module, "query_device", query_device)
        return calls

    return install


def config_only_model(directory, shape: dict):
    """A model directory enough for resolve_spec and the GPU sizing (config, vocab, a weights file name)."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", **shape}))
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]) + "\n")
    (directory / "model.safetensors").write_bytes(b"")  # never loaded here
    return str(directory)


@pytest.fixture
def minilm_shaped(minilm_dir):
    """The real all-MiniLM-L6-v2 (hidden 384, intermediate 1536, 12 heads, length 256); only its config is read."""
    return str(minilm_dir)


@pytest.fixture
def bert_base_shaped(tmp_path):
    return config_only_model(tmp_path / "bert-base", BERT_BASE)


@pytest.mark.parametrize(("capabilities", "expected"), [
    ((A100,), "bfloat16"), ((H100,), "bfloat16"), ((L4,), "bfloat16"), ((A100, H100, L4), "bfloat16"),
    ((T4,), "float16"), ((V100,), "float16"),
    ((A100, T4), "float16"),  # mixed: every visible GPU must support the type
    ((P100,), "float32"), ((L4, P100), "float32"),  # no tensor cores: reduced precision gains nothing
    ((A100, None), "float32"),  # a capability not reported: keep the default
])
def test_precision_auto_on_gpus_follows_the_weakest_compute_capability(fake_device, minilm_shaped,
                                                                     capabilities, expected):
    probes = fake_device(gpus(*capabilities))
    spec = resolve_for_device(resolve_spec(model=minilm_shaped, precision="auto"))
    assert spec.precision == expected
    assert probes == [True]  # asked once, a probe allowed (the real query probes only a CPU)


@pytest.mark.parametrize(("speedup", "expected"), [(4.5, "bfloat16"), (1.3, "bfloat16"), (1.29, "float32"),
                                                   (0.5, "float32")])
def test_precision_auto_on_a_cpu_takes_bfloat16_only_where_the_probe_measures_it_faster(
        fake_device, minilm_shaped, speedup, expected):
    probes = fake_device(cpu(speedup))
    spec = resolve_for_device(resolve_spec(model=minilm_shaped, precision="auto"))
    assert (spec.precision, spec.max_tokens_per_batch) == (expected, CPU_TOKEN_BUDGET)
    assert probes == [True]


def test_hub_backend_auto_means_float32_and_explicit_bfloat16_is_still_an_error(fake_device, tiny_hub_dir):
    probes = fake_device(gpus(A100))
    spec = resolve_spec(backend="hub", model=str(tiny_hub_dir), precision="auto", max_tokens_per_batch=4096)
    assert resolve_for_device(spec).precision == "float32"
    assert probes == [False]  # nothing to probe for a backend that only computes in float32
    with pytest.raises(EncoderConfigError, match="needs --backend transformers"):
        resolve_spec(backend="hub", model=str(tiny_hub_dir), precision="bfloat16")


def test_explicit_values_are_kept_and_the_device_is_not_asked(fake_device, minilm_shaped):
    probes = fake_device(gpus(A100))
    spec = resolve_spec(model=minilm_shaped, precision="float16", max_tokens_per_batch=4096)
    assert resolve_for_device(spec) is spec and probes == []


def test_the_default_spec_keeps_float32_and_only_the_budget_is_automatic(fake_device, minilm_shaped):
    probes = fake_device(cpu(4.5))
    given = resolve_spec(model=minilm_shaped)
    assert (given.precision, given.max_tokens_per_batch) == ("float32", None)
    spec = resolve_for_device(given)
    assert (spec.precision, spec.max_tokens_per_batch) == ("float32", CPU_TOKEN_BUDGET)
    assert probes == [False]  # float32 was asked for: no probe
    assert chosen_values(given, spec) == {"max_tokens_per_batch": CPU_TOKEN_BUDGET}


# Budgets by hand: tokens = 0.5 * free / (bytes * (8 * hidden + 3 * intermediate + 3 * heads * max_seq_length)),
# rounded down to a multiple of 1024 and clamped to [8192, 262144].
# MiniLM at 256: 16,896 values a token; BERT-base at 512: 33,792.
@pytest.mark.parametrize(("shape", "device", "expected"), [
    # 0.5 * 24e9 / (2 * 16,896) = 355,113 -> above the clamp
    ("minilm", gpus(L4, memory=24 * GB), ("bfloat16", 262_144)),
    # 0.5 * 16e9 / (2 * 16,896) = 236,742 -> 236,544
    ("minilm", gpus(T4, memory=16 * GB, name="Tesla T4"), ("float16", 236_544)),
    # 0.5 * 24e9 / (2 * 33,792) = 177,556 -> 177,152
    ("bert-base", gpus(L4, memory=24 * GB), ("bfloat16", 177_152)),
    # 0.5 * 16e9 / (2 * 33,792) = 118,371 -> 117,760
    ("bert-base", gpus(T4, memory=16 * GB, name="Tesla T4"), ("float16", 117_760)),
])
def test_token_budget_auto_on_gpus_is_sized_from_free_memory_and_the_model_shape(
        fake_device, minilm_shaped, bert_base_shaped, shape, device, expected):
    fake_device(device)
    model = minilm_shaped if shape == "minilm" else bert_base_shaped
    given = resolve_spec(model=model, precision="auto")
    assert given.max_seq_length == (256 if shape == "minilm" else 512)
    spec = resolve_for_device(given)
    assert (spec.precision, spec.max_tokens_per_batch) == expected
    assert chosen_values(given, spec) == {"max_tokens_per_batch": expected[1], "precision": expected[0]}


def test_token_budget_counts_the_bytes_of_the_precision_used(fake_device, bert_base_shaped):
    fake_device(gpus(T4, memory=16 * GB))
    spec = resolve_for_device(resolve_spec(model=bert_base_shaped))  # float32: twice the bytes of float16
    assert (spec.precision, spec.max_tokens_per_batch) == ("float32", 58_368)  # 0.5 * 16e9 / (4 * 33,792) = 59,185


@pytest.mark.parametrize(("free", "shape", "value_bytes", "expected"), [
    (1 * GB, (768, 3072, 12, 512), 4, 8_192),  # 3,699 fits: clamped up (a batch of one long text always runs)
    (0, (768, 3072, 12, 512), 2, 8_192),
    (400 * GB, (384, 1536, 12, 256), 2, 262_144),  # clamped down
    # BERT-large on 80 GB: 443,892 would fit, but one 16-head attention-score tensor must stay under 2**31
    # values: (2**31 - 1) // (16 * 512) = 262,143 -> 261,120
    (80 * GB, (1024, 4096, 16, 512), 2, 261_120),
    (16 * GB, (384, 1536, 12, 128), 2, 262_144),  # shorter windows hold fewer attention scores per token
])
def test_gpu_token_budget_clamps(free, shape, value_bytes, expected):
    assert gpu_token_budget(free, *shape, value_bytes) == expected


def test_gpu_token_budget_is_a_multiple_of_1024_that_grows_with_memory():
    budgets = [gpu_token_budget(gb * GB, 768, 3072, 12, 512, 2) for gb in (8, 12, 16, 24, 40)]
    assert budgets == sorted(budgets) and all(b % 1024 == 0 for b in budgets)


def test_choosing_needs_no_tensorflow():
    code = ("import sys; from encoders.auto import gpu_token_budget, choose_precision; "
            "from encoders.device import DeviceInfo; "
            "assert gpu_token_budget(16 * 10**9, 384, 1536, 12, 256, 2) == 236544; "
            "assert choose_precision(DeviceInfo('GPU', ('T4',), ((7, 5),), 1, 1)) == 'float16'; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_choose_precision_without_reduced_precision_support_is_float32():
    assert choose_precision(gpus(H100), reduced_precision=False) == "float32"
    assert choose_precision(cpu(4.5), reduced_precision=False) == "float32"


GIB = 1 << 30


@pytest.mark.parametrize(("name", "gib"), [
    # names as nvidia-smi and TensorFlow spell them
    ("NVIDIA H200", 140), ("NVIDIA H200 NVL", 140), ("NVIDIA B200", 179),
    ("NVIDIA GH200 480GB", 95),  # not an H200, and 480GB is the Grace CPU's memory, not "80GB"
    ("NVIDIA H100 80GB HBM3", 79), ("NVIDIA H100 PCIe", 79), ("NVIDIA H100 NVL", 93),
    ("NVIDIA A100-SXM4-80GB", 79), ("NVIDIA A100 80GB PCIe", 79), ("NVIDIA A100-SXM4-40GB", 39),
    ("NVIDIA A100-PCIE-40GB", 39),
    ("NVIDIA L40S", 44), ("NVIDIA L40", 44), ("NVIDIA L4", 22),
    ("NVIDIA A10G", 22), ("NVIDIA A10", 22),
    ("NVIDIA RTX 6000 Ada Generation", 47), ("NVIDIA RTX A6000", 47),
    ("Tesla T4", 15), ("Tesla V100-SXM2-16GB", 15), ("Tesla V100-SXM2-32GB", 31), ("Tesla P100-PCIE-16GB", 15),
    ("Tesla P100-PCIE-12GB", 11), ("Tesla P4", 7),
])
def test_the_name_table_knows_each_gpu_and_a_longer_name_never_takes_a_shorter_ones_size(name, gib):
    assert device_module.named_memory(name) == (gib * GIB, "name table")


@pytest.mark.parametrize("name", ["Some Future GPU", "Quadro RTX 6000", "Tesla P40"])
def test_an_unknown_gpu_gets_the_conservative_fallback(name):
    assert device_module.named_memory(name) == (7 * GIB, "fallback")


class FakeNvml(types.ModuleType):
    """The `pynvml` module as a GPU machine's driver answers it: the device query, nothing else, is faked."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices: list[tuple[str, int]], fail: str | None = None) -> None:
        super().__init__("pynvml")
        self.devices, self.fail, self.calls = devices, fail, []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise self.NVMLError(f"{name} failed")

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._call("nvmlDeviceGetName")
        return self.devices[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        return types.SimpleNamespace(total=self.devices[handle][1], free=0, used=0)


@pytest.fixture
def nvml(monkeypatch):
    def install(devices: list[tuple[str, int]], fail: str | None = None) -> FakeNvml:
        fake = FakeNvml(devices, fail)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return install


def test_nvmls_answer_wins_over_the_name_table(nvml):
    nvml([("NVIDIA H200", 143_771 << 20)])
    assert device_module.gpu_memory("NVIDIA H200") == (143_771 << 20, "nvml")


def test_nvml_matches_tensorflows_gpu_by_name_not_by_index(nvml):
    # CUDA_VISIBLE_DEVICES may hide or reorder GPUs for TensorFlow; NVML lists them all
    a100 = "NVIDIA A100-SXM4-80GB"
    nvml([("NVIDIA L4", 23_034 << 20), (a100, 81_920 << 20), (a100, 81_000 << 20)])
    assert device_module.gpu_memory(a100) == (81_000 << 20, "nvml")  # the least of that name


def test_nvml_listing_no_gpu_of_that_name_leaves_it_to_the_table(nvml):
    nvml([("NVIDIA L4", 23_034 << 20)])
    assert device_module.gpu_memory("Tesla T4") == (15 * GIB, "name table")


@pytest.mark.parametrize("failing", ["nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetMemoryInfo"])
def test_an_nvml_failure_falls_back_to_the_name_table(nvml, failing):
    fake = nvml([("NVIDIA H200", 143_771 << 20)], fail=failing)
    assert device_module.gpu_memory("NVIDIA H200") == (140 * GIB, "name table")
    assert ("nvmlShutdown" in fake.calls) == (failing != "nvmlInit")  # initialised once, shut down once


def test_without_pynvml_the_name_table_answers(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert device_module.gpu_memory("NVIDIA L4") == (22 * GIB, "name table")


def test_the_real_pynvml_falls_back_to_the_name_table_for_a_gpu_it_does_not_report():
    pytest.importorskip("pynvml", reason="the `gpu` extra (nvidia-ml-py) is not installed")
    # here: no NVIDIA driver, so nvmlInit fails; on a GPU machine: no GPU of this made-up name
    assert device_module.gpu_memory("NVIDIA L40S (not installed)") == (44 * GIB, "name table")


def test_the_real_query_on_this_cpu_probes_quickly():
    device_module._bfloat16_speedup.cache_clear()
    started = time.perf_counter()
    info = device_module.query_device(probe=True)
    seconds = time.perf_counter() - started
    assert info.kind == "CPU" and info.bfloat16_speedup > 0 and seconds < 1.0, (info, seconds)
    assert device_module.query_device().bfloat16_speedup is None  # not probed unless asked


def test_auto_int_settings_must_be_optional_ints():
    from encoders.declare import declared, setting

    @dataclasses.dataclass(frozen=True)
    class Wrong:
        size: str | None = setting(None, "x", "recorded", auto=True)

    with pytest.raises(TypeError, match="auto=True needs"):
        declared(Wrong)
    assert EncoderSpec(max_tokens_per_batch=None).max_tokens_per_batch is None


@pytest.mark.parametrize("cores, expected", [(1, (1, 1)), (2, (2, 1)), (3, (2, 1)), (8, (2, 4)), (64, (2, 32))])
def test_a_cpu_runs_two_batches_at_a_time_on_its_share_of_the_cores(cores, expected):
    assert cpu_streams(cores) == expected


def test_a_fresh_process_on_this_cpu_sets_threads_per_op_for_two_streams():
    import os

    code = ("import tensorflow as tf; from encoders import build_encoder, resolve_spec; "
            "e = build_encoder(resolve_spec()); "
            "print(e.device_streams, tf.config.threading.get_intra_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    streams, threads = cpu_streams(len(os.sched_getaffinity(0)))
    assert out.stdout.split() == [str(streams), str(threads)]


def test_a_gpu_runs_one_batch_at_a_time(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
    assert device_module.configure_cpu_streams() == 1
