"""Keys, earlier outputs, snapshot copy and commit report their time and volume as job counters."""

import json

import apache_beam as beam
import pytest

from pipeline.cli import prepare
from pipeline.formats.output import clear_previous_output
from pipeline.stages import metrics
from pipeline.stages.graph import build_pipeline


def run_and_count(argv) -> dict[str, int]:
    """Run the job as the CLI would build it; returns its counters of the stage_metrics namespace by name."""
    config, options, _ = prepare([str(a) for a in argv])
    clear_previous_output(config.output)
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, 0.0)
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(metrics.METRICS_NAMESPACE))
    return {c.key.metric.name: c.committed for c in counters["counters"]}


@pytest.fixture
def two_nights(tmp_path, tiny_bert_dir):
    """Night 1 (5 records) then night 2 (the same 5, one text changed, one new id), with --snapshot."""
    corpus = tmp_path / "corpus.jsonl"
    base = ["--input", corpus, "--id_field", "id", "--model", tiny_bert_dir, "--progress", "off"]

    def night(rows, output, *extra):
        corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
        return run_and_count([*base, "--output", tmp_path / output, *extra])

    first = [(f"id{i}", f"text number {i}") for i in range(5)]
    one = night(first, "night1")
    second = [*first[:4], ("id4", "changed"), ("id5", "new")]
    two = night(second, "night2", "--skip_existing", f"{tmp_path}/night1/*.parquet", "--snapshot")
    return one, two


def test_the_keys_stage_counts_its_records_and_the_bytes_it_hands_to_the_grouping(two_nights):
    one, two = two_nights
    assert one[metrics.KEYS_RECORDS] == 5
    assert two[metrics.KEYS_RECORDS] == 6
    # Every key carries at least its id, the hash and its record number.
    assert two[metrics.KEY_BYTES] >= 6 * (3 + metrics.KEY_FIXED_BYTES)
    assert two[metrics.KEYS_MS] >= 0


def test_reading_earlier_outputs_counts_their_rows(two_nights):
    one, two = two_nights
    assert metrics.EARLIER_ROWS not in one
    assert two[metrics.EARLIER_ROWS] == 5
    assert metrics.EARLIER_KEYS_MS in two


def test_the_snapshot_copy_and_the_commit_report_their_time(two_nights):
    one, two = two_nights
    assert metrics.SNAPSHOT_COPY_MS in two and metrics.SNAPSHOT_COPY_MS not in one
    assert one[metrics.COMMIT_FILES] == 1  # one embeddings file
    assert two[metrics.COMMIT_FILES] == 2  # the two embedded records' file and the reused rows' file
    assert metrics.COMMIT_MS in one
