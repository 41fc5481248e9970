"""`python -m pipeline.report OUTPUT`: one self-contained HTML page that shows what a finished run did.

The page needs no network to view: styles are inline and the figures are SVG drawn by
`pipeline.inspect.svg`. It reads the `_SUCCESS` manifest and streams the Parquet files it lists
(`pipeline.inspect.report_data`), so it works on any output the job can write, however large.
Exit codes: 0 written; 2 OUTPUT is not a finished run of this job, or the page cannot be written
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from html import escape

import numpy as np
import pyarrow as pa

from encoders import EncoderSpec
from encoders.declare import declared
from pipeline.command import MISTAKES, OneLineErrorParser, configure_logging, said
from pipeline.errors import CommandError
from pipeline.formats.manifest import Manifest
from pipeline.formats.output import FAILED_DIR, REPORT_FILE
from pipeline.formats.storage import join, open_file
from pipeline.inspect.finished import read_manifest
from pipeline.inspect.report_data import NEAR_DUPLICATE, RunData, Tally, read_run
from pipeline.inspect.svg import (
    OUTCOME_COLOURS,
    Bin,
    Marker,
    histogram,
    horizontal_bars,
    nice_step,
    number,
    scatter,
    stacked_bars,
)

DEFAULT_SAMPLE = 2000
TOKEN_BINS = 40  # at most; bin widths are 1, 2 or 5 x 10^k tokens
NORM_BINS = 30
SHARDS_DRAWN = 20  # the outcome figure's rows beyond the total; the table lists more
SHARDS_LISTED = 500
OUTCOMES = ("embedded", "skipped", "failed", "reused")
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 760px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 90%; }
th, td { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figcaption { font-size: 90%; color: #555; }
code { background: #f3f3f3; padding: 0 3px; } .note { color: #555; font-size: 90%; }
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m pipeline.report",
                                     description="Write an HTML report of a finished embedding run.")
    parser.add_argument("output", metavar="OUTPUT", help="the job's --output (local path, gs://, memory://, ...)")
    parser.add_argument("--to", metavar="FILE", help=f"where to write the page (default: OUTPUT/{REPORT_FILE})")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
                        help=f"rows compared pairwise for near-duplicates and drawn on the embedding map "
                             f"(default: {DEFAULT_SAMPLE:,})")
    parser.add_argument("--color_by", metavar="FIELD",
                        help="colour the embedding map by this kept field (--keep_fields, or text) instead of by "
                             "input shard")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    configure_logging()
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        target = args.to or join(args.output, REPORT_FILE)
        manifest = read_manifest(args.output)
        _check_color_by(args.color_by, manifest)
        data = read_run(args.output, manifest, max(args.sample, 0), args.color_by)
        page = render(args.output, manifest, data)
    except (*MISTAKES, OSError, pa.ArrowException) as exc:  # unreadable files too
        return said(exc)
    try:
        with open_file(target, "wb") as f:
            f.write(page.encode("utf-8"))
    except OSError as exc:
        return said(CommandError(f"cannot write {target}: {exc}"))
    dup = data.duplicates
    print(f"wrote {target}: {data.rows:,} vectors in {data.files} files, {_share(data.truncated, data.rows)} "
          f"truncated, near-duplicates in {_share(int(dup.has_duplicate.sum()), dup.sample_size)} of a "
          f"{dup.sample_size:,}-row sample")
    return 0


def _check_color_by(field: str | None, manifest: Manifest) -> None:
    kept = [*manifest.settings.get("keep_fields", []), *(["text"] if manifest.settings.get("keep_text") else [])]
    if field is not None and field not in kept:
        raise CommandError(f"--color_by {field}: the output keeps no such field (kept: {', '.join(kept) or 'none'})")


def render(output: str, manifest: Manifest, data: RunData) -> str:
    """The whole page as one string; deterministic for a given output (no time of writing on it)."""
    sections = [_header(output, manifest, data), _outcomes(output, manifest), _tokens(manifest, data),
                _performance(manifest), _norms(manifest, data), _duplicates(data), _map(data),
                _settings(manifest)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Run report: {escape(output)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def _figure(fig_id: str, svg: str, caption: str) -> str:
    return f'<figure id="{fig_id}">{svg}<figcaption>{caption}</figcaption></figure>'


def _share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({100 * part / whole:.1f}%)" if whole else f"{part:,} of 0"


def _value(value: object) -> str:
    """A setting as the manifest records it: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _header(output: str, manifest: Manifest, data: RunData) -> str:
    settings, perf = manifest.settings, manifest.performance
    facts = [(item.name, settings.get(item.name)) for item in declared(EncoderSpec) if item.declaration.headline]
    precision = settings.get("output_precision", "float32")
    facts += [("bytes per vector", f"{data.vector_bytes:,} ({precision}, {settings.get('dim')} dimensions)"),
              ("output size", f"{data.file_bytes / 1e6:,.1f} MB in {data.files:,} embeddings files")]
    facts += [("started", manifest.started_at), ("finished", manifest.finished_at),
             ("wall time", f"{perf['wall_seconds']:,} s" if "wall_seconds" in perf else None)]
    chosen = perf.get("chosen") or {}
    facts += [(f"{name} (chosen)", value) for name, value in chosen.items()]
    rows = "".join(f"<tr><th>{escape(name)}</th><td>{escape(_value(value))}</td></tr>"
                   for name, value in facts if value is not None)
    return (f"<h1>Embedding run report</h1><p>Output <code>{escape(output)}</code>, "
            f"version {escape(_value(settings.get('version', '?')))}. All settings are listed "
            f'<a href="#settings">at the end</a>.</p><table id="table-run">{rows}</table>')


def _outcomes(output: str, manifest: Manifest) -> str:
    counts, shards = manifest.counts, manifest.shards
    outcomes = [o for o in OUTCOMES if o in counts]
    drawn = [("all shards", counts)] + [(s.get("source", "?"), s) for s in shards[:SHARDS_DRAWN]]
    svg = stacked_bars([(name, [(o, int(row.get(o, 0))) for o in outcomes]) for name, row in drawn],
                       {o: OUTCOME_COLOURS[o] for o in outcomes}, label="records by outcome")
    more = f" (the first {SHARDS_DRAWN} of {len(shards):,} shards)" if len(shards) > SHARDS_DRAWN else ""
    caption = (f"Records by outcome, all shards and each shard{more}; each bar is scaled to its own shard. "
               f"{counts.get('read', 0):,} records read.")
    parts = ["<h2>Records by outcome</h2>", _figure("fig-outcomes", svg, escape(caption)),
             _outcome_table(manifest, outcomes)]
    reasons = manifest.failed_by_reason
    if reasons:
        bars = horizontal_bars(sorted(reasons.items(), key=lambda item: (-item[1], item[0])), "records",
                               label="dead letters by reason", data_key="reason")
        parts += ["<h2>Dead letters by reason</h2>",
                  _figure("fig-dead-letters", bars, f"Failed records by reason; each one is in "
                                                    f"<code>{escape(join(output, FAILED_DIR))}/</code>."),
                  _dead_letter_table(shards, sorted(reasons))]
    else:
        parts.append("<p>No record failed: there are no dead letters.</p>")
    return "<section id=\"outcomes\">" + "".join(parts) + "</section>"


def _outcome_table(manifest: Manifest, outcomes: list[str]) -> str:
    shards = manifest.shards
    head = "".join(f"<th>{o}</th>" for o in ["read", *outcomes])
    rows = [("all shards", manifest.counts)] + [(s.get("source", "?"), s) for s in shards[:SHARDS_LISTED]]
    body = "".join(
        f'<tr><th>{escape(str(name))}</th>'
        + "".join(f'<td class="n" data-outcome="{o}">{int(row.get(o, 0)):,}</td>' for o in ["read", *outcomes])
        + "</tr>" for name, row in rows)
    note = (f'<p class="note">The first {SHARDS_LISTED} of {len(shards):,} shards; the manifest lists all.</p>'
            if len(shards) > SHARDS_LISTED else "")
    return f'<table id="table-outcomes"><tr><th>shard</th>{head}</tr>{body}</table>{note}'


def _dead_letter_table(shards: list[dict], reasons: list[str]) -> str:
    failing = [s for s in shards if s.get("failed")]
    head = "".join(f"<th>{escape(r)}</th>" for r in reasons)
    body = "".join(
        f"<tr><th>{escape(str(s.get('source', '?')))}</th>"
        + "".join(f'<td class="n" data-reason="{escape(r)}">{int(s.get("failed_by_reason", {}).get(r, 0)):,}</td>'
                  for r in reasons) + "</tr>" for s in failing[:SHARDS_LISTED])
    note = (f'<p class="note">The first {SHARDS_LISTED} of {len(failing):,} shards with dead letters.</p>'
            if len(failing) > SHARDS_LISTED else "")
    return f'<table id="table-dead-letters"><tr><th>shard</th>{head}</tr>{body}</table>{note}'


def token_bins(tally: Tally, max_seq_length: int | None) -> tuple[list[Bin], tuple[float, float]]:
    """Bins of whole token counts from 0, wide enough for at most TOKEN_BINS up to the longest text or the limit."""
    top = max(tally.high if tally.counts else 0, max_seq_length or 0) + 1
    width = max(int(nice_step(top, TOKEN_BINS)), 1)
    counts: dict[int, int] = {}
    for value, count in tally.counts.items():
        counts[int(value) // width] = counts.get(int(value) // width, 0) + count
    bins = []
    for index in sorted(counts):
        low, high = index * width, (index + 1) * width
        span = f"{low:,}" if width == 1 else f"{low:,}–{high - 1:,}"
        bins.append(Bin(low, high, counts[index], f"{span} tokens: {counts[index]:,} texts"))
    return bins, (0, math.ceil(top / width) * width)


def _tokens(manifest: Manifest, data: RunData) -> str:
    settings = manifest.settings
    limit = settings.get("max_seq_length")
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    if not data.rows:
        return "<section id=\"tokens\"><h2>Token counts</h2><p>No vectors were written.</p></section>"
    bins, x_range = token_bins(data.tokens, limit)
    markers = [Marker(limit + 1, f"max_seq_length {limit}", "max_seq_length")] if limit else []
    svg = histogram(bins, x_range, "tokens per text, with [CLS] and [SEP]", "texts", markers,
                    label="token counts")
    if settings.get("long_text") == "chunk":
        longer = sum(c for v, c in data.tokens.counts.items() if limit and v > limit)
        said = (f"With <code>--long_text chunk</code> no text is truncated: {_share(longer, data.rows)} texts were "
                f"longer than max_seq_length {limit} and embedded window by window.")
    else:
        said = (f"Truncated at max_seq_length {limit}: <strong id=\"truncated-share\">"
                f"{_share(data.truncated, data.rows)}</strong> texts (they count {limit} tokens here).")
    caption = (f"Token counts of {data.rows:,} vectors (bins of {number(bins[0].high - bins[0].low)} tokens; "
               f"the dashed line is max_seq_length). {said}")
    return "<section id=\"tokens\"><h2>Token counts</h2>" + _figure("fig-tokens", svg, caption) + "</section>"


def _performance(manifest: Manifest) -> str:
    perf = manifest.performance
    if not perf:
        return "<section id=\"performance\"><h2>Performance</h2><p>This manifest records no performance.</p></section>"
    facts = [("texts/s", perf.get("texts_per_second")), ("real tokens/s", perf.get("real_tokens_per_second")),
             ("padding efficiency (real / padded tokens)", perf.get("padding_efficiency")),
             ("encoder build", _seconds(perf.get("encoder_build_seconds"))),
             ("device busy share", perf.get("device_busy_share")), ("wall time", _seconds(perf.get("wall_seconds"))),
             ("batches", perf.get("batches")), ("encode time", _seconds(perf.get("encode_seconds"))),
             ("encoder builds / worker processes",
              f"{perf['encoder_builds']} / {perf['worker_processes']}" if "encoder_builds" in perf else None)]
    rows = "".join(f"<tr><th>{escape(name)}</th><td>{escape(_value(value))}</td></tr>"
                   for name, value in facts if value is not None)
    parts = ["<h2>Performance</h2>", f'<table id="table-performance">{rows}</table>']
    stages = perf.get("stage_seconds") or {}
    if stages:
        wall = perf.get("wall_seconds")
        markers = [Marker(wall, f"wall {number(wall)} s", "wall_seconds")] if wall else []
        svg = horizontal_bars(list(stages.items()), "s", markers, label="busy seconds by stage", data_key="stage")
        parts.append(_figure("fig-performance", svg,
                             "Busy seconds by stage, added over all worker threads: stages overlap, so they can "
                             "add up to more than the wall time (dashed line). read, wait, device, copy, arrow run on "
                             "the DoFn's thread; tokenize and batch on the host thread; parquet on the writer."))
    return "<section id=\"performance\">" + "".join(parts) + "</section>"


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:,} s"


def norm_bins(tally: Tally) -> tuple[list[Bin], tuple[float, float]]:
    """NORM_BINS equal bins from the smallest to the largest norm; one bin when they (nearly) all agree."""
    low, high = tally.low, tally.high
    if high - low <= 1e-3 * max(abs(high), 1e-12):
        pad = max(abs(high) * 0.01, 1e-6)  # the one bar is drawn a tenth of the axis wide
        title = f"{low:.7g}–{high:.7g}: {tally.total:,} vectors"
        return [Bin(low - pad / 10, high + pad / 10, tally.total, title)], (low - pad, high + pad)
    width = (high - low) / NORM_BINS
    counts = [0] * NORM_BINS
    for value, count in tally.counts.items():
        counts[min(max(int((value - low) / width), 0), NORM_BINS - 1)] += count
    bins = [Bin(low + i * width, low + (i + 1) * width, c,
                f"{number(low + i * width)}–{number(low + (i + 1) * width)}: {c:,} vectors")
            for i, c in enumerate(counts)]
    return bins, (low, high)


def _norms(manifest: Manifest, data: RunData) -> str:
    if not data.rows:
        return "<section id=\"norms\"><h2>Vector norms</h2><p>No vectors were written.</p></section>"
    bins, x_range = norm_bins(data.norms)
    svg = histogram(bins, x_range, "L2 norm", "vectors", label="vector norms")
    spread = f"from {data.norms.low:.7g} to {data.norms.high:.7g}"
    if manifest.settings.get("normalize") is True:
        off = sum(c for v, c in data.norms.counts.items() if abs(v - 1) > 2e-3)
        said = (f"The run normalised the vectors, so every norm should be 1: they range {spread}"
                + (f"; {off:,} differ from 1 by more than 0.002 (a vector of zeros cannot be normalised)."
                   if off else "."))
    else:
        said = f"The run did not normalise the vectors: norms range {spread}."
    caption = f"L2 norms of {data.rows:,} vectors (binned after rounding to about 3 significant digits). {said}"
    return "<section id=\"norms\"><h2>Vector norms</h2>" + _figure("fig-norms", svg, escape(caption)) + "</section>"


def _map(data: RunData) -> str:
    points = data.map_points
    if points is None or len(points) < 3:
        return ""
    sampled = "every vector" if len(points) == data.rows else f"a seeded sample of {len(points):,} vectors"
    svg = scatter(points.tolist(), data.map_groups, label="embedding map")
    caption = (f"Embedding map: {sampled} on their first two principal components (PCA), coloured by "
               f"<strong>{escape(data.color_by)}</strong>. Points close together have similar vectors; groups "
               "that sit apart are told apart by the model (only the two widest directions are drawn).")
    return f'<h2 id="map">Embedding map</h2>{_figure("fig-map", svg, caption)}'


def _duplicates(data: RunData) -> str:
    dup = data.duplicates
    head = "<section id=\"duplicates\"><h2>Near-duplicates</h2>"
    if dup is None or dup.sample_size < 2:
        return head + "<p>Fewer than two vectors: nothing to compare.</p></section>"
    sampled = "every vector" if dup.sample_size == data.rows else f"a seeded sample of {dup.sample_size:,} vectors"
    # float32 sums put an exact copy at 1.0000001: clip, and keep the axis at least 0.05 wide.
    nearest = np.clip(dup.nearest[~np.isnan(dup.nearest)], -1.0, 1.0)
    low = max(min(math.floor(float(nearest.min()) * 20) / 20, 0.95), -1.0)
    width = (1.0 - low) / 40
    counts = np.bincount(np.clip(((nearest - low) / width).astype(int), 0, 39), minlength=40)
    bins = [Bin(low + i * width, low + (i + 1) * width, int(c),
                f"{low + i * width:.3f}–{low + (i + 1) * width:.3f}: {int(c):,} vectors") for i, c in enumerate(counts)]
    svg = histogram(bins, (low, 1.0), "cosine similarity to the nearest other vector in the sample", "vectors",
                    [Marker(NEAR_DUPLICATE, f"near-duplicate {NEAR_DUPLICATE}", "near_duplicate")],
                    label="nearest-neighbour similarity")
    share = int(dup.has_duplicate.sum())
    caption = (f"Nearest-neighbour cosine similarity within {sampled} (sample size "
               f'<span id="sample-size">{dup.sample_size:,}</span>). <strong id="near-duplicate-share">'
               f"{_share(share, dup.sample_size)}</strong> have a near-duplicate (cosine ≥ {NEAR_DUPLICATE}) in the "
               f"sample; {dup.pairs:,} such pairs.")
    rows = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td class=\"n\">{s:.4f}</td></tr>"
                   for a, b, s in dup.examples)
    examples = (f'<table id="table-duplicates"><tr><th>id</th><th>id</th><th>cosine</th></tr>{rows}</table>'
                if rows else "<p>No pair in the sample reaches the threshold.</p>")
    return head + _figure("fig-duplicates", svg, caption) + examples + "</section>"


def _settings(manifest: Manifest) -> str:
    rows = "".join(f"<tr><th>{escape(str(name))}</th><td>{escape(_value(value))}</td></tr>"
                   for name, value in manifest.settings.items())
    extra = ""
    if manifest.incremental:
        inc = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_value(v))}</td></tr>"
                      for k, v in manifest.incremental.items())
        extra = f'<h3>Incremental run (--skip_existing)</h3><table id="table-incremental">{inc}</table>'
    removed = manifest.control_chars_removed
    note = f'<p class="note">Control characters removed while reading: {removed:,}.</p>' if removed else ""
    return (f'<section id="settings"><h2>Settings</h2><table id="table-settings">{rows}</table>'
            f"{extra}{note}</section>")


if __name__ == "__main__":
    sys.exit(main())
