"""`python -m pipeline`: embed text shards into Parquet with a BERT encoder.

Exit codes: 0 success; 2 configuration error (one line on stderr, found before the
pipeline starts); 1 the pipeline failed.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import re
import sys
import time

from encoders import BACKENDS, POOLING_METHODS, EncoderConfigError
from encoders.spec import LONG_TEXT_MODES, PRECISIONS
from pipeline.errors import JobConfigError
from pipeline.progress import MODES as PROGRESS_MODES
from pipeline.records import DEFAULT_MAX_CHARS
from pipeline.shards import FORMATS

logger = logging.getLogger(__name__)

EPILOG = """Any standard Apache Beam pipeline option is accepted too, e.g. --runner DirectRunner,
--direct_num_workers 2 --direct_running_mode multi_processing, or the DataflowRunner's options."""


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump: the contract for exit 2
        raise JobConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The job's own flags; Beam's are passed through untouched."""
    parser = _OneLineErrorParser(
        prog="python -m pipeline",
        description="Embed every text of some shards with a BERT encoder and write the vectors as Parquet.",
        epilog=EPILOG,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", action="append", metavar="PATTERN",
                    help="glob of input shards: local path, gs://, s3://, memory://, ... (repeatable)")
    io.add_argument("--output", metavar="DIR", help="output directory for Parquet files, failed/ and _SUCCESS")
    io.add_argument("--format", default="auto", choices=FORMATS,
                    help="text: one document per line; jsonl: one JSON object per line; csv/tsv: a header "
                         "row, then one record per row; parquet; auto: by extension "
                         "(.jsonl/.ndjson/.json, .csv, .tsv, .parquet; text otherwise; "
                         ".gz/.bz2/.zst on top) (default: auto)")
    io.add_argument("--text_field", metavar="F",
                    help="field (JSON key, CSV column, Parquet column) holding the text (default: text)")
    io.add_argument("--id_field", metavar="F",
                    help="field holding the document id; a repeated id goes to failed/ "
                         "(default: <shard path>:<line or row number>)")
    io.add_argument("--encoding", default="utf-8", metavar="E",
                    help="text encoding of the shards; undecodable lines go to failed/ (default: utf-8)")
    io.add_argument("--max_chars", type=int, default=DEFAULT_MAX_CHARS, metavar="N",
                    help="a text longer than this goes to failed/ as too_long (default: 1000000)")
    io.add_argument("--overwrite", action="store_true",
                    help="replace a finished run in --output made with different settings (a rerun of the same "
                         "settings always replaces it)")
    io.add_argument("--run_date", metavar="YYYY-MM-DD",
                    help="fills {run_date} (and {previous_date}, the day before) in --input and --output, "
                         "e.g. --output gs://b/out/dt={run_date} (default: today, UTC)")
    io.add_argument("--skip_existing", metavar="PATTERN",
                    help="glob of earlier output Parquet files (e.g. gs://b/out/dt={previous_date}/*.parquet): "
                         "a record whose id and text are already there under the same model fingerprint is "
                         "not embedded again (counted as reused)")
    io.add_argument("--snapshot", action="store_true",
                    help="with --skip_existing: copy the reused rows into this output, so it holds every record")
    io.add_argument("--records_per_file", type=int, default=10_000, metavar="N",
                    help="each input shard is cut into parts of at most N records; one Parquet file per part "
                         "(default: 10000)")
    model = parser.add_argument_group("model")
    model.add_argument("--backend", default="transformers", choices=BACKENDS,
                       help="transformers: Hugging Face TFBertModel; hub: TF Hub BERT module (default: transformers)")
    model.add_argument("--model", metavar="NAME_OR_PATH",
                       help="model name, local or gs:// directory, or TF Hub URL "
                            "(default: the embedded all-MiniLM-L6-v2)")
    model.add_argument("--weights", metavar="FILE",
                       help="Keras HDF5 weights file of a fine-tuned TFBertMainLayer model, loaded by layer name")
    model.add_argument("--pooling", choices=POOLING_METHODS,
                       help="how token vectors become one vector (default: the model's own config, else mean)")
    norm = model.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                      help="L2-normalise vectors (default: the model's own config, else off)")
    norm.add_argument("--no_normalize", dest="normalize", action="store_false", help="do not L2-normalise")
    model.add_argument("--max_seq_length", type=int, metavar="N",
                       help="tokens per text incl. [CLS]/[SEP]; longer texts are truncated "
                            "(default: the model's own config, else its maximum)")
    model.add_argument("--long_text", default="truncate", choices=LONG_TEXT_MODES,
                       help="a text longer than --max_seq_length: truncate keeps its first tokens and sets "
                            "`truncated`; chunk embeds every window and averages them weighted by tokens, "
                            "setting `n_chunks` (default: truncate)")
    model.add_argument("--chunk_overlap", type=int, metavar="N",
                       help="with --long_text chunk: tokens shared by consecutive windows "
                            "(default: one eighth of the window)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max_batch_size", type=int, default=64, metavar="N",
                          help="most texts in one forward pass (default: 64)")
    batching.add_argument("--max_tokens_per_batch", type=int, default=8192, metavar="N",
                          help="most padded tokens in one forward pass (default: 8192)")
    batching.add_argument("--precision", default="float32", choices=PRECISIONS,
                          help="compute type; bfloat16/float16 use Keras mixed precision, meant for GPUs "
                               "(default: float32)")
    batching.add_argument("--jit_compile", action="store_true",
                          help="compile the forward pass and pooling with XLA, one program per bucket length")
    batching.add_argument("--progress", default="auto", choices=("auto", *PROGRESS_MODES),
                          help="local runs: show texts/s, tokens/s and share of input read; auto: in place on "
                               "a terminal, log lines otherwise, off on distributed runners (default: auto)")
    return parser


def prepare(argv: list[str]):
    """(JobConfig, Beam PipelineOptions, runs locally) from the command line; raises JobConfigError."""
    args, beam_args = build_parser().parse_known_args(argv)
    options = _beam_options(beam_args)
    local, progress = _execution(options, args.progress)
    _check_dataflow_options(options)
    run_date = parse_run_date(args.run_date)
    from pipeline.config import job_config

    config = job_config(
        inputs=[expand_dates(i, run_date) for i in args.input or []],
        output=expand_dates(args.output, run_date) if args.output else None,
        fmt=args.format,
        text_field=args.text_field,
        id_field=args.id_field,
        encoding=args.encoding,
        max_chars=args.max_chars,
        backend=args.backend,
        model=args.model,
        weights=args.weights,
        pooling=args.pooling,
        normalize=args.normalize,
        max_seq_length=args.max_seq_length,
        max_batch_size=args.max_batch_size,
        max_tokens_per_batch=args.max_tokens_per_batch,
        precision=args.precision,
        jit_compile=args.jit_compile,
        long_text=args.long_text,
        chunk_overlap=args.chunk_overlap,
        rebalance=not local,
        progress=progress,
        overwrite=args.overwrite,
        records_per_file=args.records_per_file,
        check_storage=local,
        skip_existing=expand_dates(args.skip_existing, run_date) if args.skip_existing else None,
        snapshot=args.snapshot,
    )
    if not local and args.model is None:
        from apache_beam.options.pipeline_options import WorkerOptions

        if not options.view_as(WorkerOptions).sdk_container_image:
            logger.warning("the default model is installed by the worker image (deploy/worker/Dockerfile), not by "
                           "--setup_file: pass --sdk_container_image, or --model with a gs:// model directory")
    return config, options, local


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("pipeline", "encoders"):
        logging.getLogger(ours).setLevel(logging.INFO)
    try:
        config, options, local = prepare(argv)
    except (JobConfigError, EncoderConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipeline.job import run_job, submit_job

    started = time.monotonic()
    try:
        if not local:
            result = submit_job(config, options)
            print(submitted(result, config.output))
            return 0
        manifest = run_job(config, options)
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: exit 1 with the cause
        logger.exception("pipeline failed")
        print(f"error: pipeline failed: {exc}", file=sys.stderr)
        return 1
    print(summary(manifest, time.monotonic() - started, config.output))
    return 0


def _check_dataflow_options(options) -> None:
    """What Dataflow would reject after the job is built, checked offline (Beam's validator calls GCS)."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

    if options.view_as(StandardOptions).runner not in ("DataflowRunner", "dataflow"):
        return
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.project or not re.fullmatch(r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]", cloud.project):
        raise JobConfigError(f"the DataflowRunner needs --project with a project ID, got {cloud.project!r}")
    if not cloud.region:
        raise JobConfigError("the DataflowRunner needs --region, e.g. --region us-central1")
    if not (cloud.temp_location or "").startswith("gs://"):
        raise JobConfigError("the DataflowRunner needs --temp_location gs://BUCKET/tmp")


def parse_run_date(value: str | None) -> datetime.date:
    """--run_date as a date; today in UTC when unset (a nightly scheduler's run date)."""
    if value is None:
        return datetime.datetime.now(datetime.UTC).date()
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise JobConfigError(f"--run_date must be a date like 2026-11-25, got {value!r}") from None


def expand_dates(pattern: str, run_date: datetime.date) -> str:
    """Fill {run_date} and {previous_date} (the day before) as YYYY-MM-DD; other braces are left alone."""
    previous = run_date - datetime.timedelta(days=1)
    return pattern.replace("{run_date}", run_date.isoformat()).replace("{previous_date}", previous.isoformat())


def submitted(result, output: str) -> str:
    """What to tell the user after handing the job to a distributed runner."""
    job = getattr(result, "job", None)
    proto = getattr(job, "proto", None)
    if proto is not None and not getattr(proto, "id", ""):
        transforms = job.proto_pipeline.components.transforms.values()
        steps = sorted(t.unique_name for t in transforms if t.unique_name and "/" not in t.unique_name
                       and not t.unique_name.startswith("ref_"))
        return (f"dry run: built Dataflow job {proto.name!r} with steps {', '.join(steps)}; "
                "nothing was submitted")
    job_id = getattr(result, "job_id", lambda: None)()
    return f"submitted job {job_id or ''}; {output}/_SUCCESS appears when it has finished".replace("job ;", "job;")


def _beam_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    unknown = [a for a in beam_args if a.startswith("-") and a.split("=")[0] not in _beam_flags()]
    if unknown:
        raise JobConfigError(f"unknown option {unknown[0]} (see --help; Beam options are accepted too)")
    return PipelineOptions(beam_args)


LOCAL_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "PrismRunner",
                 "FnApiRunner"}


def _execution(options, progress: str) -> tuple[bool, str]:
    """(runs on this machine, progress mode) from the Beam options."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner
    local = (runner if isinstance(runner, str) or runner is None else type(runner).__name__) in LOCAL_RUNNERS
    if progress != "auto":
        return local, progress
    if not local:
        return local, "off"
    in_process = options.view_as(DirectOptions).direct_running_mode in (None, "in_memory")
    return local, "terminal" if in_process and sys.stderr.isatty() else "log"


def _beam_flags() -> set[str]:
    """Every flag some Beam PipelineOptions class defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # a flag defined twice by two classes; the first definition is enough
    return {flag for action in parser._actions for flag in action.option_strings}


def summary(manifest: dict, seconds: float, output: str) -> str:
    """A few lines for the terminal: counts, throughput, where the output is."""
    counts = manifest["counts"]
    reused = f", {counts['reused']} reused" if counts.get("reused") else ""
    rate = counts["embedded"] / seconds if seconds > 0 else 0.0
    lines = [
        f"embedded {counts['embedded']} of {counts['read']} records "
        f"({counts['skipped']} skipped, {counts['failed']} failed{reused}) in {seconds:.1f} s ({rate:.1f} texts/s)",
        f"model {manifest['settings']['model']} ({manifest['settings']['backend']}, "
        f"{manifest['settings']['pooling']} pooling, dim {manifest['settings']['dim']})",
        f"output: {output} ({len(manifest['files']['embeddings'])} Parquet files)",
    ]
    perf = manifest.get("performance", {})
    if perf.get("batches"):
        lines.insert(1, f"{perf['real_tokens_per_second']:,.0f} real tokens/s, padding efficiency "
                        f"{perf['padding_efficiency']:.2f}, {perf['batches']} batches, encoder built "
                        f"{perf['encoder_builds']}x in {perf['worker_processes']} worker process(es)")
    if counts["failed"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in manifest["failed_by_reason"].items())
        lines.append(f"failed records ({reasons}) are listed in {output}/failed/")
    return "\n".join(lines)
