"""Automatic settings (`--precision auto`, `--max_tokens_per_batch auto`), chosen where the encoder is built.

The launcher is often not the machine that runs the model (a Dataflow job is built on a laptop and
runs on GPU workers), so automatic values are chosen in `build_encoder`, once per worker process,
from `encoders.device.query_device`. The choosing itself is pure functions of the facts that query
returns, so tests fake only the query.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from encoders import device
from encoders.batching import CPU_TOKEN_BUDGET
from encoders.declare import AUTO, declared
from encoders.device import BFLOAT16_MIN_SPEEDUP, DeviceInfo
from encoders.model_source import parse_model_source
from encoders.registry import ModelShape, get_backend

if TYPE_CHECKING:
    from encoders.spec import EncoderSpec

logger = logging.getLogger(__name__)

# --precision auto on a GPU: bfloat16 needs Ampere or later (A100, L4: 8.x; H100: 9.0); float16 tensor
# cores start with Volta (V100: 7.0, T4: 7.5). Older GPUs (P100, P4) gain nothing from either (TensorFlow
# warns so), so they keep float32, as does a GPU whose capability is not reported.
BFLOAT16_MIN_CAPABILITY = (8, 0)
FLOAT16_MIN_CAPABILITY = (7, 0)

# --max_tokens_per_batch auto on a GPU (see `gpu_token_budget`).
VALUE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # activations are computed in the compute type
# Tensors alive at once inside one transformer layer, counted per token, as an upper estimate: graph mode
# frees each tensor after its last use, so layers do not add up. Hidden-wide: the layer input (kept for
# the residual), Q, K, V and their head-split copies, the context and the output projection. Intermediate-
# wide: the feed-forward projection and GELU's temporaries. Per head and key position: the attention
# scores, the masked scores and the softmax.
LIVE_HIDDEN, LIVE_INTERMEDIATE, LIVE_SCORES = 8, 3, 3
# The share of free GPU memory activations may take; the rest holds the weights (float32, plus their
# reduced-precision copies), the CUDA/cuDNN/cuBLAS workspaces, allocator fragmentation and the estimate's error.
SAFETY_FRACTION = 0.5
GPU_TOKEN_BUDGET_RANGE = (8192, 262144)
TOKEN_BUDGET_STEP = 1024
# Many TensorFlow GPU kernels index with int32: one attention-score tensor must stay below 2**31 values.
_MAX_TENSOR_VALUES = 2**31 - 1


def choose_precision(info: DeviceInfo, reduced_precision: bool = True) -> str:
    """The compute type for `--precision auto` on this device; float32 when the backend cannot reduce."""
    if not reduced_precision:
        return "float32"
    if info.kind == "GPU":
        capabilities = info.compute_capabilities
        if not capabilities or any(c is None for c in capabilities):
            return "float32"
        if all(c >= BFLOAT16_MIN_CAPABILITY for c in capabilities):
            return "bfloat16"
        if all(c >= FLOAT16_MIN_CAPABILITY for c in capabilities):
            return "float16"
        return "float32"
    speedup = info.bfloat16_speedup
    return "bfloat16" if speedup is not None and speedup >= BFLOAT16_MIN_SPEEDUP else "float32"


def activation_bytes_per_token(hidden: int, intermediate: int, heads: int, max_seq_length: int,
                               value_bytes: int) -> int:
    """Bytes of activations one token of a batch padded to max_seq_length holds at the peak of a layer.

    The attention term grows with the padded length: each token has one score per head and key position.
    """
    values = LIVE_HIDDEN * hidden + LIVE_INTERMEDIATE * intermediate + LIVE_SCORES * heads * max_seq_length
    return value_bytes * values


def gpu_token_budget(free_bytes: int, hidden: int, intermediate: int, heads: int, max_seq_length: int,
                     value_bytes: int) -> int:
    """Padded tokens per forward pass that fit SAFETY_FRACTION of free_bytes, for a model of these sizes.

    floor(SAFETY_FRACTION * free / activation_bytes_per_token), at most what keeps one attention-score
    tensor int32-indexable, rounded down to a multiple of TOKEN_BUDGET_STEP and clamped to
    GPU_TOKEN_BUDGET_RANGE. Pure arithmetic.
    """
    per_token = activation_bytes_per_token(hidden, intermediate, heads, max_seq_length, value_bytes)
    tokens = int(SAFETY_FRACTION * max(free_bytes, 0)) // per_token
    tokens = min(tokens, _MAX_TENSOR_VALUES // (heads * max_seq_length))
    lowest, highest = GPU_TOKEN_BUDGET_RANGE
    return max(lowest, min(highest, tokens // TOKEN_BUDGET_STEP * TOKEN_BUDGET_STEP))


def choose_token_budget(info: DeviceInfo, shape: ModelShape | None, max_seq_length: int, precision: str) -> int:
    """`--max_tokens_per_batch auto` on this device: CPU_TOKEN_BUDGET on a CPU, else sized from GPU:0's free memory.

    shape is the model's (needed on a GPU only); sizes its files do not give follow BERT's conventions:
    a feed-forward four times the hidden width, and heads of width 32 (more heads than BERT's 64-wide
    ones, so more attention memory: the safe side).
    """
    if info.kind != "GPU":
        return CPU_TOKEN_BUDGET
    if shape is None:
        raise ValueError("sizing a GPU batch needs the model's shape")
    intermediate = shape.intermediate or 4 * shape.dim
    heads = shape.heads or max(1, shape.dim // 32)
    return gpu_token_budget(info.free_bytes or 0, shape.dim, intermediate, heads, max_seq_length,
                            VALUE_BYTES[precision])


def resolve_for_device(spec: EncoderSpec) -> EncoderSpec:
    """The resolved spec with its automatic values chosen for this process's device (spec itself if none are).

    Asks the device once; reads the model's small config again only to size a GPU batch.
    """
    auto_precision = spec.precision == AUTO
    if not auto_precision and spec.max_tokens_per_batch is not None:
        return spec
    backend = get_backend(spec.backend)
    info = device.query_device(probe=auto_precision and backend.reduced_precision)
    precision = choose_precision(info, backend.reduced_precision) if auto_precision else spec.precision
    budget = spec.max_tokens_per_batch
    if budget is None:
        shape = None
        if info.kind == "GPU":  # the model's widths, from its small config files
            shape = backend.inspect(parse_model_source(spec.model), spec)
        budget = choose_token_budget(info, shape, spec.max_seq_length, precision)
    concrete = dataclasses.replace(spec, precision=precision, max_tokens_per_batch=budget)
    logger.info("automatic settings on %s: %s", ", ".join(info.names) or info.kind, chosen_values(spec, concrete))
    return concrete


def chosen_values(given: EncoderSpec, concrete: EncoderSpec) -> dict[str, object]:
    """{setting: value used} for the settings given as automatic (AUTO, or None for an auto int), in declared order."""
    return {
        item.name: getattr(concrete, item.name)
        for item in declared(type(given))
        if getattr(given, item.name) == AUTO or (item.declaration.auto and getattr(given, item.name) is None)
    }
