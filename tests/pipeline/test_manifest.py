import json

import pytest

from pipeline.formats.manifest import Manifest, PartStats, ReconciliationError, ShardStats, build_manifest


def _part(source, part, embedded, failed=(), real=10, padded=16, build="h:1:a", process="h:1"):
    files = (f"embeddings-{source}-{part}.parquet",) + ((f"failed/d-{source}-{part}.jsonl",) if failed else ())
    return PartStats(source, part, embedded, tuple(failed), files, real, padded, 1, 0.5, build, process, 2.0)


def _manifest(shards, parts):
    return build_manifest(shards, parts, {"model": "m"}, 100.0, 110.0)


def test_counts_add_up_overall_per_shard_and_per_reason():
    m = _manifest(
        [ShardStats("a", 10, 2, parts=2), ShardStats("b", 5, 0)],
        [_part("a", 1, 2, [("undecodable", 1)]), _part("a", 0, 5), _part("b", 0, 4, [("invalid_json", 1)])],
    )
    assert m["counts"] == {"read": 15, "embedded": 11, "skipped": 2, "failed": 2}
    assert m["failed_by_reason"] == {"invalid_json": 1, "undecodable": 1}
    assert [(s["embedded"], s["failed_by_reason"]) for s in m["shards"]] == [
        (7, {"undecodable": 1}), (4, {"invalid_json": 1})]
    assert m["files"]["embeddings"] == ["embeddings-a-0.parquet", "embeddings-a-1.parquet", "embeddings-b-0.parquet"]
    assert m["files"]["failed"] == ["failed/d-a-1.jsonl", "failed/d-b-0.jsonl"]
    assert m["started_at"] == "1970-01-01T00:01:40Z" and m["finished_at"] == "1970-01-01T00:01:50Z"


def test_a_lost_record_fails_reconciliation():
    with pytest.raises(ReconciliationError, match="shard a"):
        _manifest([ShardStats("a", 10, 0)], [_part("a", 0, 9)])


def test_a_missing_or_repeated_part_fails_reconciliation():
    with pytest.raises(ReconciliationError, match="cut into 2 parts"):
        _manifest([ShardStats("a", 10, 0, parts=2)], [_part("a", 0, 10)])
    with pytest.raises(ReconciliationError, match="cut into 1 parts"):
        _manifest([ShardStats("a", 10, 0)], [_part("a", 0, 5), _part("a", 0, 5)])


def test_records_from_an_unknown_shard_fail_reconciliation():
    with pytest.raises(ReconciliationError, match="never reported"):
        _manifest([ShardStats("a", 1, 0)], [_part("a", 0, 1), _part("b", 0, 1)])


def test_performance_reports_padding_throughput_and_builds_per_process():
    parts = [
        _part("a", 0, 4, real=30, padded=40, build="h:1:x", process="h:1"),
        _part("a", 1, 4, real=30, padded=40, build="h:1:x", process="h:1"),
        _part("a", 2, 2, real=20, padded=20, build="h:2:y", process="h:2"),
    ]
    perf = _manifest([ShardStats("a", 10, 0, parts=3)], parts)["performance"]
    assert perf["padding_efficiency"] == 0.8
    assert perf["texts_per_second"] == 1.0 and perf["real_tokens_per_second"] == 8.0
    assert (perf["encoder_builds"], perf["worker_processes"], perf["batches"]) == (2, 2, 3)


def test_a_built_manifest_reads_back_typed_and_written_again_is_the_same_json():
    shards = [ShardStats("a.jsonl", read=3, skipped=1), ShardStats("b.jsonl", read=1, skipped=0, removed_chars=2)]
    parts = [PartStats("a.jsonl", 0, 2, (), ("embeddings-00000-00000.parquet",)),
             PartStats("b.jsonl", 0, 0, (("invalid_json", 1),), ("embeddings-00001-00000.parquet",
                                                                    "failed/dead-letters-00001-00000.jsonl"))]
    built = build_manifest(shards, parts, {"model": "m", "dim": 4}, 0.0, 2.0)
    text = json.dumps(built, indent=1)
    manifest = Manifest.from_bytes(text.encode("utf-8"))
    assert manifest.counts == {"read": 4, "embedded": 2, "skipped": 1, "failed": 1}
    assert manifest.embeddings == ("embeddings-00000-00000.parquet", "embeddings-00001-00000.parquet")
    assert manifest.failed_files == ("failed/dead-letters-00001-00000.jsonl",)
    assert manifest.failed_by_reason == {"invalid_json": 1} and manifest.control_chars_removed == 2
    assert manifest.settings["dim"] == 4 and manifest.incremental is None
    assert manifest.started_at == "1970-01-01T00:00:00Z" and manifest.performance["wall_seconds"] == 2.0
    assert json.loads(text) == built  # reading changes nothing of what was written


def test_a_manifest_of_an_earlier_version_reads_with_its_missing_parts_empty():
    old = {"counts": {"read": 1}, "settings": {}, "shards": [{"source": "a"}], "files": {"embeddings": ["e.parquet"]}}
    manifest = Manifest.from_json(old)
    assert manifest.performance == {} and manifest.failed_files == () and manifest.incremental is None
    assert manifest.started_at is None


@pytest.mark.parametrize("data", [[], {"counts": {}}, {"counts": {}, "settings": {}, "shards": [], "files": {}},
                                  {"counts": {}, "settings": {}, "shards": [], "files": {"embeddings": [1]}}])
def test_what_is_not_a_manifest_is_refused_saying_what_was_expected(data):
    with pytest.raises(ValueError, match="expected"):
        Manifest.from_json(data)


def test_a_read_manifest_cannot_be_changed():
    manifest = Manifest.from_json({"counts": {"read": 1}, "settings": {}, "shards": [], "files": {"embeddings": []}})
    with pytest.raises(TypeError):
        manifest.counts["read"] = 2
