"""`python -m bench.gpu` (`make bench-gpu`): what our job does on this machine's GPU, to run there and send back.

    python -m bench.gpu [--model NAME_OR_DIR] [--corpus FILE ...] [--texts N] [--cases float32,...] [--out DIR]

Cases: float32, bfloat16, float16, float32 with XLA (`--jit_compile`), and `--precision auto` with XLA (auto:
bfloat16 from compute capability 8.0, float16 on 7.x, float32 before; on a CPU what its matmul probe favours).
For each case:
- encoder alone: texts/s of the encoder's grouped path over texts already in memory (the job's groups, the
  next ones tokenized on a host thread), after the build and one warm-up group, and its device-busy share;
- whole job: `python -m pipeline` on the same texts written to a file, in a fresh process: texts/s after the
  model build, device-busy share and the automatic settings it chose (the manifest's `performance`);
- cosine of each text's vector against float32's on the same texts (min and mean).
The encoder cases run in a child process (restarted after a crash) and each whole job in its own, so this
process never touches the device and a case that fails (XLA unsupported, out of memory) is recorded with its
error while the others run. Without a visible GPU everything runs on the CPU, labelled "CPU (not a GPU result)".
Writes results-gpu.json and results-gpu.md to bench/ (or --out DIR) and prints the markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.cpu import describe_cpu

if TYPE_CHECKING:
    from encoders import EncoderSpec
    from encoders.device import DeviceInfo

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = (REPO / "examples" / "notes-en.txt", REPO / "examples" / "reviews-zh.txt")
CASES = {  # name: (--precision, --jit_compile)
    "float32": ("float32", False),
    "bfloat16": ("bfloat16", False),
    "float16": ("float16", False),
    "float32+xla": ("float32", True),
    "auto+xla": ("auto", True),
}
REFERENCE = "float32"  # the case every other is compared with; always run
# Texts per case unless --texts: enough for seconds of work on a GPU, minutes on a CPU.
GPU_TEXTS, CPU_TEXTS = 50_000, 1_000
CPU_LABEL = "CPU (not a GPU result)"
SETUP_FILE = "setup.json"  # what the encoder child found: device and settings

logger = logging.getLogger(__name__)


class GpuCheckError(RuntimeError):
    """The check cannot run at all (no corpus, TensorFlow does not start); the message says why."""


def load_texts(corpus: list[Path], n: int) -> list[str]:
    """The corpus files' non-blank lines, repeated in order until there are n."""
    lines = [line for path in corpus for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise GpuCheckError(f"no text in {', '.join(map(str, corpus))}")
    return (lines * (n // len(lines) + 1))[:n]


def compare_vectors(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Min and mean cosine between matching rows (6 decimals: a case against itself gives 1.0), and the largest
    difference of one component, which shows a change too small for the cosine's decimals."""
    a, b = vectors.astype(np.float64), reference.astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    cosines = (a * b).sum(axis=1) / norms
    return {"cosine_min": round(float(cosines.min()), 6), "cosine_mean": round(float(cosines.mean()), 6),
            "max_abs_diff": float(f"{np.abs(a - b).max():.3g}")}


# --- the encoder child: everything that touches TensorFlow and the device ---

def run_encoder_cases(args: argparse.Namespace) -> None:
    """Describe the device and settings (SETUP_FILE), then each case's result and vectors, one file each."""
    from encoders import resolve_spec
    from encoders.device import configure_cpu_streams, configure_gpus, query_device
    from pipeline.settings import JobSettings

    configure_gpus()
    configure_cpu_streams()  # before the probe's first op fixes TensorFlow's thread pools
    info = query_device(probe=True)
    gpu = info.kind == "GPU"
    batch = args.max_batch_size or (gpu_max_batch_size() if gpu else None)  # None: the job's default
    given = {"backend": args.backend, "model": args.model, "max_seq_length": args.max_seq_length,
             **({"max_batch_size": batch} if batch else {})}
    spec = resolve_spec(**given)
    settings = {"model": spec.model, "dim": spec.dim, "max_seq_length": spec.max_seq_length,
                "max_batch_size": spec.max_batch_size, "texts": args.texts or (GPU_TEXTS if gpu else CPU_TEXTS),
                "group_size": next(f.default for f in dataclasses.fields(JobSettings) if f.name == "group_size")}
    workdir = Path(args.workdir)
    (workdir / SETUP_FILE).write_text(json.dumps({"device": describe_device(info), "settings": settings}, indent=1))
    texts = load_texts(args.corpus, settings["texts"])
    for name in args.encoder_cases.split(","):
        precision, xla = CASES[name]
        try:
            case = resolve_spec(**given, precision=precision, jit_compile=xla)
            result, vectors = measure_encoder(case, texts, settings["group_size"], gpu)
            np.save(workdir / f"vectors-{name}.npy", vectors)
        except Exception as exc:  # noqa: BLE001 - recorded as this case's result; the next case runs
            logger.exception("encoder case %s failed", name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        (workdir / f"encoder-{name}.json").write_text(json.dumps(result, indent=1))
        gc.collect()


def gpu_max_batch_size() -> int:
    """The rows per batch GPU workers run with (deploy/dataflow-gpu.flags): the CPU default keeps GPU batches small."""
    from pipeline.template import read_gpu_flags

    flag = next(f for f in read_gpu_flags() if f.startswith("--max_batch_size="))
    return int(flag.partition("=")[2])


def measure_encoder(spec: EncoderSpec, texts: list[str], group_size: int, gpu: bool) -> tuple[dict, np.ndarray]:
    """Build, warm up with one group, then time every group through `encode_groups` as the job runs them."""
    import tensorflow as tf

    from encoders import build_encoder
    from pipeline.stages.embed import PREFETCH_GROUPS

    if gpu:
        try:
            tf.config.experimental.reset_memory_stats("GPU:0")
        except (ValueError, RuntimeError):  # not tracked on this device: the peak below is then the process's
            logger.info("GPU memory statistics cannot be reset")
    encoder = build_encoder(spec)
    encoder.encode(texts[:group_size])
    groups = [texts[first:first + group_size] for first in range(0, len(texts), group_size)]
    parts, device, real, padded = [], 0.0, 0, 0
    started = time.perf_counter()
    for result in encoder.encode_groups(groups, depth=PREFETCH_GROUPS):
        if isinstance(result, Exception):
            raise result
        parts.append(result.vectors)
        device += result.seconds["device"]
        real += int(result.n_tokens.sum())
        padded += result.padded_tokens
    seconds = time.perf_counter() - started
    peak = None
    if gpu:
        try:
            peak = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20)
        except (ValueError, RuntimeError):
            logger.info("GPU memory statistics are not tracked")
    return {
        "precision_used": encoder.spec.precision, "max_tokens_per_batch": encoder.spec.max_tokens_per_batch,
        "chosen": encoder.chosen, "build_seconds": round(encoder.build_seconds, 2), "seconds": round(seconds, 3),
        "texts_per_second": round(len(texts) / seconds, 1), "device_busy_share": round(device / seconds, 3),
        "real_tokens_per_second": round(real / seconds, 1), "mean_tokens": round(real / len(texts), 1),
        "padding_efficiency": round(real / max(padded, 1), 3), "peak_gpu_memory_mib": peak,
    }, np.concatenate(parts)


def describe_device(info: DeviceInfo) -> dict:
    """The device as the report shows it: GPU names, capability and memory, or the CPU (labelled so)."""
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    described = {"kind": info.kind, "tensorflow": tf.__version__, "cuda": build.get("cuda_version"),
                 "cudnn": build.get("cudnn_version")}
    if info.kind == "GPU":
        count = f" x{len(info.names)}" if len(info.names) > 1 else ""
        return {**described, "label": f"GPU: {info.names[0]}{count}", "names": list(info.names),
                "compute_capabilities": [list(c) if c else None for c in info.compute_capabilities],
                "memory_gib": round(info.total_bytes / 2**30, 1), "memory_source": info.memory_source}
    return {**described, "label": CPU_LABEL, "cpu": describe_cpu(),
            "bfloat16_speedup": info.bfloat16_speedup and round(info.bfloat16_speedup, 2)}


# --- this process: runs the children, reads their results, writes the report ---

def check(args: argparse.Namespace, workdir: Path) -> dict:
    """Every case, encoder and whole job; the results as plain data."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    names = [REFERENCE, *(n for n in args.cases if n != REFERENCE)]
    setup, encoder_results = run_encoder_children(args, names, workdir)
    corpus_file = workdir / "corpus.txt"
    corpus_file.write_text("\n".join(load_texts(args.corpus, setup["settings"]["texts"])) + "\n", encoding="utf-8")
    reference = workdir / f"vectors-{REFERENCE}.npy"
    cases = {}
    for name in names:
        precision, xla = CASES[name]
        vectors = workdir / f"vectors-{name}.npy"
        compared = compare_vectors(np.load(vectors), np.load(reference)) \
            if vectors.exists() and reference.exists() else None
        cases[name] = {"precision": precision, "jit_compile": xla, "encoder": encoder_results[name],
                       "job": run_job(name, corpus_file, workdir, args, setup["settings"])
                       if args.job_cases is None or name in args.job_cases else {"skipped": "not in --job_cases"},
                       "vs_float32": compared}
        logger.info("%s: %s", name, json.dumps(cases[name]))
    return {"started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "nvidia_smi": nvidia_smi()},
            "device": setup["device"], "settings": {**setup["settings"], "corpus": [str(p) for p in args.corpus]},
            "cases": cases}


def run_encoder_children(args: argparse.Namespace, names: list[str], workdir: Path) -> tuple[dict, dict]:
    """(setup, {case: result}): the encoder cases in one child, a new one for the rest after a crash."""
    results: dict[str, dict] = {}
    remaining, texts, batch = list(names), args.texts, args.max_batch_size
    setup = None
    while remaining:
        argv = [sys.executable, "-m", "bench.gpu", "--encoder_cases", ",".join(remaining), "--workdir", str(workdir),
                *shared_flags(args), "--corpus", *map(str, args.corpus)]
        argv += (["--texts", str(texts)] if texts else []) + (["--max_batch_size", str(batch)] if batch else [])
        failure = run_logged(argv, workdir / "encoder.log", args.timeout * len(remaining))
        for name in list(remaining):
            if (workdir / f"encoder-{name}.json").exists():
                results[name] = json.loads((workdir / f"encoder-{name}.json").read_text())
                remaining.remove(name)
        if (workdir / SETUP_FILE).exists():
            setup = json.loads((workdir / SETUP_FILE).read_text())
            texts, batch = setup["settings"]["texts"], setup["settings"]["max_batch_size"]
        if remaining and setup is None:
            raise GpuCheckError(f"the encoder process stopped before it found the device: {failure}")
        if remaining:  # the child died inside this case
            results[remaining.pop(0)] = {"error": f"the encoder process died in this case: {failure}"}
    return setup, results


def run_job(name: str, corpus_file: Path, workdir: Path, args: argparse.Namespace, settings: dict) -> dict:
    """`python -m pipeline` for one case in a fresh process; the manifest's performance, or the error."""
    precision, xla = CASES[name]
    output = workdir / f"job-{name}"
    argv = [sys.executable, "-m", "pipeline", "--input", str(corpus_file), "--output", str(output), "--progress",
            "off", "--precision", precision, "--max_batch_size", str(settings["max_batch_size"]),
            *shared_flags(args), *(["--jit_compile"] if xla else [])]
    started = time.perf_counter()
    failure = run_logged(argv, workdir / f"job-{name}.log", args.timeout)
    if failure:
        return {"error": failure}
    manifest = json.loads((output / "_SUCCESS").read_text(encoding="utf-8"))
    perf, counts = manifest["performance"], manifest["counts"]
    after_build = max(perf["wall_seconds"] - perf["encoder_build_seconds"], 1e-9)
    return {"texts": counts["embedded"], "failed": counts["failed"],
            "process_seconds": round(time.perf_counter() - started, 2), "wall_seconds": perf["wall_seconds"],
            "build_seconds": perf["encoder_build_seconds"],
            "texts_per_second": round(counts["embedded"] / after_build, 1),
            "texts_per_second_wall": perf["texts_per_second"], "device_busy_share": perf["device_busy_share"],
            "padding_efficiency": perf["padding_efficiency"], "real_tokens_per_second": perf["real_tokens_per_second"],
            "chosen": perf.get("chosen"), "chosen_by_processes": perf.get("chosen_by_processes")}


def shared_flags(args: argparse.Namespace) -> list[str]:
    """The model settings both the encoder child and the job get."""
    return ["--backend", args.backend] + (["--model", args.model] if args.model else []) + \
        (["--max_seq_length", str(args.max_seq_length)] if args.max_seq_length else [])


def run_logged(argv: list[str], log: Path, timeout: float) -> str | None:
    """Run argv from the repository root, output appended to log; None on success, else what went wrong."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with log.open("a") as out:
        try:
            code = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f} s"
    if code == 0:
        return None
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-12:]
    return f"exit code {code}: " + "\n".join(tail)


def nvidia_smi() -> list[str] | None:
    """nvidia-smi's one-line summary per GPU (name, memory, driver), when it is installed."""
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                           "--format=csv,noheader"], capture_output=True, text=True)
    return done.stdout.strip().splitlines() if done.returncode == 0 else [done.stderr.strip()]


def render(r: dict) -> str:
    """The results as markdown: what ran where, one row per case, then the errors in full."""
    device, settings = r["device"], r["settings"]
    if device["kind"] == "GPU":
        capability = ", ".join(".".join(map(str, c)) if c else "?" for c in device["compute_capabilities"])
        where = (f"**{device['label']}** (compute capability {capability}; {device['memory_gib']} GiB, "
                 f"from {device['memory_source']})")
    else:
        cpu = device["cpu"]
        where = (f"**{CPU_LABEL}**: {cpu['model']}, {cpu['count']} CPUs, "
                 f"{', '.join(cpu['bf16_flags']) or 'no fast bfloat16'}; bfloat16 matmul probe "
                 f"{device['bfloat16_speedup']}x float32")
    lines = [
        f"# GPU check (`python -m bench.gpu`): {device['label']}",
        "",
        f"{where}. TensorFlow {device['tensorflow']} (CUDA {device['cuda'] or '-'}, cuDNN {device['cudnn'] or '-'}).",
        *([f"nvidia-smi: {'; '.join(r['machine']['nvidia_smi'])}."] if r["machine"]["nvidia_smi"] else []),
        f"Run {r['started']} to {r['finished']}: model {settings['model']} ({settings['dim']}-d), "
        f"{settings['texts']:,} texts from {', '.join(Path(p).name for p in settings['corpus'])} (repeated in order), "
        f"max length {settings['max_seq_length']}, max batch size {settings['max_batch_size']}, groups of "
        f"{settings['group_size']:,}.",
        "",
        "| case | encoder texts/s | encoder device busy | job texts/s after build | job device busy | job build s "
        "| token budget | precision used | cosine vs float32 min / mean | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    errors = []
    for name, case in r["cases"].items():
        encoder, job, compared = case["encoder"], case["job"], case["vs_float32"]
        chosen = job.get("chosen") or encoder.get("chosen") or {}
        cells = [
            name, _number(encoder, "texts_per_second"), _number(encoder, "device_busy_share", "{:.2f}"),
            _number(job, "texts_per_second"), _number(job, "device_busy_share", "{:.2f}"),
            _number(job, "build_seconds", "{:.1f}"),
            f"{budget:,}" if (budget := chosen.get("max_tokens_per_batch") or encoder.get("max_tokens_per_batch"))
            else "-",
            str(chosen.get("precision") or encoder.get("precision_used") or case["precision"]),
            f"{compared['cosine_min']:.6f} / {compared['cosine_mean']:.6f}" if compared else "-",
            f"{compared['max_abs_diff']:.2g}" if compared else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        errors += [f"- `{name}` {part}: {result['error']}" for part, result in (("encoder", encoder), ("job", job))
                   if "error" in result]
    lines += [
        "",
        "Encoder: the encoder alone on texts in memory, after its build and one warm-up group. Job: `python -m "
        "pipeline` in a fresh process, texts/s excluding the model build. Device busy: device time over wall time "
        "(after the build). Token budget: `--max_tokens_per_batch auto` as chosen on this device. Cosine: each "
        "text's vector against float32's, same texts; max abs diff: the largest difference of one component. "
        "`auto+xla` is `--precision auto --jit_compile`.",
        "",
    ]
    if errors:
        lines += ["## Errors", "", *(e.replace("\n", "\n  ") for e in errors), ""]
    return "\n".join(lines)


def _number(result: dict, key: str, fmt: str = "{:,.0f}") -> str:
    if "error" in result:
        return "error"
    value = result.get(key)
    return "-" if value is None else fmt.format(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="transformers", help="as the job's --backend (default: transformers)")
    parser.add_argument("--model", help="as the job's --model (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--corpus", nargs="+", type=Path, default=list(DEFAULT_CORPUS), metavar="FILE",
                        help="text files, one text per line (default: examples/notes-en.txt examples/reviews-zh.txt)")
    parser.add_argument("--texts", type=int, metavar="N", help=f"texts per case, the corpus repeated to fill "
                        f"(default: {GPU_TEXTS:,} on a GPU, {CPU_TEXTS:,} on a CPU)")
    parser.add_argument("--cases", type=lambda v: v.split(","), default=list(CASES), metavar="A,B",
                        help=f"a subset of {','.join(CASES)} (default: all; float32 always runs)")
    parser.add_argument("--job_cases", type=lambda v: v.split(","), metavar="A,B",
                        help="the cases that also run the whole job (default: all of --cases)")
    parser.add_argument("--max_seq_length", type=int, metavar="N", help="as the job's (default: the model's)")
    parser.add_argument("--max_batch_size", type=int, metavar="N",
                        help="as the job's (default: deploy/dataflow-gpu.flags' on a GPU, the job's on a CPU)")
    parser.add_argument("--timeout", type=float, default=3600, metavar="S",
                        help="seconds one whole job (or one encoder case) may take (default: 3600)")
    parser.add_argument("--out", type=Path, default=REPO / "bench", metavar="DIR",
                        help="where results-gpu.json and results-gpu.md go (default: bench/)")
    parser.add_argument("--keep_workdir", action="store_true", help="keep the corpus, vectors, logs and job outputs")
    parser.add_argument("--encoder_cases", help=argparse.SUPPRESS)  # the encoder child
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases + (args.job_cases or []) if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        parser.error(f"corpus file(s) not found: {', '.join(missing)}")
    if args.texts is not None and args.texts < 1:
        parser.error("--texts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.encoder_cases:
        run_encoder_cases(args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    logger.info("work dir %s", workdir)
    try:
        results = check(args, workdir)
    except GpuCheckError as exc:
        print(f"bench.gpu: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = render(results)
    (args.out / "results-gpu.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results-gpu.md").write_text(report)
    print(report)
    logger.info("wrote %s and %s: send both back", args.out / "results-gpu.md", args.out / "results-gpu.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
