"""GPU readiness without a GPU: whether every op of a traced function has a GPU kernel for its dtypes.

TensorFlow places an op that has no GPU kernel for its dtypes on the CPU without a word, so a
GPU run would copy tensors to the host and back mid-graph and crawl, while every CPU test
passes. The TensorFlow wheel registers its GPU kernels even on a machine without a GPU, so the
check runs anywhere: `check_gpu_kernels(encoder.device_function())`.

What counts as "has a kernel" follows TensorFlow's own lookup (`FindKernelRegistration` in
core/framework/op_kernel.cc, `KernelAttrsMatch` in kernel_def_util.cc): a kernel registered for
the device type, or else for DEVICE_DEFAULT (which serves GPUs; NoOp, ReadVariableOp and the
function-call ops are registered only there), whose label is the node's `_kernel` attr and whose
every constraint allows the node's attr value. Attrs a node leaves at their default (SavedModels
strip those) take the op's default, as TensorFlow fills them before placing.

A function XLA must compile (`jit_compile=True`, attr `_XlaMustCompile`) never runs TensorFlow's
GPU kernels: XLA turns each op into its own code, or fails to compile the function (an error,
not a slowdown). Its ops are checked against XLA's GPU compilation kernels (device type
`XLA_GPU_JIT`) instead, which XLA registers at the first compilation in a process; XLA devices
have no DEVICE_DEFAULT fallback.

Walked: the function's own nodes and those of every library function it reaches (calls through
PartitionedCall and friends, while/if bodies, a node whose op is a function's name). Not nodes,
so never checked: a function's arguments and results (Placeholders while tracing, `_Arg` and
`_Retval` when instantiated), which carry tensors to and from whatever device runs the function.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tensorflow.core.framework.attr_value_pb2 import AttrValue
    from tensorflow.core.framework.function_pb2 import FunctionDef
    from tensorflow.core.framework.kernel_def_pb2 import KernelDef
    from tensorflow.core.framework.node_def_pb2 import NodeDef

GPU = "GPU"
XLA_GPU = "XLA_GPU_JIT"
_DEFAULT = "DEFAULT"  # TensorFlow's DEVICE_DEFAULT
_MUST_COMPILE = "_XlaMustCompile"

# Nodes that need no GPU kernel of their own, by (op type, dtype), and why.
NEEDS_NO_GPU_KERNEL = {
    ("Const", "string"): "TensorFlow keeps strings in host memory on every device: a string constant is host "
                         "data that does no work per batch (in our graphs, the message of an Assert, whose GPU "
                         "kernel takes its data in host memory)",
}


class KernelRegistryError(Exception):
    """This TensorFlow build cannot answer the question (it registers no GPU kernels at all)."""


@dataclass(frozen=True, order=True)
class OpUse:
    """An op type with the dtypes one node gives its type attrs, e.g. BatchMatMulV2[T=bfloat16]."""

    op: str
    dtypes: tuple[tuple[str, str], ...] = ()  # (attr, dtype name); a list(type) attr gives "int32,string"

    def __str__(self) -> str:
        return f"{self.op}[{', '.join(f'{attr}={dtype}' for attr, dtype in self.dtypes)}]"


@dataclass(frozen=True)
class KernelReport:
    """What `check_gpu_kernels` found in one traced function and the library functions it reaches."""

    device_type: str  # GPU, or XLA_GPU_JIT for a function XLA must compile
    checked: Counter[OpUse] = field(default_factory=Counter)  # every node walked
    missing: dict[OpUse, tuple[str, ...]] = field(default_factory=dict)  # no kernel -> functions holding it
    pinned_to_cpu: tuple[str, ...] = ()  # nodes whose requested device is a CPU, as function/node

    @property
    def ops(self) -> int:
        """Nodes walked, function-call nodes included."""
        return sum(self.checked.values())

    @property
    def ok(self) -> bool:
        return not self.missing and not self.pinned_to_cpu

    def describe(self) -> str:
        """One paragraph a failing test or a log line can show: what lacks a kernel, where."""
        if self.ok:
            return f"all {self.ops} ops have a {self.device_type} kernel for their dtypes"
        effect = f"XLA cannot compile these for a GPU ({XLA_GPU})" if self.device_type == XLA_GPU \
            else "these would run on the CPU of a GPU machine"
        lines = [f"of {self.ops} ops, {effect}:"]
        lines += [f"  {use} x{self.checked[use]}: no {self.device_type} kernel for these dtypes, "
                  f"in {', '.join(functions)}" for use, functions in sorted(self.missing.items())]
        lines += [f"  {node}: its requested device is a CPU" for node in self.pinned_to_cpu]
        return "\n".join(lines)


def check_gpu_kernels(function) -> KernelReport:
    """Check every op a tf ConcreteFunction runs (its library functions too) against the GPU kernel registry.

    Reads the graph and the registry only; runs nothing, except one tiny XLA compilation per process
    when the function must be compiled and XLA has registered nothing yet. Raises KernelRegistryError
    on a TensorFlow build without GPU kernels (there every op would look CPU-only).
    """
    _require_registered(GPU)
    checked: Counter[OpUse] = Counter()
    missing: dict[OpUse, list[str]] = {}
    pinned: list[str] = []
    for current, device_type, library in _reachable_functions(function):
        name = current.signature.name
        for node in current.node_def:
            use = op_use(node)
            checked[use] += 1
            if "CPU" in node.device.upper():
                pinned.append(f"{name}/{node.name}")
            if node.op in library or _needs_no_kernel(use, device_type):  # a call by name: its body is walked
                continue
            if not has_kernel(node, device_type) and name not in missing.setdefault(use, []):
                missing[use].append(name)
    top_device = XLA_GPU if _must_compile(function.function_def) else GPU
    return KernelReport(top_device, checked, {use: tuple(names) for use, names in missing.items()}, tuple(pinned))


def _reachable_functions(function) -> Iterator[tuple[FunctionDef, str, dict[str, FunctionDef]]]:
    """(FunctionDef, device type its ops need kernels for, library) of the function and each one it calls.

    Inside a function XLA must compile, everything it calls is compiled too.
    """
    library = {f.signature.name: f for f in function.graph.as_graph_def().library.function}
    top = function.function_def
    pending = [(top, XLA_GPU if _must_compile(top) else GPU)]
    seen = {top.signature.name}
    while pending:
        current, device_type = pending.pop()
        yield current, device_type, library
        for node in current.node_def:
            for callee in _called_functions(node, library):
                if callee not in seen:
                    seen.add(callee)
                    compiled = device_type == XLA_GPU or _must_compile(library[callee], node)
                    pending.append((library[callee], XLA_GPU if compiled else GPU))


def has_kernel(node: NodeDef, device_type: str) -> bool:
    """Whether TensorFlow would find a kernel for this node on this device type (see the module docstring)."""
    attrs = _attrs_with_defaults(node)
    label = attrs["_kernel"].s.decode() if "_kernel" in attrs else ""
    for registered in ((device_type, _DEFAULT) if not device_type.startswith("XLA_") else (device_type,)):
        if any(kernel.label == label and _constraints_allow(kernel, attrs)
               for kernel in _kernels(node.op, registered)):
            return True
    return False


def op_use(node: NodeDef) -> OpUse:
    """The node's op type and its dtypes: each type attr's (defaults filled), then each argument the op fixes.

    E.g. MatMul[T=bfloat16], StringLength[input=string, output=int32]. Internal attrs (`_...`) are left out.
    """
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    dtypes = []
    for name, value in sorted(_attrs_with_defaults(node).items()):
        if name.startswith("_"):
            continue
        kind = value.WhichOneof("value")
        if kind == "type":
            dtypes.append((name, tf.as_dtype(value.type).name))
        elif kind == "list" and value.list.type:
            dtypes.append((name, ",".join(tf.as_dtype(t).name for t in value.list.type)))
    op_def = op_def_registry.get(node.op)
    fixed = [*op_def.input_arg, *op_def.output_arg] if op_def is not None else []
    dtypes += [(arg.name, tf.as_dtype(arg.type).name) for arg in fixed if arg.type]
    return OpUse(node.op, tuple(dtypes))


def _needs_no_kernel(use: OpUse, device_type: str) -> bool:
    return device_type == GPU and any((use.op, dtype) in NEEDS_NO_GPU_KERNEL for _, dtype in use.dtypes)


def _constraints_allow(kernel: KernelDef, attrs: dict[str, AttrValue]) -> bool:
    """KernelAttrsMatch: every constraint's allowed values hold the node's value (each one, for a list attr)."""
    for constraint in kernel.constraint:
        value = attrs.get(constraint.name)
        if value is None:
            return False
        allowed = constraint.allowed_values.list
        if allowed.type:
            given = [value.type] if value.WhichOneof("value") == "type" else list(value.list.type)
            if not all(dtype in allowed.type for dtype in given):
                return False
        elif allowed.s and value.s not in allowed.s:
            return False
        elif allowed.i and value.i not in allowed.i:
            return False
        elif allowed.b and value.b not in allowed.b:
            return False
    return True


def _attrs_with_defaults(node: NodeDef) -> dict[str, AttrValue]:
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    attrs = {attr.name: attr.default_value for attr in op_def.attr if attr.HasField("default_value")} \
        if op_def is not None else {}
    attrs.update(node.attr)
    return attrs


def _called_functions(node: NodeDef, library: dict[str, FunctionDef]) -> list[str]:
    """Library functions a node runs: its op itself, or function-valued attrs (f, body, cond, branches...)."""
    names = [node.op] if node.op in library else []
    for value in node.attr.values():
        names += [value.func.name] if value.WhichOneof("value") == "func" else [f.name for f in value.list.func]
    return [name for name in names if name in library]


def _must_compile(function: FunctionDef, caller: NodeDef | None = None) -> bool:
    """Whether XLA compiles the function: its own attr, or the attr on the node calling it."""
    attrs = [function.attr] + ([caller.attr] if caller is not None else [])
    return any(_MUST_COMPILE in attr and attr[_MUST_COMPILE].b for attr in attrs)


@functools.cache
def _kernels(op: str, device_type: str) -> tuple[KernelDef, ...]:
    from tensorflow.python.framework import kernels

    if device_type.startswith("XLA_"):
        _require_registered(device_type)
    return tuple(k for k in kernels.get_registered_kernels_for_op(op).kernel if k.device_type == device_type)


@functools.cache
def _require_registered(device_type: str) -> None:
    """Make sure the registry knows this device type's kernels, or say why it cannot."""
    import tensorflow as tf
    from tensorflow.python.framework import kernels

    def registered() -> bool:
        return any(k.device_type == device_type for k in kernels.get_all_registered_kernels().kernel)

    if device_type.startswith("XLA_") and not registered():
        tf.function(lambda x: x + 1.0, jit_compile=True)(tf.ones([1]))  # XLA registers at its first compilation
    if not registered():
        raise KernelRegistryError(
            f"this TensorFlow build registers no {device_type} kernels (a CPU-only build?), so GPU readiness "
            "cannot be checked with it; use the tensorflow wheel the project pins"
        )
