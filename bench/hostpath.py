"""`make bench-hostpath`: what the job costs per process besides the model, stage by stage.

    .venv/bin/python -m bench.hostpath [--copies 3] [--corpus bench/data/reviews-zh.txt]

The whole job (text file -> Parquet) runs on the reviews corpus repeated `--copies` times at
max length 256, in a fresh process per measurement, with:
- `null`: a device call that costs nothing (the vectors are zeros): the host path's ceiling;
- `null-serial`: the same without the host thread that prepares the next groups;
- `tiny-model`: a real 1-layer, 32-wide BERT with random weights and the default model's vocab;
- `simulated-gpu` / `simulated-gpu-serial`: a device call that sleeps (releasing the GIL, as
  a GPU call does) for padded tokens / `--device_tokens_per_second`, with and without overlap.
Beside them, in the same run, `tokenizers`' own `encode_batch` on the same texts (groups of
1,024), and the ratio of the two. Results go to bench/results-hostpath.{md,json}. A benchmark,
not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.device import L4_MINILM_PADDED_TOKENS_PER_SECOND, build_tiny_model, cpu_flags, replace_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "bench" / "data" / "reviews-zh.txt"
MODES = ("null", "null-serial", "tiny-model", "simulated-gpu", "simulated-gpu-serial")


def run_mode(mode: str, corpus: Path, output: Path, model: Path, device_rate: float) -> None:
    """One measurement, in this process: the job through the CLI, with the device replaced as the mode says."""
    if mode != "tiny-model":
        replace_device(0.0 if mode.startswith("null") else 1.0 / device_rate)
    if mode.endswith("-serial"):
        import pipeline.stages.embed

        pipeline.stages.embed.PREFETCH_GROUPS = 0
    from pipeline.cli import main

    code = main(["--input", str(corpus), "--output", str(output), "--model", str(model), "--max_seq_length", "256",
                 "--progress", "off", "--overwrite"])
    sys.exit(code)


def tokenizer_rate(texts: list[str], model: Path) -> float:
    """Texts/s of `tokenizers`' encode_batch alone, in groups of 1,024 (as the job tokenizes)."""
    from encoders.transformers_backend import tokenizer_from_model_dir

    tokenizer = tokenizer_from_model_dir(str(model))._tokenizer
    tokenizer.encode_batch(texts[:1024], add_special_tokens=False)
    start = time.perf_counter()
    for first in range(0, len(texts), 1024):
        tokenizer.encode_batch(texts[first:first + 1024], add_special_tokens=False)
    return len(texts) / (time.perf_counter() - start)


def parse_rate(lines: list[str]) -> float:
    """Texts/s of decoding, validating and normalising lines alone (`formats.records.parse_line`), one thread."""
    from pipeline.formats.records import InputFormat, parse_line

    fmt = InputFormat("text")
    raw = [line.encode("utf-8") for line in lines]
    start = time.perf_counter()
    for number, line in enumerate(raw, 1):
        parse_line(line, "corpus.txt", number, fmt)
    return len(raw) / (time.perf_counter() - start)


def measure(mode: str, corpus: Path, workdir: Path, model: Path, device_rate: float) -> dict:
    """Run one mode in a fresh process; its manifest's performance block and the derived account."""
    output = workdir / f"out-{mode}"
    subprocess.run([sys.executable, "-m", "bench.hostpath", "--run", mode, "--corpus", str(corpus), "--output",
                    str(output), "--model", str(model), "--device_tokens_per_second", str(device_rate)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    manifest = json.loads((output / "_SUCCESS").read_text())
    perf = manifest["performance"]
    after_build = perf["wall_seconds"] - perf["encoder_build_seconds"]
    stages = perf.get("stage_seconds", {})  # absent in versions before the account (for old-vs-new runs)
    main_thread = sum(stages.get(s, 0.0) for s in ("read", "wait", "device", "copy", "arrow"))
    if mode.endswith("-serial"):  # no host thread: tokenizing and batching happen on the DoFn thread
        main_thread += stages.get("tokenize", 0.0) + stages.get("batch", 0.0)
    return {
        "mode": mode,
        "texts": manifest["counts"]["embedded"],
        "wall_seconds": perf["wall_seconds"],
        "build_seconds": perf["encoder_build_seconds"],
        "texts_per_second_after_build": manifest["counts"]["embedded"] / after_build,
        "device_busy_share": perf.get("device_busy_share", float("nan")),
        "stage_seconds": stages,
        # What no stage accounts for on the thread that runs the DoFns: Beam and Python glue.
        "other_seconds": round(max(after_build - main_thread, 0.0), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--device_tokens_per_second", type=float, default=L4_MINILM_PADDED_TOKENS_PER_SECOND)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--output", type=Path, default=REPO / "bench")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.run:
        run_mode(args.run, args.corpus, args.output, args.model, args.device_tokens_per_second)
        return
    if not args.corpus.exists():
        sys.exit(f"corpus {args.corpus} not found: run `make bench-corpus` (or pass --corpus FILE)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-hostpath-"))
    lines = [t for t in args.corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = lines * args.copies
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    model = args.model or build_tiny_model()
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "python": platform.python_version(), "cpu_flags": cpu_flags()},
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "texts": len(texts),
                     "device_tokens_per_second": args.device_tokens_per_second}
    results["tokenizer_texts_per_second"] = tokenizer_rate(texts, model)
    results["parse_texts_per_second"] = parse_rate(texts)
    logging.info("tokenizer alone: %.0f texts/s", results["tokenizer_texts_per_second"])
    results["modes"] = []
    for mode in args.modes.split(","):
        row = measure(mode, corpus, workdir, model, args.device_tokens_per_second)
        row["tokenizer_over_job"] = results["tokenizer_texts_per_second"] / row["texts_per_second_after_build"]
        results["modes"].append(row)
        logging.info("%s", json.dumps(row))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results-hostpath.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.output / "results-hostpath.md").write_text(render(results))
    print(render(results))


def render(r: dict) -> str:
    """The results as Markdown."""
    stages = ("read", "wait", "device", "copy", "arrow", "tokenize", "batch", "parquet")
    out = [
        "# Host path profile (`make bench-hostpath`)",
        "",
        f"{r['texts']:,} reviews (the reviews corpus repeated), max length 256, one process, {r['started']}, "
        f"{r['machine']['cpus']} CPUs, flags {', '.join(r['machine']['cpu_flags']) or 'none'}.",
        f"`tokenizers` `encode_batch` alone on the same texts: **{r['tokenizer_texts_per_second']:,.0f} texts/s**; "
        f"decoding, validating and normalising them alone (`parse_line`, one thread): "
        f"{r.get('parse_texts_per_second', 0):,.0f} texts/s, so of `read` about "
        f"{r['texts'] / max(r.get('parse_texts_per_second', 0), 1):.2f} s is validate/normalise, the rest reading "
        "and splitting lines.",
        f"Simulated GPU: {r['device_tokens_per_second']:,.0f} padded tokens/s (an L4 running MiniLM, estimated).",
        "",
        "| mode | texts/s after build | tokenizer / job | device busy | "
        + " | ".join(f"{s} s" for s in stages) + " | other s |",
        "|---" * (4 + len(stages) + 1) + "|",
    ]
    for row in r["modes"]:
        cells = [row["mode"], f"{row['texts_per_second_after_build']:,.0f}", f"{row['tokenizer_over_job']:.2f}",
                 f"{row['device_busy_share']:.2f}", *(f"{row['stage_seconds'].get(s, 0):.2f}" for s in stages),
                 f"{row['other_seconds']:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "Stage seconds are busy time summed over threads, so they overlap. The DoFn thread: read (read, decode, "
        "validate, normalise), wait (for the host thread), device, copy, arrow (hashes, Arrow table); the host "
        "thread: tokenize, batch (plan, pad); the writer thread: parquet (encode, write). `other` is the DoFn "
        "thread's time outside its stages: Beam and Python glue. `-serial` turns the host thread off.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
