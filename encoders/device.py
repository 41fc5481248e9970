"""Accelerator set-up and the device facts automatic settings are chosen from, done once per process.

`query_device` is the only function here that asks TensorFlow about the hardware; it returns plain
data (`DeviceInfo`), so the choosing logic (`encoders.auto`) is pure and tests fake this one query.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_GIB = 1 << 30
# TensorFlow 2.21 reports a GPU's name and compute capability but not its memory
# (`tf.config.experimental.get_device_details`; `get_memory_info` gives only what this process holds),
# so total memory comes from the name: GiB as `nvidia-smi` reports them, rounded down; first match wins.
GPU_MEMORY_GIB = (("80GB", 79), ("H100", 79), ("A100", 39), ("32GB", 31), ("V100", 15), ("P100", 15), ("L4", 22),
                  ("T4", 15), ("P4", 7))
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
    total_bytes: int | None = None  # memory of GPU:0 (see GPU_MEMORY_GIB)
    free_bytes: int | None = None  # of that, what this process's TensorFlow does not hold yet
    bfloat16_speedup: float | None = None  # CPU: float32 / bfloat16 time of one matmul; None: not probed


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
    total = gpu_memory_bytes(names[0])
    try:
        used = int(tf.config.experimental.get_memory_info("GPU:0")["current"])
    except (ValueError, RuntimeError):  # memory statistics not tracked: assume nothing is held yet
        used = 0
    info = DeviceInfo("GPU", names, capabilities, total, max(total - used, 0))
    logger.info("device: %s", info)
    return info


def gpu_memory_bytes(name: str) -> int:
    """Total memory of a GPU of this name (GPU_MEMORY_GIB), or the conservative fallback."""
    gib = next((size for part, size in GPU_MEMORY_GIB if part in name), GPU_MEMORY_FALLBACK_GIB)
    return gib * _GIB


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
