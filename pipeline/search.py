"""`python -m pipeline.search`: the rows of a finished output nearest a query, to check a run by eye.

The query is embedded with exactly the settings the output's Parquet metadata records (every
setting whose role is "vectors", read through the declarations), so a setting declared later
is picked up here with no change. The files the `_SUCCESS` manifest lists are streamed batch
by batch and a running top k kept: memory is bounded by k and one batch, not by the output.

Exit codes: 0 success; 2 a bad flag, an output that is not ours or not finished, an embedding
column that does not hold vectors of the recorded width, or an unknown --id (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encoders import BITS, EncoderSpec, build_encoder, for_queries
from encoders.declare import VECTORS, from_mapping, from_metadata
from pipeline.command import MISTAKES, OneLineErrorParser, configure_logging, said
from pipeline.errors import CommandError
from pipeline.formats.output import SUCCESS_FILE, TEXT_COLUMN
from pipeline.formats.records import normalize_text
from pipeline.formats.storage import open_file
from pipeline.identity import identity_of
from pipeline.inspect.finished import (
    LOOK_THREADS,
    NotAFinishedRun,
    StoredVectors,
    check_embedding_type,
    embedding_vectors,
    embeddings_files,
    read_manifest,
    recorded_storage,
    row_batches,
)
from pipeline.inspect.terminal import one_line, printable

logger = logging.getLogger(__name__)

FORMATS = ("text", "json")
TEXT_WIDTH = 80  # characters of kept text shown per row in --format text


SearchError = CommandError  # the search cannot run as asked (exit 2, one line)


@dataclass(frozen=True)
class Output:
    """A finished output: its embeddings files, what made them, and whether the text was kept."""

    path: str
    files: tuple[str, ...]  # full paths, in the manifest's order
    metadata: dict[str, str]  # the Parquet key-value metadata they share (model_fingerprint included)
    stored: StoredVectors  # the vectors' width and precision, as the manifest records them
    with_text: frozenset[str]  # the files that keep the text (--keep_text; every file of one run, or none)


@dataclass(frozen=True)
class Hit:
    """One row of the result."""

    rank: int
    id: str
    score: float  # cosine similarity
    text: str | None = None  # the kept text, when the output has a text column


class TopK:
    """The k best (score, id, text) seen so far: score descending, then id ascending, so ties are stable."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._kept: list[tuple[float, str, str | None]] = []

    def add(self, scores: np.ndarray, ids: pa.Array, texts: pa.Array | None = None) -> None:
        """Offer a batch: float64 scores [n] and the batch's id (and text) columns, row for row."""
        if len(scores) == 0:
            return
        if len(scores) > self.k:
            # Only rows scoring at least the batch's k-th best can enter; keeping every row tied
            # with it (not just k of them) lets the id decide ties the same way whatever the batches.
            kth = scores[np.argpartition(-scores, self.k - 1)[self.k - 1]]
            rows = np.flatnonzero(scores >= kth)
        else:
            rows = np.arange(len(scores))
        if self._kept and len(self._kept) == self.k:
            rows = rows[scores[rows] >= self._kept[-1][0]]
        taken = pa.array(rows, type=pa.int64())
        chosen_ids = ids.take(taken).to_pylist()
        chosen_texts = texts.take(taken).to_pylist() if texts is not None else [None] * len(rows)
        candidates = zip(scores[rows].tolist(), chosen_ids, chosen_texts, strict=True)
        self._kept = sorted([*self._kept, *candidates], key=lambda hit: (-hit[0], hit[1]))[: self.k]

    def hits(self) -> list[Hit]:
        return [Hit(rank, id_, score, text) for rank, (score, id_, text) in enumerate(self._kept, start=1)]


def open_output(path: str) -> Output:
    """Check that path holds a finished output of this job and read its files' footers (no rows).

    Raises SearchError when there is no `_SUCCESS` (unfinished when `_temporary/` holds files),
    when `_SUCCESS` is not our manifest, or when a listed file lacks our metadata, was made
    with another model fingerprint than the others or has an embedding column of another type
    than vectors of the recorded dim.
    """
    path = path.rstrip("/")
    try:
        manifest = read_manifest(path)
        files = embeddings_files(path, manifest)
        stored = recorded_storage(path, manifest)
    except NotAFinishedRun as exc:
        raise SearchError(str(exc)) from None
    if not files:
        raise SearchError(f"{path}/{SUCCESS_FILE} lists no embeddings files")
    first: dict[str, str] | None = None
    with_text = set()
    with ThreadPoolExecutor(max_workers=LOOK_THREADS) as pool:
        footers = list(pool.map(_footer, files))
    for file, (metadata, schema) in zip(files, footers, strict=True):
        if first is None:
            first = metadata
        elif metadata["model_fingerprint"] != first["model_fingerprint"]:
            raise SearchError(f"{file} was made with model fingerprint {metadata['model_fingerprint']}, "
                              f"{files[0]} with {first['model_fingerprint']}: not one output")
        try:
            check_embedding_type(file, schema.field("embedding").type, stored)
        except NotAFinishedRun as exc:
            raise SearchError(str(exc)) from None
        if TEXT_COLUMN in schema.names:
            with_text.add(file)
    recorded = manifest.settings.get("model_fingerprint")
    if recorded is not None and recorded != first["model_fingerprint"]:
        raise SearchError(f"{path}/{SUCCESS_FILE} records model fingerprint {recorded} but its files were made "
                          f"with {first['model_fingerprint']}")
    return Output(path, files, first, stored, frozenset(with_text))


def _footer(file: str) -> tuple[dict[str, str], pa.Schema]:
    """A file's key-value metadata (the Arrow schema's own key left out) and schema, checked to be ours."""
    try:
        with open_file(file) as f:
            schema = pq.ParquetFile(f).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise SearchError(f"{file} cannot be read as Parquet: {exc}") from None
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if k != b"ARROW:schema"}
    if "model_fingerprint" not in metadata or "id" not in schema.names or "embedding" not in schema.names:
        raise SearchError(f"{file} is not an embeddings file of this job (no model_fingerprint, id or embedding)")
    return metadata, schema


def recorded_spec(output: Output) -> EncoderSpec:
    """The encoder settings the output's files record (every "vectors" setting), resolved.

    Raises EncoderConfigError when the recorded settings are not valid here (e.g. an unknown backend).
    """
    try:
        given = from_metadata(EncoderSpec, output.metadata, [VECTORS])
    except ValueError as exc:
        raise SearchError(f"{output.files[0]}: a recorded setting cannot be read: {exc}") from None
    identity = identity_of(from_mapping(EncoderSpec, given))
    now = identity.fingerprint
    if now != output.metadata["model_fingerprint"]:
        logger.warning("the model or encoder version differs from the one that made %s (fingerprint %s, now %s): "
                       "scores may mean little", output.path, output.metadata["model_fingerprint"], now)
    return identity.spec


def embed_query(spec: EncoderSpec, text: str) -> np.ndarray:
    """The query's vector (float32 [dim]), normalised and truncated or chunked as the job did its records."""
    text, _ = normalize_text(text)
    if not text.strip():
        raise SearchError("the query is empty")
    encoder = build_encoder(spec, warm_up=False)
    result = encoder.encode([text])
    if result.truncated[0]:
        logger.info("the query is longer than max_seq_length %d: only its first tokens were embedded, as the job "
                    "did", spec.max_seq_length)
    return result.vectors[0]


def _batches(output: Output, columns: list[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, batch) of the output's rows, file by file; the text column only from files that have it."""
    for file in output.files:
        for batch in row_batches(file, [c for c in columns if c != TEXT_COLUMN or file in output.with_text]):
            yield file, batch


def _vectors(output: Output, file: str, batch: pa.RecordBatch) -> np.ndarray:
    """The embedding column as float64 [rows, dim] (double sums: the same scores whatever the batch size).

    Raises NotAFinishedRun when the column does not hold a vector of output.dim values in every row.
    """
    return embedding_vectors(file, batch.column("embedding"), output.stored).astype(np.float64)


def row_vector(output: Output, record_id: str) -> np.ndarray:
    """The embedding of the row with this id; SearchError if the output has none."""
    for file, batch in _batches(output, ["id", "embedding"]):
        position = pc.index(batch.column("id"), record_id).as_py()
        if position >= 0:
            return _vectors(output, file, batch.slice(position, 1))[0]
    raise SearchError(f"id {record_id!r} is not in {output.path}")


def nearest(output: Output, query: np.ndarray, k: int, exclude: str | None = None) -> list[Hit]:
    """The k rows nearest query by cosine (both sides normalised), score descending then id; exclude one id."""
    query = np.asarray(query, dtype=np.float64)
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    top = TopK(k)
    for file, batch in _batches(output, ["id", "embedding", TEXT_COLUMN]):
        if exclude is not None:
            batch = batch.filter(pc.not_equal(batch.column("id"), exclude))
        rows = _vectors(output, file, batch)
        scores = rows @ query / np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
        texts = batch.column(TEXT_COLUMN) if TEXT_COLUMN in batch.schema.names else None
        top.add(scores, batch.column("id"), texts)
    return top.hits()


def format_hits(hits: Sequence[Hit], fmt: str) -> str:
    """The result as printed: a table, one line a hit, or a JSON list (ids and text exact).

    In the table ids and kept text are `printable` (input data must not drive the terminal or forge a
    row) and the text is cut to TEXT_WIDTH characters, its runs of whitespace made one space.
    """
    if fmt == "json":
        rows = [{"rank": h.rank, "id": h.id, "score": round(h.score, 6),
                 **({"text": h.text} if h.text is not None else {})} for h in hits]
        return json.dumps(rows, ensure_ascii=False, indent=1)
    ids = [printable(h.id) for h in hits]
    width = max([len("id"), *map(len, ids)])
    with_text = any(h.text is not None for h in hits)
    lines = [f"rank  score   {'id'.ljust(width)}{'  text' if with_text else ''}".rstrip()]
    for h, shown_id in zip(hits, ids, strict=True):
        line = f"{h.rank:>4}  {h.score:.4f}  {shown_id.ljust(width)}"
        if with_text:
            line += f"  {one_line(h.text or '', TEXT_WIDTH)}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m pipeline.search",
        description="Print the rows of a finished output nearest a query text (embedded with the settings the "
                    "output records) or nearest a row already in it (--id), by cosine similarity.",
    )
    parser.add_argument("output", metavar="OUTPUT", help="the job's --output (local, gs://, memory://, ...)")
    parser.add_argument("query", metavar="QUERY", nargs="?", help="text to search for")
    parser.add_argument("--id", dest="record_id", metavar="ID",
                        help="instead of QUERY: the neighbours of this row of the output (itself left out)")
    parser.add_argument("--k", type=int, default=10, metavar="N", help="how many rows to print (default: 10)")
    parser.add_argument("--query_prompt", metavar="TEXT",
                        help="put before QUERY (default: the model's query prompt, as sentence-transformers' "
                             "encode_query, else its default prompt, else none)")
    parser.add_argument("--query_prompt_name", metavar="NAME",
                        help="the model's prompt of this name before QUERY (config_sentence_transformers.json)")
    parser.add_argument("--rescore", action="store_true",
                        help="with a binary or ubinary output: score the float query against each row's bits as "
                             "+1/-1 instead of by Hamming distance (1 - 2 x differing bits / dim) to the query's bits")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text: a table, kept text cut to one line, control characters in ids and text shown "
                             "as Python escapes (\\x1b, \\n, \\\\ for a backslash); json: a list of objects with "
                             "rank, id, score (and text when kept), exact (default: text)")
    return parser


def search(argv: Sequence[str]) -> str:
    """Run a search from command-line arguments; returns what to print. Raises SearchError, EncoderConfigError."""
    args = build_parser().parse_args(list(argv))
    if args.k < 1:
        raise SearchError(f"--k must be positive, got {args.k}")
    if (args.query is None) == (args.record_id is None):
        raise SearchError("give either QUERY or --id ID")
    output = open_output(args.output)
    if args.record_id is not None:
        query = row_vector(output, args.record_id)
    else:
        spec = for_queries(recorded_spec(output), args.query_prompt, args.query_prompt_name)
        query = embed_query(spec, args.query)
        if output.stored.precision in BITS and not args.rescore:  # ±1 against ±1: cosine is 1 - 2 hamming / dim
            query = np.where(query > 0, 1.0, -1.0)
    hits = nearest(output, query, args.k, exclude=args.record_id)
    return format_hits(hits, args.format)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    try:
        printed = search(argv)
    except (*MISTAKES, OSError, pa.ArrowException) as exc:  # unreadable files too
        return said(exc)
    print(printed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
