"""The calibration sample: which records the launcher embeds for int8/uint8 ranges when none are given."""

import json

from pipeline.calibration import SAMPLED_SHARDS, calibration_texts
from pipeline.preflight import list_shards
from pipeline.settings import JobSettings


def _shards(tmp_path, sizes):
    for n, size in enumerate(sizes):
        (tmp_path / f"part-{n:03d}.jsonl").write_text(
            "".join(json.dumps({"text": f"shard {n} line {i}"}) + "\n" for i in range(size)))
    job = JobSettings(inputs=(str(tmp_path / "*.jsonl"),), output=str(tmp_path / "out"))
    return job, list_shards(job)


def test_the_sample_takes_an_equal_share_from_the_start_of_shards_spread_over_the_input(tmp_path):
    job, shards = _shards(tmp_path, [5] * 40)
    texts = calibration_texts(shards, job, 32)
    chosen = range(0, 40, 40 // SAMPLED_SHARDS)[:SAMPLED_SHARDS]  # every other shard, 16 of them
    assert texts == [f"shard {n} line {i}" for n in chosen for i in range(2)]
    assert calibration_texts(shards, job, 32) == texts  # a rerun embeds the same sample


def test_short_shards_leave_the_rest_of_the_sample_to_the_following_ones(tmp_path):
    job, shards = _shards(tmp_path, [1, 0, 2, 6])
    assert calibration_texts(shards, job, 6) == [
        "shard 0 line 0", "shard 2 line 0", "shard 2 line 1", "shard 3 line 0", "shard 3 line 1", "shard 3 line 2"]
    assert len(calibration_texts(shards, job, 100)) == 9  # all there is
    assert calibration_texts((), job, 5) == []
