"""The job's own settings (input, output, run), declared once; the encoder's are `encoders.EncoderSpec`.

See `encoders.declare` for what a declaration carries and what is derived from it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from encoders import EncoderSpec
from encoders.declare import PATH, RECORDED, RECORDS, RUN, check_declared, setting
from pipeline.errors import JobConfigError
from pipeline.formats.output import BASE_COLUMNS, TEXT_COLUMN
from pipeline.formats.records import DEFAULT_MAX_CHARS, InputFormat
from pipeline.formats.shards import FORMATS
from pipeline.launch.placement import ACCELERATOR_EXAMPLE, ACCELERATOR_PATTERN, parse_accelerator
from pipeline.launch.progress import MODES as PROGRESS_MODES

DEFAULT_TEXT_FIELD = "text"
_IO = "input and output"
DATAFLOW = "Dataflow"
# Why output column names must differ in more than case: readers of the files fold it.
_CASE_BLIND = "a difference BigQuery and Spark ignore in column names"


@dataclass(frozen=True)
class JobSettings:
    """What to read, where to write, and how this run behaves. Checked when constructed."""

    inputs: tuple[str, ...] = setting(
        (), "glob of input shards: local path, gs://, s3:// (with apache-beam[aws]), memory:// or any fsspec "
        "filesystem; .gz/.bz2/.zst are decompressed (repeatable)", RECORDS,
        flag="input", metavar="PATTERN", group=_IO, path=PATH, required=True, dated=True)
    output: str | None = setting(
        None, "output directory for Parquet files, failed/ and _SUCCESS", RUN, metavar="DIR", group=_IO,
        path=PATH, required=True, dated=True)
    format: str = setting(
        "auto", "text: one document per line; jsonl: one JSON object per line; csv/tsv: a header row, then one "
        "record per row; parquet; auto: by extension (.jsonl/.ndjson/.json, .csv, .tsv, .parquet; text otherwise; "
        ".gz/.bz2/.zst on top) (default: auto)", RECORDS, choices=FORMATS, group=_IO)
    text_field: str | None = setting(
        None, f"field (JSON key, CSV column, Parquet column) holding the text (default: {DEFAULT_TEXT_FIELD})",
        RECORDS, metavar="F", group=_IO)
    id_field: str | None = setting(
        None, "field holding the document id; a repeated id goes to failed/ "
        "(default: <shard path>:<line or row number>)", RECORDS, metavar="F", group=_IO)
    encoding: str = setting(
        "utf-8", "text encoding of the shards; undecodable lines go to failed/ (default: utf-8)", RECORDS,
        metavar="E", group=_IO)
    max_chars: int = setting(
        DEFAULT_MAX_CHARS, "a text longer than this (with its kept fields: --keep_fields) goes to failed/ as "
        f"too_long (default: {DEFAULT_MAX_CHARS})",
        RECORDS, minimum=1, metavar="N", group=_IO)
    keep_fields: tuple[str, ...] = setting(
        (), "fields of each input record copied into its output row, comma-separated or repeated: JSON values "
        "(objects/arrays as JSON text), CSV/TSV columns as strings, Parquet columns with their own types; "
        "a field a record lacks is null", RECORDS, metavar="F1,F2", group=_IO)
    keep_text: bool = setting(
        False, "store each text as embedded (after normalisation; a chunked document's whole text) in a "
        f"column {TEXT_COLUMN!r}", RECORDS, group=_IO)
    overwrite: bool = setting(
        False, "replace a finished run in --output made with different settings (a rerun of the same settings "
        "always replaces it)", RUN, group=_IO)
    run_date: str | None = setting(
        None, "fills {run_date} (and {previous_date}, the day before) in --input, --output and --skip_existing, "
        "e.g. --output gs://b/out/dt={run_date} (default: today, UTC)", RUN, metavar="YYYY-MM-DD",
        pattern="[0-9]{4}-[0-9]{2}-[0-9]{2}", group=_IO)
    skip_existing: str | None = setting(
        None, "glob of earlier output Parquet files (e.g. gs://b/out/dt={previous_date}/*.parquet): a record whose "
        "id and text are already there under the same model fingerprint is not embedded again (counted as reused)",
        RECORDED, metavar="PATTERN", group=_IO, path=PATH, dated=True)
    snapshot: bool = setting(
        False, "with --skip_existing: copy the reused rows into this output, so it holds every record", RECORDED,
        group=_IO)
    records_per_file: int = setting(
        10_000, "each input shard is cut into parts of at most N records; one Parquet file per part "
        "(default: 10000)", RECORDED, minimum=1, metavar="N", group=_IO)
    group_size: int = setting(
        1024, "records tokenized, sorted by length and batched together: more means less padding and more "
        "memory per worker thread (default: 1024)", RECORDED, minimum=1, metavar="N", group="batching")
    progress: str = setting(
        "auto", "local runs: show texts/s, tokens/s and share of input read; auto: in place on a terminal, log "
        "lines otherwise, off on distributed runners (default: auto)", RUN, choices=("auto", *PROGRESS_MODES),
        group="batching")
    wait: bool | None = setting(
        None, "runners that run the job elsewhere (PortableRunner, Dataflow, ...): wait for the job's end, print "
        "its summary and exit 0 or 1 by its result (default: wait, except on Dataflow, where the launcher "
        "returns once the job is submitted)", RUN,
        negation=("no_wait", "return once the job is submitted; OUTPUT/_SUCCESS appears when it has finished"),
        group="running")
    # Recorded, not compared: where the embedding runs changes neither the vectors nor the records, so a rerun
    # with or without it replaces a finished run quietly; the manifest keeps it beside the numbers it explains.
    embed_accelerator: str | None = setting(
        None, "Dataflow right fitting: Beam's accelerator resource hint on the embedding step alone, e.g. "
        f"{ACCELERATOR_EXAMPLE}; listing, the key pass, reading and the commit stay on the default workers "
        "(--machine_type, a CPU type). Not with worker_accelerator in --dataflow_service_options; local runs "
        "ignore it",
        RECORDED, metavar="HINT", pattern=ACCELERATOR_PATTERN, group=DATAFLOW)

    def __post_init__(self) -> None:
        check_declared(self, JobConfigError)
        if not self.inputs:
            raise JobConfigError("--input is required")
        if not self.output:
            raise JobConfigError("--output is required")
        object.__setattr__(self, "output", self.output.rstrip("/"))  # one spelling of the directory
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise JobConfigError(f"unknown --encoding {self.encoding!r}") from None
        if self.format == "text" and (self.text_field or self.id_field or self.keep_fields):
            raise JobConfigError("--text_field/--id_field/--keep_fields do not apply to --format text")
        object.__setattr__(self, "keep_fields", _field_list(self.keep_fields))
        self._check_kept()
        if self.snapshot and not self.skip_existing:
            raise JobConfigError("--snapshot copies rows found by --skip_existing; give --skip_existing PATTERN too")
        if self.skip_existing and self.skip_existing.startswith(self.output.rstrip("/") + "/"):
            raise JobConfigError("--skip_existing must point at earlier outputs, not into --output, "
                                 "which a run clears first")
        if self.embed_accelerator is not None:
            parse_accelerator(self.embed_accelerator)

    def _check_kept(self) -> None:
        for name in self.keep_fields:
            if name == (self.text_field or DEFAULT_TEXT_FIELD):
                raise JobConfigError(f"--keep_fields {name!r} is the text field; --keep_text stores the text "
                                     f"(as embedded) in column {TEXT_COLUMN!r}")
            if name == self.id_field:
                raise JobConfigError(f"--keep_fields {name!r} is the --id_field, already the output's 'id'")
            own = next((column for column in (*BASE_COLUMNS, TEXT_COLUMN) if column.lower() == name.lower()), None)
            if own == name:
                raise JobConfigError(f"--keep_fields {name!r} would replace the output's own column {name!r}")
            if own is not None:
                raise JobConfigError(f"--keep_fields {name!r} differs from the output's own column {own!r} only in "
                                     f"case, {_CASE_BLIND}; rename the input field")

    def input_format(self, shard_format: str = "text") -> InputFormat:
        """How to read a shard of the given format under these settings."""
        return InputFormat(shard_format, self.encoding, self.text_field or DEFAULT_TEXT_FIELD, self.id_field,
                           self.max_chars, self.keep_fields)


def _field_list(given: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """--keep_fields as one tuple: values may be repeated or comma-separated; each name once."""
    found = [name.strip() for value in given or () for name in value.split(",")]
    if any(not name for name in found):
        raise JobConfigError("--keep_fields has an empty field name")
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise JobConfigError(f"--keep_fields names {', '.join(map(repr, repeated))} more than once")
    folded = [name.lower() for name in found]
    clash = next((name.lower() for name in found if folded.count(name.lower()) > 1), None)
    if clash is not None:
        alike = [name for name in found if name.lower() == clash]
        raise JobConfigError(f"--keep_fields names {' and '.join(map(repr, alike))}, which differ only in case, "
                             f"{_CASE_BLIND}; keep one")
    return tuple(found)


# Every declared settings class of a run, in --help's order: the flags, the template's parameters, the rerun check.
SETTINGS_CLASSES = (JobSettings, EncoderSpec)
