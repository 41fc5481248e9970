"""--output_precision through the job: stored types, mistakes caught at launch, search and the report on each."""

import json

import numpy as np
import pyarrow as pa
import pytest

from encoders import EncoderSpec, dequantize, quantize
from pipeline.ranges import main as ranges_main
from pipeline.report import main as report_main
from pipeline.search import main as search_main
from tests.pipeline.conftest import read_embeddings, read_manifest

TEXTS = ["今天天气很好", "hello world", "the man is eating bread", "手机质量不错", "a good hotel", "服务态度差",
         "快递很快", "the woman is eating food"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("compact") / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(TEXTS)), encoding="utf-8")
    return path


def _run(run_cli, corpus, tiny_bert_dir, out, *flags):
    code, _, err = run_cli("--input", corpus, "--output", out, "--model", tiny_bert_dir, "--id_field", "id",
                           "--normalize", *flags)
    return code, err


@pytest.fixture(scope="module")
def float_run(corpus, tiny_bert_dir, tmp_path_factory):
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("compact-float32") / "out"
    assert main(["--input", str(corpus), "--output", str(out), "--model", str(tiny_bert_dir), "--id_field", "id",
                 "--normalize", "--progress", "off"]) == 0
    return out


@pytest.fixture(scope="module")
def floats(float_run):
    table = read_embeddings(float_run)
    return np.array(table.column("embedding").to_pylist(), dtype=np.float32)


@pytest.mark.parametrize(("flags", "message"), [
    (["--output_precision", "int8", "--calibration_size", "0"], "--calibration_size must be positive, got 0"),
    (["--output_precision", "float16", "--quantize_ranges", "{ranges}"],
     "--quantize_ranges applies only with --output_precision int8 or uint8, not float16"),
    (["--output_precision", "uint8", "--quantize_ranges", "{bad}"], "holds an array of shape [2, 3]; this model's "
                                                                    "vectors need [2, 32]"),
])
def test_quantizing_mistakes_stop_the_launch_in_one_line(run_cli, corpus, tiny_bert_dir, tmp_path, flags, message):
    np.save(tmp_path / "ranges.npy", np.zeros((2, 32), np.float32))
    (tmp_path / "bad.json").write_text("[[0, 0, 0], [1, 1, 1]]")
    flags = [f.format(ranges=tmp_path / "ranges.npy", bad=tmp_path / "bad.json") for f in flags]
    code, err = _run(run_cli, corpus, tiny_bert_dir, tmp_path / "out", *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("precision", ["float16", "int8", "uint8", "binary", "ubinary"])
def test_each_precision_is_stored_searched_and_reported(run_cli, corpus, tiny_bert_dir, tmp_path, floats, precision,
                                                        capsys):
    ranges = np.stack([floats.min(axis=0), floats.max(axis=0)])
    np.save(tmp_path / "ranges.npy", ranges)
    extra = ["--quantize_ranges", tmp_path / "ranges.npy"] if precision.endswith("int8") else []
    out = tmp_path / precision
    code, err = _run(run_cli, corpus, tiny_bert_dir, out, "--output_precision", precision, *extra)
    assert code == 0, err
    table = read_embeddings(out)
    column = table.schema.field("embedding").type
    width = 4 if precision.endswith("binary") else 32
    assert column.list_size == width and column.value_type == {
        "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8(), "binary": pa.int8(), "ubinary": pa.uint8(),
    }[precision]
    settings = read_manifest(out)["settings"]
    assert settings["output_precision"] == precision and settings["dim"] == 32
    if precision.endswith("int8"):
        np.testing.assert_array_equal(json.loads(settings["quantize_ranges_values"]), ranges)

    stored = np.array(table.column("embedding").to_pylist())
    rows = dequantize(stored.astype({"float16": np.float16}.get(precision, np.int8 if precision in ("int8", "binary")
                                                                    else np.uint8)), precision, 32, ranges)
    capsys.readouterr()
    assert search_main([str(out), TEXTS[2], "--k", str(len(TEXTS)), "--format", "json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    query = floats[2]
    if precision.endswith("binary"):  # Hamming: the query's bits against each row's
        query = np.where(query > 0, 1.0, -1.0)
        differing = (rows != query).sum(axis=1)
        expected = 1 - 2 * differing / 32
    else:
        expected = rows @ query / np.linalg.norm(rows, axis=1) / np.linalg.norm(query)
    assert hits[0]["id"] == "t2"
    by_id = dict(zip(table.column("id").to_pylist(), expected, strict=True))
    assert all(abs(h["score"] - by_id[h["id"]]) < 1e-5 for h in hits)
    if precision.endswith("binary"):
        assert search_main([str(out), TEXTS[2], "--k", "1", "--rescore", "--format", "json"]) == 0
        (hit,) = json.loads(capsys.readouterr().out)
        assert hit["id"] == "t2" and abs(hit["score"] - float(rows[2] @ floats[2]) / np.sqrt(32)) < 1e-5

    assert report_main([str(out)]) == 0
    page = (out / "report.html").read_text()
    itemsize = 2 if precision == "float16" else 1
    assert f"<th>bytes per vector</th><td>{width * itemsize} ({precision}, 32 dimensions)</td>" in page


def test_ranges_from_a_float_run_quantize_the_next_runs_as_quantize_embeddings_would(
        run_cli, corpus, tiny_bert_dir, float_run, floats, tmp_path, capsys):
    for name in ("ranges.npy", "ranges.json"):
        assert ranges_main([str(float_run), "--to", str(tmp_path / name)]) == 0
        assert capsys.readouterr().out.strip() == f"wrote {tmp_path / name}: ranges of 32 dimensions from 8 vectors"
    ranges = np.load(tmp_path / "ranges.npy")
    np.testing.assert_array_equal(ranges, np.stack([floats.min(axis=0), floats.max(axis=0)]))
    np.testing.assert_array_equal(np.array(json.loads((tmp_path / "ranges.json").read_text())), ranges)
    out = tmp_path / "int8"
    code, err = _run(run_cli, corpus, tiny_bert_dir, out, "--output_precision", "int8", "--quantize_ranges",
                     tmp_path / "ranges.json")
    assert code == 0, err
    stored = np.array(read_embeddings(out).column("embedding").to_pylist(), dtype=np.int8)
    np.testing.assert_array_equal(stored, quantize(floats, "int8", ranges))
    assert ranges_main([str(out), "--to", str(tmp_path / "again.npy")]) == 2
    assert "stores int8 vectors: take ranges from a float32 or float16 run" in capsys.readouterr().err


def _recorded_ranges(out) -> np.ndarray:
    return np.array(json.loads(read_manifest(out)["settings"]["quantize_ranges_values"]), dtype=np.float32)


@pytest.mark.parametrize("size", [3, 1000])
def test_without_a_ranges_file_int8_calibrates_on_the_first_records_at_launch(run_cli, corpus, tiny_bert_dir, floats,
                                                                               tmp_path, size):
    out = tmp_path / "int8"
    code, err = _run(run_cli, corpus, tiny_bert_dir, out, "--output_precision", "int8", "--calibration_size",
                     str(size))
    assert code == 0, err
    sample = floats[:size]  # one shard: its first records
    ranges = _recorded_ranges(out)
    np.testing.assert_allclose(ranges, np.stack([sample.min(axis=0), sample.max(axis=0)]), atol=1e-6)
    stored = np.array(read_embeddings(out).column("embedding").to_pylist(), dtype=np.int8)
    np.testing.assert_array_equal(stored, quantize(floats, "int8", ranges))
    assert read_manifest(out)["settings"]["calibration_size"] == size


def test_calibrated_ranges_stick_to_reruns_and_to_the_nights_that_reuse_rows(run_cli, corpus, tiny_bert_dir, tmp_path):
    night1 = tmp_path / "night1"
    uint8 = ("--output_precision", "uint8")
    assert _run(run_cli, corpus, tiny_bert_dir, night1, *uint8, "--calibration_size", "2")[0] == 0
    first = _recorded_ranges(night1)
    # again into the same output, with another sample size: the finished run's ranges, so it is replaced quietly
    # (other ranges would be other vectors, which the rerun check refuses without --overwrite)
    code, err = _run(run_cli, corpus, tiny_bert_dir, night1, *uint8, "--calibration_size", "5")
    assert code == 0, err
    np.testing.assert_array_equal(_recorded_ranges(night1), first)
    # a later night over more texts: reused rows keep their bytes, new ones are cut by the same ranges
    more = tmp_path / "more.jsonl"
    more.write_text(corpus.read_text(encoding="utf-8") + "".join(
        json.dumps({"id": f"n{i}", "text": f"new text {i} 新的评论"}, ensure_ascii=False) + "\n" for i in range(5)),
        encoding="utf-8")
    night2 = tmp_path / "night2"
    code, err = _run(run_cli, more, tiny_bert_dir, night2, "--output_precision", "uint8", "--skip_existing",
                     f"{night1}/*.parquet", "--snapshot")
    assert code == 0, err
    np.testing.assert_array_equal(_recorded_ranges(night2), first)
    manifest = read_manifest(night2)
    assert manifest["counts"]["reused"] == len(TEXTS)
    assert manifest["settings"]["model_fingerprint"] == read_manifest(night1)["settings"]["model_fingerprint"]
    # ranges that differ make different vectors: a calibration on other texts does not reuse night 1's rows
    night3 = tmp_path / "night3"
    assert _run(run_cli, more, tiny_bert_dir, night3, "--output_precision", "uint8", "--calibration_size", "13")[0] == 0
    assert read_manifest(night3)["settings"]["model_fingerprint"] != read_manifest(night1)["settings"][
        "model_fingerprint"]


def test_a_model_the_launcher_does_not_load_needs_a_ranges_file():
    from pipeline.calibration import with_ranges
    from pipeline.errors import JobConfigError
    from pipeline.settings import JobSettings

    spec = EncoderSpec(model="gs://bucket/model", output_precision="int8")
    with pytest.raises(JobConfigError, match="give --quantize_ranges FILE"):
        with_ranges(spec, JobSettings(inputs=("gs://bucket/in/*.jsonl",), output="gs://bucket/out"))
