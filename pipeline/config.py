"""Job configuration: the CLI's flags checked once and turned into plain data.

Every check that can fail before the pipeline starts happens here, so a mistake costs
a one-line message, not a worker crash an hour into the job.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
from dataclasses import dataclass

import encoders
from encoders import EncoderSpec, check_settings, resolve_spec
from pipeline.errors import JobConfigError
from pipeline.incremental import model_fingerprint
from pipeline.readers import HEADED_FORMATS, STRUCTURED_FORMATS, structure_problem
from pipeline.records import DEFAULT_MAX_CHARS, InputFormat
from pipeline.shards import Shard, beam_filesystem_knows, match_shards, open_shard


@dataclass(frozen=True)
class JobConfig:
    """Everything the pipeline needs; travels to workers inside the DoFns."""

    inputs: tuple[str, ...]
    shards: tuple[Shard, ...] | None  # None: listed by the job's first step, on a worker
    output: str
    encoding: str
    text_field: str
    id_field: str | None
    encoder_settings: tuple[tuple[str, object], ...]  # resolve_spec's keyword arguments
    max_chars: int = DEFAULT_MAX_CHARS
    group_size: int = 1024  # records sorted together before batching; bounds worker memory
    records_per_file: int = 10_000  # a shard is cut into parts of this many records, one file each
    skip_existing: str | None = None  # glob of earlier output files whose records need no embedding
    snapshot: bool = False  # copy the reused rows into this output, making it complete
    # Resolved on the launcher when the model is local; None when a worker must read a remote model's config.
    resolved_encoder: EncoderSpec | None = None
    resolved_fingerprint: str | None = None
    rebalance: bool = False  # reshuffle records across workers (distributed runners)
    progress: str = "off"  # terminal | log | off
    format: str = "auto"
    overwrite: bool = False  # replace a finished run made with different settings

    @property
    def encoder(self) -> EncoderSpec:
        """The encoder settings, filled from the model's config (read once per process when deferred)."""
        return self.resolved_encoder or _resolve(self.encoder_settings)

    @property
    def fingerprint(self) -> str:
        """Model identity and vector-changing settings (pipeline.incremental)."""
        return self.resolved_fingerprint or model_fingerprint(self.encoder, encoders.__version__)

    def file_metadata(self) -> dict[str, str]:
        """Key-value metadata stored in every Parquet file: what produced these vectors."""
        spec = self.encoder
        return {
            "model": spec.model,
            "backend": spec.backend,
            "pooling": spec.pooling,
            "normalize": str(spec.normalize).lower(),
            "dim": str(spec.dim),
            "max_seq_length": str(spec.max_seq_length),
            "long_text": spec.long_text,
            "chunk_overlap": str(spec.chunk_overlap),
            "version": encoders.__version__,
            "model_fingerprint": self.fingerprint,
        }

    def settings(self) -> dict[str, object]:
        """What this run was asked to do, as recorded in the manifest."""
        return {
            **self.encoder.describe(),
            "version": encoders.__version__,
            "inputs": list(self.inputs),
            "format": self.format,
            "text_field": self.text_field,
            "id_field": self.id_field or "",
            "encoding": self.encoding,
            "max_chars": self.max_chars,
            "records_per_file": self.records_per_file,
            "model_fingerprint": self.fingerprint,
            "skip_existing": self.skip_existing or "",
            "snapshot": self.snapshot,
        }

    def input_format(self, shard_format: str) -> InputFormat:
        """How to read a shard of the given format under this job's flags."""
        return InputFormat(shard_format, self.encoding, self.text_field, self.id_field, self.max_chars)


def job_config(
    inputs: list[str] | None,
    output: str | None,
    fmt: str = "auto",
    text_field: str | None = None,
    id_field: str | None = None,
    encoding: str = "utf-8",
    max_chars: int = DEFAULT_MAX_CHARS,
    rebalance: bool = False,
    progress: str = "off",
    overwrite: bool = False,
    records_per_file: int = 10_000,
    check_storage: bool = True,
    skip_existing: str | None = None,
    snapshot: bool = False,
    **encoder_settings,
) -> JobConfig:
    """Validate flags (cheap checks first), then resolve the encoder settings.

    check_storage: list the inputs, read CSV headers and Parquet footers, and look at the
    output now. A job submitted to a distributed runner skips this: its launcher may have no
    access to the data, so the workers list the inputs and prepare the output as the job's
    first steps, and a problem found there fails the job instead of exiting 2.
    encoder_settings are `encoders.resolve_spec`'s keyword arguments (backend, model, ...).
    """
    if not inputs:
        raise JobConfigError("--input is required")
    if not output:
        raise JobConfigError("--output is required")
    if not beam_filesystem_knows(output):
        raise JobConfigError(f"--output {output} is not on a filesystem Beam can write (local, gs://, s3://)")
    if "://" not in output and check_storage:
        _check_local_output_writable(output)
    if max_chars < 1:
        raise JobConfigError(f"--max_chars must be positive, got {max_chars}")
    if snapshot and not skip_existing:
        raise JobConfigError("--snapshot copies rows found by --skip_existing; give --skip_existing PATTERN too")
    if skip_existing and skip_existing.startswith(output.rstrip("/") + "/"):
        raise JobConfigError("--skip_existing must point at earlier outputs, not into --output, "
                             "which a run clears first")
    if records_per_file < 1:
        raise JobConfigError(f"--records_per_file must be positive, got {records_per_file}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise JobConfigError(f"unknown --encoding {encoding!r}") from None
    shards = None
    if check_storage:
        shards = tuple(match_shards(inputs, fmt))
        _check_fields_apply(shards, text_field, id_field)
        _check_structure(shards, InputFormat("text", encoding, text_field or "text", id_field, max_chars))
    elif fmt == "text" and (text_field or id_field):
        raise JobConfigError("--text_field/--id_field do not apply to --format text")
    source = check_settings(**{k: v for k, v in encoder_settings.items() if k in _CHECKED_WITHOUT_MODEL})
    spec = fingerprint = None
    if check_storage or source.is_local:
        spec = resolve_spec(**encoder_settings)
        fingerprint = model_fingerprint(spec, encoders.__version__)
    config = JobConfig(
        inputs=tuple(inputs),
        shards=shards,
        output=output.rstrip("/"),
        encoding=encoding,
        text_field=text_field or "text",
        id_field=id_field,
        encoder_settings=tuple(sorted(encoder_settings.items())),
        resolved_encoder=spec,
        resolved_fingerprint=fingerprint,
        max_chars=max_chars,
        rebalance=rebalance,
        progress=progress,
        format=fmt,
        overwrite=overwrite,
        records_per_file=records_per_file,
        skip_existing=skip_existing,
        snapshot=snapshot,
    )
    if check_storage and not overwrite:
        check_previous_run(config)
    return config


_CHECKED_WITHOUT_MODEL = ("backend", "model", "weights", "pooling", "max_batch_size", "max_tokens_per_batch",
                          "precision", "long_text", "chunk_overlap")


@functools.lru_cache(maxsize=4)
def _resolve(settings: tuple[tuple[str, object], ...]) -> EncoderSpec:
    return resolve_spec(**dict(settings))


def _check_fields_apply(shards: tuple[Shard, ...], text_field: str | None, id_field: str | None) -> None:
    structured = any(s.format in STRUCTURED_FORMATS for s in shards)
    if (text_field or id_field) and not structured:
        raise JobConfigError("--text_field/--id_field apply to JSON Lines, CSV/TSV and Parquet input, "
                             "but every matched shard is plain text")
    if id_field and any(s.format == "text" for s in shards):
        raise JobConfigError("--id_field is set but some matched shards are plain text, which has no fields")


# Settings that change what a run writes; a finished run with other values is not replaced silently.
# Batch sizes and compilation change only speed.
OUTPUT_SETTINGS = (
    "model", "backend", "weights", "pooling", "normalize", "max_seq_length", "dim", "precision",
    "long_text", "chunk_overlap", "inputs", "format", "text_field", "id_field", "encoding", "max_chars",
)


def check_previous_run(config: JobConfig) -> None:
    """Refuse to replace a finished run of different settings unless --overwrite."""
    import json

    from apache_beam.io.filesystems import FileSystems

    from pipeline.output import SUCCESS_FILE

    path = FileSystems.join(config.output, SUCCESS_FILE)
    if not FileSystems.exists(path):
        return
    try:
        with FileSystems.open(path) as f:
            previous = json.loads(f.read().decode("utf-8")).get("settings", {})
    except (OSError, ValueError, AttributeError):
        previous = {}
    current = json.loads(json.dumps(config.settings()))  # the form it takes in a manifest
    changed = [k for k in OUTPUT_SETTINGS if previous.get(k) != current.get(k)]
    if changed:
        shown = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed[:3])
        raise JobConfigError(
            f"--output {config.output} holds a finished run with different settings ({shown}); "
            "pass --overwrite to replace it"
        )


def _check_structure(shards: tuple[Shard, ...], fmt: InputFormat) -> None:
    """Read each CSV/TSV header and Parquet footer now: a missing --text_field is a config error, not a failed job."""
    from concurrent.futures import ThreadPoolExecutor

    checked = [s for s in shards if s.format in HEADED_FORMATS]

    def problem(shard: Shard) -> str | None:
        try:
            stream, _ = open_shard(shard.path)
            with stream:
                return structure_problem(stream, dataclasses.replace(fmt, format=shard.format))
        except (OSError, EOFError, ValueError) as exc:
            return f"cannot read it: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        for shard, found in zip(checked, pool.map(problem, checked), strict=True):
            if found:
                raise JobConfigError(f"{shard.path} ({shard.format}): {found}")


def _check_local_output_writable(output: str) -> None:
    """Create the output directory and write a probe file, so a bad path fails now, not after embedding."""
    import tempfile
    from pathlib import Path

    try:
        Path(output).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise JobConfigError(f"--output {output} is not writable: {exc.strerror or exc}") from None
