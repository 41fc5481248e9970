"""The device replaced for benchmarks: a null device, a simulated GPU, or the tiny real model (shared by the benches).

Benchmarks of the host path and of scale need the job to run as it does, with only the model call
swapped: `replace_device` does it in this process; `install_from_environment` does it in processes
the benchmark does not start itself (the SDK workers of the portable runner), from BENCH_DEVICE.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL_DIR = REPO / "bench" / "data" / "tiny-model"
TINY_MODEL = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 128,
              "max_position_embeddings": 512}
# An NVIDIA L4 running all-MiniLM-L6-v2 in float16: about an eighth of an H100's 1.48 M real tokens/s
# (docs/dependencies.md, GPU facts), i.e. ~185,000 real tokens/s, ~200,000 padded tokens/s.
L4_MINILM_PADDED_TOKENS_PER_SECOND = 200_000
# BENCH_DEVICE: "null" (zeros, no time) or "simulated:SECONDS_PER_PADDED_TOKEN"; unset, the real model runs.
DEVICE_VARIABLE = "BENCH_DEVICE"
_BACKEND_MODULE = "encoders.transformers_backend"


def build_tiny_model(directory: Path = TINY_MODEL_DIR) -> Path:
    """The near-zero BERT: the default model's vocabulary, 1 layer of width 32, random weights (built once)."""
    if (directory / "tf_model.h5").exists():
        return directory
    from encoders.model_source import embedded_model_dir
    from tests.model_factory import write_random_bert

    vocab = (Path(embedded_model_dir()) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return write_random_bert(directory, vocab, **TINY_MODEL)


def device_setting(seconds_per_padded_token: float | None) -> str | None:
    """The BENCH_DEVICE value for a device: None the real model, 0 the null device, else a simulated one."""
    if seconds_per_padded_token is None:
        return None
    return "null" if seconds_per_padded_token == 0 else f"simulated:{seconds_per_padded_token!r}"


def replace_device(seconds_per_padded_token: float) -> None:
    """Replace the transformers backend's model in this process by a device call that returns zeros.

    The call sleeps (releasing the GIL, as a GPU call does) for padded tokens x seconds_per_padded_token;
    0 costs nothing. Tokenizing, batching and everything around the model run as they do.
    """
    import numpy as np

    import encoders.transformers_backend as backend
    from encoders.base import Encoder
    from encoders.registry import Backend, register_backend

    class FakeDevice(Encoder):
        def __init__(self, spec) -> None:
            super().__init__(spec, backend.tokenizer_from_model_dir(spec.model))

        @property
        def dim(self) -> int:
            return self.spec.dim

        def _forward(self, input_ids, input_mask):
            raise NotImplementedError("no model: the device call is replaced")

        def embed_token_ids(self, input_ids: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
            if seconds_per_padded_token:
                time.sleep(input_ids.size * seconds_per_padded_token)
            return np.zeros((input_ids.shape[0], self.dim), dtype=np.float32)

        def warm_up(self) -> None:
            pass

    register_backend(Backend("transformers", check=backend.check, inspect=backend.inspect, load=FakeDevice))


def _seconds_per_token(setting: str) -> float:
    return 0.0 if setting == "null" else float(setting.split(":", 1)[1])


class _ReplaceAfterImport(importlib.abc.MetaPathFinder):
    """Replaces the device right after the backend module is first imported (so its own registration comes first)."""

    def __init__(self, seconds_per_padded_token: float) -> None:
        self._seconds = seconds_per_padded_token

    def find_spec(self, name, path, target=None):
        if name != _BACKEND_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module
        seconds = self._seconds

        def exec_module(module) -> None:
            run_module(module)
            replace_device(seconds)

        spec.loader.exec_module = exec_module
        return spec


def install_from_environment() -> None:
    """Replace the device as BENCH_DEVICE says, once the backend is imported; nothing when it is unset.

    Called from a `sitecustomize` the benchmark puts on PYTHONPATH (`worker_site_dir`), so every Python
    process of the run (the portable runner's SDK workers too) gets the same device, and processes that
    never import the backend (job service, worker pool) import nothing more.
    """
    setting = os.environ.get(DEVICE_VARIABLE)
    if not setting:
        return
    if _BACKEND_MODULE in sys.modules:
        replace_device(_seconds_per_token(setting))
    else:
        sys.meta_path.insert(0, _ReplaceAfterImport(_seconds_per_token(setting)))


def worker_site_dir(directory: Path) -> Path:
    """A directory holding a `sitecustomize.py` that calls `install_from_environment`; put it on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        '"""Benchmark hook: the device replaced as BENCH_DEVICE says (bench/device.py)."""\n'
        "from bench.device import install_from_environment\n\ninstall_from_environment()\n")
    return directory


def cpu_flags() -> list[str]:
    """Which CPU flavour this is: fast bfloat16 (AMX, AVX512-BF16) or not."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")})


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (lscpu's "Model name")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
