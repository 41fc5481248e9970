"""Small SVG figures for the run report (histograms and bar charts), written as text: no plotting library.

Every drawn mark carries `class` and `data-*` attributes with the number it shows, so a test
(or a reader of the page source) can check a figure against the data without measuring pixels.
All text passes through `html.escape`: labels come from ids, shard names and dead-letter reasons.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
FONT = 'font-family="sans-serif" font-size="12"'
AXIS = "#444"
BAR = "#4477aa"
MARKER = "#cc3311"
# Colour-blind-safe (Paul Tol's bright scheme); outcomes keep their colour across figures.
OUTCOME_COLOURS = {"embedded": "#4477aa", "skipped": "#bbbbbb", "failed": "#ee6677", "reused": "#228833"}


@dataclass(frozen=True)
class Bin:
    """One histogram bar: values in [low, high) on the x axis, how many, and what its tooltip says."""

    low: float
    high: float
    count: int
    title: str


@dataclass(frozen=True)
class Marker:
    """A vertical line at value on the x axis, labelled (e.g. max_seq_length, the wall time)."""

    value: float
    label: str
    name: str


def nice_step(span: float, target: int) -> float:
    """The smallest 1, 2 or 5 x 10^k that cuts span into at most target steps."""
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= raw:
            return multiple * power
    return 10 * power


def number(value: float) -> str:
    """A value for a label: whole numbers with thousands separators, others with up to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _svg(height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" {FONT}>'
            + "".join(body) + "</svg>")


def histogram(bins: Sequence[Bin], x_range: tuple[float, float], x_label: str, y_label: str,
              markers: Sequence[Marker] = (), label: str = "histogram") -> str:
    """Vertical bars over a linear x axis; only bins with a count are drawn, one `rect.bar` each."""
    height, left, right, top, bottom = 260, 60, 20, 24, 46
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    low, high = x_range
    span = (high - low) or 1.0
    tallest = max((b.count for b in bins), default=0) or 1

    def x(value: float) -> float:
        return left + (value - low) / span * plot_w

    def y(count: float) -> float:
        return top + plot_h - count / tallest * plot_h

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>']
    step = nice_step(span, 8)
    tick = math.ceil(low / step) * step
    while tick <= high + 1e-9 * span:
        body.append(f'<line x1="{x(tick):.1f}" y1="{top + plot_h}" x2="{x(tick):.1f}" y2="{top + plot_h + 4}" '
                     f'stroke="{AXIS}"/><text x="{x(tick):.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="middle">{escape(number(round(tick, 10)))}</text>')
        tick += step
    for count in (0, tallest):
        body.append(f'<text x="{left - 6}" y="{y(count) + 4:.1f}" text-anchor="end">{number(count)}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    body.append(f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
                f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(y_label)}</text>')
    for b in bins:
        if b.count <= 0:
            continue
        x0, x1 = x(b.low), x(b.high)
        body.append(f'<rect class="bar" x="{x0:.2f}" y="{y(b.count):.2f}" width="{max(x1 - x0 - 0.5, 0.8):.2f}" '
                    f'height="{top + plot_h - y(b.count):.2f}" fill="{BAR}" data-low="{b.low:g}" '
                    f'data-high="{b.high:g}" data-count="{b.count}">'
                    f"<title>{escape(b.title)}</title></rect>")
    for marker in markers:
        mx = x(marker.value)
        body.append(f'<line class="marker" data-name="{escape(marker.name)}" data-value="{marker.value:g}" '
                    f'x1="{mx:.2f}" y1="{top - 8}" x2="{mx:.2f}" y2="{top + plot_h}" stroke="{MARKER}" '
                    f'stroke-width="2" stroke-dasharray="5 3"/>'
                    f'<text x="{mx - 4:.2f}" y="{top - 10}" text-anchor="end" fill="{MARKER}">'
                    f"{escape(marker.label)}</text>")
    return _svg(height, body, label)


def horizontal_bars(rows: Sequence[tuple[str, float]], unit: str, markers: Sequence[Marker] = (),
                    label: str = "bar chart", data_key: str = "name") -> str:
    """One labelled `rect.bar` per row, longest value spanning the plot; the value is written beside each bar."""
    row_h, top, left, right = 24, 24, 170, 110
    height = top + row_h * len(rows) + 16
    plot_w = WIDTH - left - right
    longest = max([v for _, v in rows] + [m.value for m in markers] + [0]) or 1.0
    body = []
    for i, (name, value) in enumerate(rows):
        y = top + i * row_h
        w = value / longest * plot_w
        body.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(_short(name))}</text>'
                    f'<rect class="bar" x="{left}" y="{y + 4}" width="{max(w, 0.8 if value else 0):.2f}" '
                    f'height="{row_h - 8}" fill="{BAR}" data-{escape(data_key)}="{escape(name)}" '
                    f'data-value="{value:g}"><title>{escape(name)}: {escape(number(value))} {escape(unit)}</title>'
                    f'</rect><text x="{left + w + 6:.2f}" y="{y + 16}">{escape(number(value))} {escape(unit)}</text>')
    for marker in markers:
        mx = left + marker.value / longest * plot_w
        body.append(f'<line class="marker" data-name="{escape(marker.name)}" data-value="{marker.value:g}" '
                    f'x1="{mx:.2f}" y1="{top - 6}" x2="{mx:.2f}" y2="{height - 12}" stroke="{MARKER}" '
                    f'stroke-width="2" stroke-dasharray="5 3"/><text x="{mx - 4:.2f}" y="{top - 10}" '
                    f'text-anchor="end" fill="{MARKER}">{escape(marker.label)}</text>')
    return _svg(height, body, label)


def stacked_bars(rows: Sequence[tuple[str, Sequence[tuple[str, int]]]], colours: Mapping[str, str],
                 label: str = "stacked bar chart") -> str:
    """One bar per row cut into `rect.segment`s (name, count), each row scaled to its own total.

    Rows of very different sizes (all shards, one shard) stay readable; the counts are in the
    legend-free labels at the right and in each segment's tooltip and data attributes.
    """
    row_h, top, left, right = 26, 8, 190, 200
    height = top + row_h * len(rows) + 30
    plot_w = WIDTH - left - right
    body = []
    for i, (name, segments) in enumerate(rows):
        y = top + i * row_h
        total = sum(count for _, count in segments)
        body.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{escape(_short(name))}</text>')
        offset = 0.0
        for outcome, count in segments:
            w = count / total * plot_w if total else 0.0
            body.append(f'<rect class="segment" x="{left + offset:.2f}" y="{y + 4}" width="{w:.2f}" '
                        f'height="{row_h - 8}" fill="{colours.get(outcome, BAR)}" data-row="{escape(name)}" '
                        f'data-outcome="{escape(outcome)}" data-count="{count}">'
                        f"<title>{escape(name)}: {count:,} {escape(outcome)}</title></rect>")
            offset += w
        shown = ", ".join(f"{count:,} {outcome}" for outcome, count in segments if count)
        body.append(f'<text x="{left + plot_w + 8}" y="{y + 17}">{escape(shown or "no records")}</text>')
    x = left
    for outcome, colour in colours.items():
        body.append(f'<rect x="{x}" y="{height - 20}" width="12" height="12" fill="{colour}"/>'
                    f'<text x="{x + 16}" y="{height - 10}">{escape(outcome)}</text>')
        x += 90
    return _svg(height, body, label)


# Paul Tol's bright scheme again for groups of points, the most frequent first; the rest grey.
GROUP_COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#000000")
OTHER_COLOUR = "#bbbbbb"


def scatter(points, groups: Sequence[str], label: str = "scatter plot") -> str:
    """Points [n, 2] as `circle.point`s in a square plot, coloured by group (the most frequent ones; the rest
    grey as "other"), each carrying its group and coordinates; a legend with each group's count at the right."""
    size, pad, legend_w = 420, 12, 260
    ranked = [name for name, _ in sorted(Counter(groups).items(), key=lambda kv: (-kv[1], kv[0]))]
    colour = {name: GROUP_COLOURS[i] for i, name in enumerate(ranked[: len(GROUP_COLOURS)])}
    lows = [min((p[axis] for p in points), default=0.0) for axis in (0, 1)]
    spans = [max((p[axis] for p in points), default=1.0) - lows[axis] or 1.0 for axis in (0, 1)]
    body = [f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="{AXIS}"/>']
    for (x, y), group in zip(points, groups, strict=True):
        cx = pad + 6 + (x - lows[0]) / spans[0] * (size - 12)
        cy = pad + size - 6 - (y - lows[1]) / spans[1] * (size - 12)
        fill = colour.get(group, OTHER_COLOUR)
        body.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{fill}" fill-opacity="0.7" '
                    f'data-group="{escape(group)}" data-x="{x:.4g}" data-y="{y:.4g}"/>')
    counts = Counter(groups)
    shown = [(name, colour[name], counts[name]) for name in ranked[: len(GROUP_COLOURS)]]
    if len(ranked) > len(GROUP_COLOURS):
        shown.append(("other", OTHER_COLOUR, sum(counts[n] for n in ranked[len(GROUP_COLOURS):])))
    for i, (name, fill, count) in enumerate(shown):
        y = pad + 8 + i * 20
        body.append(f'<rect class="legend" x="{2 * pad + size}" y="{y}" width="12" height="12" fill="{fill}" '
                    f'data-group="{escape(name)}" data-count="{count}"/><text x="{2 * pad + size + 18}" '
                    f'y="{y + 10}">{escape(_short(name, 28))} ({count:,})</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * pad + size + legend_w}" height="{2 * pad + size}" '
            f'viewBox="0 0 {2 * pad + size + legend_w} {2 * pad + size}" role="img" aria-label="{escape(label)}" '
            f'{FONT}>' + "".join(body) + "</svg>")


def _short(text: str, limit: int = 26) -> str:
    """Axis labels have a fixed width; the full text stays in the tooltip and the tables."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]
