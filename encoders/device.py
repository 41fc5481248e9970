"""Accelerator set-up and the device facts automatic settings are chosen from, done once per process.

`query_device` is the only function here that asks TensorFlow about the hardware; it returns plain
data (`DeviceInfo`), so the choosing logic (`encoders.auto`) is pure and tests fake this one query.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_GIB = 1 << 30
# --precision auto on a CPU (`encoders.auto`): bfloat16 pays only with native support (AMX, avx512_bf16):
# measured there ~4.5x on the probe's matmul and 1.3-1.6x on the whole model; without it bfloat16 is ~2x
# slower (docs/dependencies.md).
BFLOAT16_MIN_SPEEDUP = 1.3
# TensorFlow 2.21 reports a GPU's name and compute capability but not its memory
# (`tf.config.experimental.get_device_details`; `get_memory_info` gives only what this process holds).
# Total memory comes from NVML when the `pynvml` module (PyPI `nvidia-ml-py`, the `gpu` extra) and the driver's
# library answer, else from the name: GiB as `nvidia-smi` reports them (MiB total), rounded down. First match
# wins; patterns match whole words, so "A10" is not "A100", "H200" is not "GH200" and "80GB" is not "480GB".
GPU_MEMORY_GIB = (
    (r"\bGH200\b", 95),  # 97,871 MiB (96 GB HBM3; the 144 GB variant gets the smaller); "480GB" counts CPU memory
    (r"\bH200\b", 140),  # 143,771 MiB, H200 and H200 NVL (141 GB)
    (r"\bB200\b", 179),  # 183,359 MiB
    (r"\bH100\b.*\b(NVL|94GB)\b", 93),  # 95,830 MiB
    (r"\bH100\b", 79),  # 81,559 MiB: SXM and PCIe, 80 GB
    (r"\bA100\b.*\b80GB\b", 79),
    (r"\bA100\b", 39),  # 40 GB: 40,960 MiB (SXM4) or 40,536 (PCIe)
    (r"\bL40S?\b", 44),  # 46,068 MiB
    (r"\bRTX 6000 Ada\b", 47),  # 49,140 MiB ("NVIDIA RTX 6000 Ada Generation")
    (r"\bRTX A6000\b", 47),  # 49,140 MiB (Ampere, also 48 GB)
    (r"\bA10G?\b", 22),  # 23,028 MiB: A10 and AWS's A10G, 24 GB
    (r"\bL4\b", 22),  # 23,034 MiB
    (r"\bV100\b.*\b32GB\b", 31),
    (r"\bV100\b", 15),
    (r"\bP100\b.*\b12GB\b", 11),
    (r"\bP100\b", 15),
    (r"\bT4\b", 15),
    (r"\bP4\b", 7),
    (r"\b80GB\b", 79),  # an unlisted model that states its size
    (r"\b32GB\b", 31),
)
# An unknown GPU is assumed to be the smallest Dataflow offers (NVIDIA P4, 8 GB): a smaller batch, never an OOM.
GPU_MEMORY_FALLBACK_GIB = 7


# On a CPU, batches run this many at a time, each op of a batch on its share of the cores: a BERT layer's
# small ops (LayerNorm, softmax, transposes) hardly gain from a second thread, two batches side by side do.
# Measured on 2 cores (default model, Chinese reviews at max length 256, one process): 1.11-1.14x the texts/s
# of one batch at a time on both cores. Two, not one per core: each batch in flight holds its activations.
CPU_STREAMS = 2


@dataclass(frozen=True)
class DeviceInfo:
    """What this process computes on, as plain data."""

    kind: str  # "GPU" when TensorFlow sees one (the model then runs on GPU:0), else "CPU"
    names: tuple[str, ...] = ()  # GPU model names, e.g. "NVIDIA L4"
    compute_capabilities: tuple[tuple[int, int] | None, ...] = ()  # one per visible GPU; None: not reported
    total_bytes: int | None = None  # memory of GPU:0 (see `gpu_memory`)
    free_bytes: int | None = None  # of that, what this process's TensorFlow does not hold yet
    bfloat16_speedup: float | None = None  # CPU: float32 / bfloat16 time of one matmul; None: not probed
    memory_source: str | None = None  # where total_bytes came from: "nvml", "name table" or "fallback"


def configure_gpus() -> list[str]:
    """Turn on memory growth on every visible GPU; returns their names.

    TensorFlow otherwise reserves nearly all GPU memory for the first model, so a second
    worker process (or a second model copy) on the same GPU could not start. Must run
    before the first op is placed on a GPU; later calls are harmless no-ops.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the device is already initialised; growth was set earlier or cannot be
            logger.debug("memory growth for %s not changed: already initialised", gpu.name)
    if gpus:
        logger.info("inference on %d GPU(s) with memory growth: %s", len(gpus), ", ".join(g.name for g in gpus))
    return [gpu.name for gpu in gpus]


def cpu_streams(cores: int) -> tuple[int, int]:
    """(batches run at once, threads per op) on a CPU with this many cores."""
    streams = max(1, min(CPU_STREAMS, cores))
    return streams, max(1, cores // streams)


def configure_cpu_streams() -> int:
    """Set TensorFlow's per-op threads for `cpu_streams` and return how many batches may run at once.

    1 on a GPU, and 1 when TensorFlow already runs with other thread settings (its thread pools are
    fixed once the first op ran, e.g. by an earlier model in this process): then one batch at a time
    uses every core, as before. Call before the first op, as `configure_gpus`.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return 1
    streams, threads = cpu_streams(len(os.sched_getaffinity(0)))
    if streams == 1:
        return 1
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised with other settings
            logger.info("TensorFlow's thread pools are already set: one batch at a time")
            return 1
    logger.info("CPU: %d batches at a time, %d thread(s) per op", streams, threads)
    return streams


def query_device(probe: bool = False) -> DeviceInfo:
    """The visible GPUs (names, compute capabilities, GPU:0 memory), or the CPU and, with probe, its bfloat16 speed.

    Call after `configure_gpus`: reading GPU memory initialises the device. The probe (CPU only)
    times a matmul in both types, under 0.2 s; it runs once per process.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        info = DeviceInfo("CPU", bfloat16_speedup=_bfloat16_speedup() if probe else None)
        if info.bfloat16_speedup is not None:
            logger.info("device: CPU; a bfloat16 matmul runs %.2fx as fast as float32", info.bfloat16_speedup)
        return info
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    names = tuple(str(d.get("device_name") or gpu.name) for d, gpu in zip(details, gpus, strict=True))
    capabilities = tuple(tuple(d["compute_capability"]) if d.get("compute_capability") else None for d in details)
    total, source = gpu_memory(names[0])
    try:
        used = int(tf.config.experimental.get_memory_info("GPU:0")["current"])
    except (ValueError, RuntimeError):  # memory statistics not tracked: assume nothing is held yet
        used = 0
    info = DeviceInfo("GPU", names, capabilities, total, max(total - used, 0), memory_source=source)
    logger.info("device: %s", info)
    return info


def gpu_memory(name: str) -> tuple[int, str]:
    """(total bytes, source) of a GPU of this name: NVML's answer when it gives one, else `named_memory`."""
    total = nvml_memory_bytes(name)
    if total:
        return total, "nvml"
    return named_memory(name)


def named_memory(name: str) -> tuple[int, str]:
    """(total bytes, source) from GPU_MEMORY_GIB ("name table"), or the conservative fallback ("fallback")."""
    for pattern, gib in GPU_MEMORY_GIB:
        if re.search(pattern, name):
            return gib * _GIB, "name table"
    logger.warning("GPU %r is not in the memory table: assuming %d GiB (install the `gpu` extra for NVML)",
                   name, GPU_MEMORY_FALLBACK_GIB)
    return GPU_MEMORY_FALLBACK_GIB * _GIB, "fallback"


def nvml_memory_bytes(name: str) -> int | None:
    """Total memory NVML reports for GPUs of this name (the least, if they differ); None when it cannot tell.

    NVML numbers every GPU of the machine while TensorFlow sees only CUDA_VISIBLE_DEVICES, possibly in
    another order, so GPUs are matched by name rather than by index. None without the `pynvml` module,
    without the driver's library, or when no GPU of that name is listed.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            totals = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                listed = pynvml.nvmlDeviceGetName(handle)
                if isinstance(listed, bytes):  # older nvidia-ml-py releases return bytes
                    listed = listed.decode("utf-8", "replace")
                if listed.strip() == name.strip():
                    totals.append(int(pynvml.nvmlDeviceGetMemoryInfo(handle).total))
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        logger.info("NVML did not answer (%s): GPU memory from the name table", exc)
        return None
    if not totals:
        logger.info("NVML lists no GPU named %r: GPU memory from the name table", name)
        return None
    return min(totals)


@functools.cache
def _bfloat16_speedup(size: int = 1024, repeats: int = 5) -> float:
    """How many times faster a size x size matmul runs in bfloat16 than in float32 on this CPU (best of repeats).

    CPUs of the same machine type differ (docs/dependencies.md "CPU flavours"): with AMX bfloat16
    is several times faster, without it twice slower, so it is measured, not looked up.
    """
    import tensorflow as tf

    best = {}
    with tf.device("/CPU:0"):
        a = tf.random.uniform((size, size))
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.cast(a, dtype)
            tf.linalg.matmul(x, x).numpy()  # the first call picks and prepares the kernel
            best[dtype] = math.inf
            for _ in range(repeats):
                started = time.perf_counter()
                tf.linalg.matmul(x, x).numpy()
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    return best[tf.float32] / max(best[tf.bfloat16], 1e-9)
