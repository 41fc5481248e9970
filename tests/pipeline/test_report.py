"""`python -m pipeline.report`: the page shows every figure, with the run's own numbers, and nothing else is needed."""

import json
import random
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main as run_job
from pipeline.formats.manifest import Manifest
from pipeline.inspect.report_data import near_duplicates, read_run
from pipeline.report import main as report_main
from pipeline.report import render
from tests.pipeline.conftest import NOT_VECTORS, damage_page, read_embeddings, read_manifest, rewrite_embeddings

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("fig-tokens", "fig-outcomes", "fig-dead-letters", "fig-performance", "fig-norms", "fig-duplicates",
           "fig-map")
NASTY_ID = '<script>alert("id")</script>&amp;'
NASTY_SHARD = '<b>&"odd\'.jsonl'
VOID = {"meta", "br", "hr", "img", "input", "link"}


class Page(HTMLParser):
    """The parts of a page the tests look at: every element (with the figure it is in) and the text under each id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict, str | None]] = []
        self.text_in: dict[str, str] = defaultdict(str)
        self.text = ""
        self.tables: dict[str, list[list[str]]] = defaultdict(list)  # cell texts by row, under each table id
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        figure = next((i for t, i in reversed(self._open) if t == "figure"), None)
        self.elements.append((tag, attrs, figure))
        table = next((i for t, i in reversed(self._open) if t == "table"), None)
        if table and tag == "tr":
            self.tables[table].append([])
        elif table and tag in ("td", "th"):
            self.tables[table][-1].append("")
        if tag not in VOID:
            self._open.append((tag, attrs.get("id")))

    def handle_startendtag(self, tag, attrs):
        figure = next((i for t, i in reversed(self._open) if t == "figure"), None)
        self.elements.append((tag, dict(attrs), figure))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text += data
        cell = next((t for t, _ in reversed(self._open) if t in ("td", "th", "table")), None)
        table = next((i for t, i in reversed(self._open) if t == "table"), None)
        if table and cell in ("td", "th"):
            self.tables[table][-1][-1] += data
        for _, element_id in self._open:
            if element_id:
                self.text_in[element_id] += data

    def in_figure(self, figure: str, tag: str, css_class: str | None = None) -> list[dict]:
        return [a for t, a, f in self.elements if f == figure and t == tag
                and (css_class is None or css_class in (a.get("class") or "").split())]


def _words() -> list[str]:
    return (REPO / "examples" / "notes-en.txt").read_text(encoding="utf-8").split()


@pytest.fixture(scope="module")
def finished_run(tiny_bert_dir, tmp_path_factory):
    """A finished run of the tiny BERT over two JSON Lines shards, one with a nasty name and id, and dead letters."""
    rng = random.Random(7)
    words = _words()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 90))) for _ in range(60)]
    inputs = tmp_path_factory.mktemp("report-in")
    lines = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(texts)]
    lines += ["{not json", json.dumps({"id": "r1", "text": "a second r1"}), json.dumps({"id": "no-text"}),
              json.dumps({"id": "blank", "text": "   "})]
    (inputs / "reviews.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    nasty = [json.dumps({"id": NASTY_ID, "text": texts[3]}), json.dumps({"id": "n2", "text": "another & <text>"})]
    (inputs / NASTY_SHARD).write_text("\n".join(nasty) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("report-run") / "out"
    code = run_job([f"--input={inputs}/*.jsonl", f"--output={out}", f"--model={tiny_bert_dir}", "--id_field=id",
                    "--progress=off"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def page(finished_run, tmp_path_factory):
    """The report of finished_run, written beside it (the default place), parsed; and its raw text."""
    assert report_main([str(finished_run)]) == 0
    html = (finished_run / "report.html").read_text(encoding="utf-8")
    return Page(html), html


def test_every_figure_is_an_svg_with_drawn_marks_and_a_caption(page):
    parsed, _ = page
    figure_ids = [a.get("id") for t, a, _ in parsed.elements if t == "figure"]
    assert sorted(figure_ids) == sorted(FIGURES)
    for figure in FIGURES:
        assert len(parsed.in_figure(figure, "svg")) == 1, figure
        assert parsed.in_figure(figure, "figcaption"), figure
        marks = [*parsed.in_figure(figure, "rect", "bar"), *parsed.in_figure(figure, "rect", "segment"),
                 *parsed.in_figure(figure, "circle", "point")]
        assert marks, figure


def test_the_page_needs_no_network_and_no_script(page):
    parsed, html = page
    assert not [t for t, _, _ in parsed.elements if t in ("script", "img", "link", "iframe")]
    assert re.findall(r"https?://[^\s\"']+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")


def test_token_histogram_draws_one_bar_per_nonempty_bin_holding_every_vector(page, finished_run):
    parsed, _ = page
    n_tokens = read_embeddings(finished_run).column("n_tokens").to_numpy()
    bars = parsed.in_figure("fig-tokens", "rect", "bar")
    edges = [(float(b["data-low"]), float(b["data-high"]), int(b["data-count"])) for b in bars]
    for low, high, count in edges:
        assert count == int(((n_tokens >= low) & (n_tokens < high)).sum()) > 0
    assert sum(count for _, _, count in edges) == len(n_tokens)
    [width] = {high - low for low, high, _ in edges}  # equal bins from 0, so every non-empty one is a bar
    assert len(bars) == len({int(n // width) for n in n_tokens})


def test_token_histogram_marks_max_seq_length_and_states_the_truncated_share(page, finished_run):
    parsed, _ = page
    limit = read_manifest(finished_run)["settings"]["max_seq_length"]
    markers = parsed.in_figure("fig-tokens", "line", "marker")
    assert [m["data-name"] for m in markers] == ["max_seq_length"]
    assert float(markers[0]["data-value"]) == limit + 1  # just right of the bin of texts of exactly the limit
    table = read_embeddings(finished_run)
    truncated = pc.sum(table.column("truncated")).as_py()
    assert 0 < truncated < len(table)
    share = f"{truncated:,} of {len(table):,} ({100 * truncated / len(table):.1f}%)"
    assert parsed.text_in["truncated-share"] == share
    assert f"max_seq_length {limit}" in parsed.text_in["fig-tokens"]


def test_outcome_figure_and_table_show_the_manifests_counts(page, finished_run):
    parsed, _ = page
    manifest = read_manifest(finished_run)
    drawn = {s["data-outcome"]: int(s["data-count"]) for s in parsed.in_figure("fig-outcomes", "rect", "segment")
             if s["data-row"] == "all shards"}
    counts = dict(manifest["counts"])
    read = counts.pop("read")
    assert drawn == counts
    for shard in manifest["shards"]:
        row = {s["data-outcome"]: int(s["data-count"]) for s in parsed.in_figure("fig-outcomes", "rect", "segment")
               if s["data-row"] == shard["source"]}
        assert row == {k: shard[k] for k in counts}
    header, *rows = parsed.tables["table-outcomes"]
    assert header == ["shard", "read", *counts]
    expected = [manifest["counts"]] + manifest["shards"]
    numbers = [[int(cell.replace(",", "")) for cell in row[1:]] for row in rows]
    assert numbers == [[e[k] for k in header[1:]] for e in expected]
    assert [row[0] for row in rows] == ["all shards"] + [s["source"] for s in manifest["shards"]]
    assert rows[0][1] == f"{read:,}"


def test_dead_letters_are_shown_by_reason(page, finished_run):
    parsed, _ = page
    reasons = read_manifest(finished_run)["failed_by_reason"]
    assert set(reasons) == {"duplicate_id", "invalid_json", "missing_text"}
    drawn = {b["data-reason"]: float(b["data-value"]) for b in parsed.in_figure("fig-dead-letters", "rect", "bar")}
    assert drawn == reasons
    for reason in reasons:
        assert reason in parsed.text_in["table-dead-letters"]


def test_performance_draws_the_manifests_stage_seconds_against_the_wall_time(page, finished_run):
    parsed, _ = page
    perf = read_manifest(finished_run)["performance"]
    drawn = {b["data-stage"]: float(b["data-value"]) for b in parsed.in_figure("fig-performance", "rect", "bar")}
    assert drawn == perf["stage_seconds"]
    [wall] = parsed.in_figure("fig-performance", "line", "marker")
    assert float(wall["data-value"]) == perf["wall_seconds"]
    table = parsed.text_in["table-performance"]
    for key in ("texts_per_second", "real_tokens_per_second", "padding_efficiency", "device_busy_share"):
        assert str(perf[key]) in table, key
    assert f"{perf['encoder_build_seconds']} s" in table


def test_norm_histogram_holds_every_vector_and_says_the_run_did_not_normalise(page, finished_run):
    parsed, _ = page
    vectors = np.stack(read_embeddings(finished_run).column("embedding").to_numpy(zero_copy_only=False))
    norms = np.linalg.norm(vectors, axis=1)
    bars = parsed.in_figure("fig-norms", "rect", "bar")
    assert sum(int(b["data-count"]) for b in bars) == len(norms)
    assert float(bars[0]["data-low"]) == pytest.approx(norms.min(), rel=1e-5)
    assert float(bars[-1]["data-high"]) == pytest.approx(norms.max(), rel=1e-5)
    assert "did not normalise" in parsed.text_in["fig-norms"]


def test_a_normalised_run_has_all_norms_in_one_bar_at_one(tiny_bert_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("one\ntwo words\nthree more words\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_job([f"--input={tmp_path / 'in.txt'}", f"--output={out}", f"--model={tiny_bert_dir}", "--normalize",
                    "--progress=off"]) == 0
    assert report_main([str(out)]) == 0
    parsed = Page((out / "report.html").read_text(encoding="utf-8"))
    [bar] = parsed.in_figure("fig-norms", "rect", "bar")
    assert int(bar["data-count"]) == 3
    assert float(bar["data-low"]) < 1 < float(bar["data-high"])
    assert "The run normalised the vectors" in parsed.text_in["fig-norms"]


def test_a_sample_where_every_vector_has_an_exact_copy_draws_finite_bins(finished_run):
    """float32 puts some exact copies at 1.0000001: the axis must not collapse to zero width."""
    vectors = np.zeros((4, 8), np.float32)
    vectors[:, :2] = [[2, 3], [2, 3], [3, 4], [3, 4]]
    manifest = Manifest.from_json(read_manifest(finished_run))
    data = read_run(str(finished_run), manifest, 0)
    data.duplicates = near_duplicates(["a", "b", "c", "d"], vectors)
    assert data.duplicates.nearest.min() >= 1.0
    parsed = Page(render(str(finished_run), manifest, data))
    bars = parsed.in_figure("fig-duplicates", "rect", "bar")
    assert sum(int(b["data-count"]) for b in bars) == 4
    assert all(np.isfinite(float(b["data-low"])) and float(b["data-low"]) < float(b["data-high"]) for b in bars)
    assert "4 of 4 (100.0%)" in parsed.text_in["near-duplicate-share"]


def test_header_names_the_model_and_run_times(page, finished_run):
    parsed, _ = page
    manifest = read_manifest(finished_run)
    header = parsed.text_in["table-run"]
    for value in (manifest["settings"]["model"], manifest["settings"]["backend"], manifest["settings"]["precision"],
                  manifest["started_at"], manifest["finished_at"]):
        assert value in header


def test_near_duplicate_share_of_the_whole_sample_agrees_with_all_pairs_compared(page, finished_run):
    parsed, _ = page
    vectors = np.stack(read_embeddings(finished_run).column("embedding").to_numpy(zero_copy_only=False))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1)
    having = int((sims >= 0.99).any(axis=1).sum())
    assert parsed.text_in["sample-size"] == str(len(vectors))
    assert parsed.text_in["near-duplicate-share"] == f"{having} of {len(vectors)} ({100 * having / len(vectors):.1f}%)"


def test_near_duplicates_counts_rows_with_a_copy_and_lists_the_closest_pairs():
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(30, 256)).astype(np.float32)  # random high-dimensional: far from each other
    copies = distinct[:6] * 3 + rng.normal(scale=1e-3, size=(6, 256)).astype(np.float32)  # scale is not similarity
    ids = [f"d{i}" for i in range(30)] + [f"c{i}" for i in range(6)]
    found = near_duplicates(ids, np.concatenate([distinct, copies]), block=7, examples=4)
    assert found.sample_size == 36
    assert found.has_duplicate.sum() == 12 and found.share == pytest.approx(12 / 36)
    assert found.pairs == 6
    assert len(found.examples) == 4
    assert all(b == "c" + a[1:] and s > 0.999 for a, b, s in found.examples)


def test_the_sample_is_bounded_said_on_the_page_and_the_same_every_time(finished_run, tmp_path, capsys):
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    assert report_main([str(finished_run), "--to", str(first), "--sample", "10"]) == 0
    assert report_main([str(finished_run), "--to", str(second), "--sample", "10"]) == 0
    assert "of a 10-row sample" in capsys.readouterr().out
    assert first.read_bytes() == second.read_bytes()
    parsed = Page(first.read_text(encoding="utf-8"))
    assert parsed.text_in["sample-size"] == "10"
    assert "a seeded sample of 10 vectors" in parsed.text_in["fig-duplicates"]


def test_report_goes_where_to_says_and_the_output_is_left_alone(finished_run, tmp_path, capsys):
    before = sorted(p.name for p in finished_run.iterdir())
    target = tmp_path / "elsewhere.html"
    assert report_main([str(finished_run), "--to", str(target)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {target}: ")
    assert Page(target.read_text(encoding="utf-8")).in_figure("fig-tokens", "svg")
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_report_of_an_output_on_an_fsspec_filesystem(finished_run, capsys):
    remote = "memory://report-test/out"
    for path in finished_run.rglob("*"):
        if path.is_file() and path.name != "report.html":
            with fsspec.open(f"{remote}/{path.relative_to(finished_run).as_posix()}", "wb") as f:
                f.write(path.read_bytes())
    assert report_main([remote]) == 0
    assert f"wrote {remote}/report.html" in capsys.readouterr().out
    with fsspec.open(f"{remote}/report.html", "r", encoding="utf-8") as f:
        parsed = Page(f.read())
    assert sorted(a["id"] for t, a, _ in parsed.elements if t == "figure") == sorted(FIGURES)
    fsspec.filesystem("memory").rm("/report-test", recursive=True)


def test_user_text_is_escaped(page, finished_run):
    parsed, html = page
    assert "<script" not in html and "<b>" not in html
    assert NASTY_SHARD in parsed.text_in["table-outcomes"]
    assert {s["data-row"] for s in parsed.in_figure("fig-outcomes", "rect", "segment")} >= {NASTY_SHARD}
    # its text is another record's, so it is in an exact-duplicate pair
    assert NASTY_ID in [cell for row in parsed.tables["table-duplicates"] for cell in row]


@pytest.mark.parametrize("manifest", [None, "not json {", '{"counts": 3}', "[1, 2]"],
                         ids=["unfinished", "not-json", "other-json", "json-list"])
def test_an_output_that_is_not_a_finished_run_of_ours_exits_2_with_one_line(manifest, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "embeddings-00000-00000.parquet").write_bytes(b"PAR1")
    if manifest is not None:
        (out / "_SUCCESS").write_text(manifest, encoding="utf-8")
    assert report_main([str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: ")
    assert not (out / "report.html").exists()


def test_a_file_the_manifest_lists_but_is_gone_exits_2(finished_run, tmp_path, capsys):
    copy = tmp_path / "out"
    shutil.copytree(finished_run, copy)
    (copy / read_manifest(copy)["files"]["embeddings"][0]).unlink()
    assert report_main([str(copy)]) == 2
    assert "is listed in _SUCCESS but missing" in capsys.readouterr().err


def test_a_page_that_cannot_be_written_exits_2(finished_run, tmp_path, capsys):
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    assert report_main([str(finished_run), "--to", str(tmp_path / "a-file" / "report.html")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write ")


def test_a_run_that_embedded_nothing_still_shows_its_outcomes(tiny_bert_dir, tmp_path):
    (tmp_path / "in.jsonl").write_text("{broken\n{\"text\": 3}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_job([f"--input={tmp_path / 'in.jsonl'}", f"--output={out}", f"--model={tiny_bert_dir}",
                    "--progress=off"]) == 0
    assert report_main([str(out)]) == 0
    parsed = Page((out / "report.html").read_text(encoding="utf-8"))
    figures = sorted(a["id"] for t, a, _ in parsed.elements if t == "figure")
    assert figures == ["fig-dead-letters", "fig-outcomes", "fig-performance"]
    assert "No vectors were written." in parsed.text


def test_the_next_run_into_the_output_removes_the_old_report(finished_run, tiny_bert_dir, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(finished_run, copy)
    assert (copy / "report.html").exists()
    inputs = tmp_path / "in.txt"
    inputs.write_text("one\ntwo\n", encoding="utf-8")
    assert run_job([f"--input={inputs}", f"--output={copy}", f"--model={tiny_bert_dir}", "--overwrite",
                    "--progress=off"]) == 0
    assert not (copy / "report.html").exists()


def test_python_m_pipeline_report_runs_as_a_command(finished_run, tmp_path):
    target = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "pipeline.report", str(finished_run), "--to", str(target)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"wrote {target}: ") and target.exists()
    missing = subprocess.run([sys.executable, "-m", "pipeline.report", str(tmp_path / "nothing")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)


# Injected into a copy of the page only: records script errors and resource loads, then measures each figure.
PROBE_HEAD = "<script>window.__errors = []; addEventListener('error', e => __errors.push(String(e.message)));</script>"
PROBE_BODY = """<script>
const figures = {};
for (const figure of document.querySelectorAll('figure')) {
  const svg = figure.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('rect.bar, rect.segment, circle.point')].filter(r => {
    const b = r.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length;
  figures[figure.id] = {width: box.width, height: box.height, marks: marks};
}
const probe = document.createElement('pre');
probe.id = 'probe';
probe.textContent = JSON.stringify({figures: figures, errors: window.__errors,
                                    resources: performance.getEntriesByType('resource').length});
document.body.appendChild(probe);
</script>"""


def test_the_page_renders_in_a_headless_browser(page, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    _, html = page
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</head>", PROBE_HEAD + "</head>").replace("</body>", PROBE_BODY + "</body>"),
                      encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--dump-dom"]
    done = subprocess.run([browser, *flags, probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = Page(done.stdout).text_in["probe"]
    assert probe, f"the probe script did not run: {done.stdout[:500]}"
    result = json.loads(probe)
    assert result["errors"] == [] and result["resources"] == 0
    assert sorted(result["figures"]) == sorted(FIGURES)
    for figure, drawn in result["figures"].items():
        assert drawn["width"] > 0 and drawn["height"] > 0 and drawn["marks"] > 0, figure


@pytest.mark.slow
def test_near_duplicate_share_with_the_real_model_counts_exactly_the_repeated_lines(tmp_path, capsys):
    lines = (REPO / "examples" / "notes-en.txt").read_text(encoding="utf-8").splitlines()
    distinct = list(dict.fromkeys(line for line in lines if line.strip()))[:40]
    (tmp_path / "in.txt").write_text("\n".join(distinct + distinct[:10]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_job([f"--input={tmp_path / 'in.txt'}", f"--output={out}", "--progress=off"]) == 0
    assert report_main([str(out)]) == 0
    parsed = Page((out / "report.html").read_text(encoding="utf-8"))
    assert parsed.text_in["near-duplicate-share"] == "20 of 50 (40.0%)"  # 10 lines and their 10 repeats
    _, *pairs = parsed.tables["table-duplicates"]
    found = {frozenset(int(cell.split(":")[1]) for cell in pair[:2]) for pair in pairs}
    assert found and found <= {frozenset((i, i + 40)) for i in range(1, 11)}
    assert "The run normalised the vectors" in parsed.text_in["fig-norms"]


@pytest.mark.parametrize("vector_type", [pa.list_(pa.float32()), pa.large_list(pa.float64())],
                         ids=["list<float>", "large_list<double>"])
def test_embeddings_rewritten_as_variable_size_lists_give_the_same_page(finished_run, tmp_path, capsys, vector_type):
    """As DuckDB's `COPY ... TO` writes them: list<float>, and no key-value metadata (the report needs none)."""
    copy = tmp_path / "out"
    shutil.copytree(finished_run, copy)
    for name in read_manifest(copy)["files"]["embeddings"]:
        rewrite_embeddings(copy / name, lambda column: column.cast(vector_type), keep_metadata=False)
    assert report_main([str(finished_run), "--to", str(tmp_path / "before.html")]) == 0
    assert report_main([str(copy), "--to", str(tmp_path / "after.html")]) == 0
    before = (tmp_path / "before.html").read_text(encoding="utf-8").replace(str(finished_run), "OUTPUT")
    after = (tmp_path / "after.html").read_text(encoding="utf-8").replace(str(copy), "OUTPUT")
    assert after == before


@pytest.mark.parametrize("change, said", NOT_VECTORS)
def test_embeddings_that_are_not_vectors_of_the_recorded_dim_exit_2_with_one_line(finished_run, tmp_path, capsys,
                                                                                 change, said):
    copy = tmp_path / "out"
    shutil.copytree(finished_run, copy)
    names = read_manifest(copy)["files"]["embeddings"]
    largest = max(names, key=lambda name: pq.read_metadata(copy / name).num_rows)
    rewrite_embeddings(copy / largest, change)
    assert report_main([str(copy), "--to", str(tmp_path / "report.html")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {copy / largest}: ") and captured.err.count("\n") == 1
    assert said in captured.err
    assert not (tmp_path / "report.html").exists()


def test_a_page_changed_after_the_job_wrote_it_exits_2_naming_the_file(finished_run, tmp_path, capsys):
    copy = tmp_path / "out"
    shutil.copytree(finished_run, copy)
    names = read_manifest(copy)["files"]["embeddings"]
    damaged = copy / max(names, key=lambda name: pq.read_metadata(copy / name).num_rows)
    before = pq.read_table(damaged).column("embedding")
    damage_page(damaged)
    assert pq.read_table(damaged).column("embedding") != before  # read unchecked: other vectors, no error
    assert report_main([str(copy), "--to", str(tmp_path / "report.html")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {damaged} cannot be read: ") and captured.err.count("\n") == 1
    assert "CRC checksum verification failed" in captured.err
    assert not (tmp_path / "report.html").exists()


def test_the_embedding_map_draws_the_sample_on_its_first_two_principal_components_by_shard(page, finished_run):
    parsed, _ = page
    points = parsed.in_figure("fig-map", "circle", "point")
    table = read_embeddings(finished_run)
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float64)
    assert len(points) == len(vectors) == 62  # every vector: the sample is larger than the run
    centred = vectors - vectors.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)  # the principal axes, found another way
    expected = centred @ axes[:, ::-1][:, :2]
    drawn = np.array([[float(p["data-x"]), float(p["data-y"])] for p in points])
    for axis in (0, 1):  # the same points whatever their order; a component's sign is arbitrary
        scale = np.abs(expected[:, axis]).max()
        assert min(np.abs(np.sort(drawn[:, axis]) - np.sort(sign * expected[:, axis])).max()
                   for sign in (1, -1)) < 1e-3 * scale
    groups = Counter(p["data-group"] for p in points)
    assert groups == {"reviews.jsonl": 60, NASTY_SHARD: 2}
    legend = {a["data-group"]: int(a["data-count"]) for a in parsed.in_figure("fig-map", "rect", "legend")}
    assert legend == groups


def test_the_map_colours_by_a_kept_field_and_a_field_not_kept_is_a_one_line_error(tiny_bert_dir, tmp_path, capsys):
    inputs = tmp_path / "in.jsonl"
    rows = [{"id": f"x{i}", "text": f"text number {i} " * (i % 5 + 1), "lang": ["en", "zh", None][i % 3]}
            for i in range(12)]
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert run_job([f"--input={inputs}", f"--output={out}", f"--model={tiny_bert_dir}", "--id_field=id",
                    "--keep_fields=lang", "--progress=off"]) == 0
    assert report_main([str(out), "--color_by", "lang"]) == 0
    parsed = Page((out / "report.html").read_text(encoding="utf-8"))
    assert Counter(p["data-group"] for p in parsed.in_figure("fig-map", "circle", "point")) == {
        "en": 4, "zh": 4, "null": 4}
    capsys.readouterr()
    assert report_main([str(out), "--color_by", "country"]) == 2
    assert capsys.readouterr().err.strip() == "error: --color_by country: the output keeps no such field (kept: lang)"
