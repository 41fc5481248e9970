import pytest

from pipeline.manifest import EmbedStats, ReconciliationError, ShardStats, build_manifest


def _stats(embedded, real=10, padded=16, build="h:1:a", process="h:1"):
    return EmbedStats(tuple(embedded), real, padded, 1, 0.5, build, process, 2.0)


def _manifest(stats, embedded, failed):
    return build_manifest(stats, embedded, failed, {"embeddings": ["e-1", "e-0"]}, {"model": "m"}, 100.0, 110.0)


def test_counts_add_up_overall_per_shard_and_per_reason():
    m = _manifest(
        [ShardStats("a", 10, 2), ShardStats("b", 5, 0)],
        [_stats([("a", 5)]), _stats([("a", 2), ("b", 4)])],
        [(("a", "undecodable"), 1), (("b", "invalid_json"), 1)],
    )
    assert m["counts"] == {"read": 15, "embedded": 11, "skipped": 2, "failed": 2}
    assert m["failed_by_reason"] == {"invalid_json": 1, "undecodable": 1}
    assert [s["embedded"] for s in m["shards"]] == [7, 4]
    assert m["files"]["embeddings"] == ["e-0", "e-1"]
    assert m["started_at"] == "1970-01-01T00:01:40Z" and m["finished_at"] == "1970-01-01T00:01:50Z"


def test_a_lost_record_fails_reconciliation():
    with pytest.raises(ReconciliationError, match="shard a"):
        _manifest([ShardStats("a", 10, 0)], [_stats([("a", 9)])], [])


def test_records_from_an_unknown_shard_fail_reconciliation():
    with pytest.raises(ReconciliationError, match="never reported"):
        _manifest([ShardStats("a", 1, 0)], [_stats([("a", 1), ("b", 1)])], [])


def test_performance_reports_padding_throughput_and_builds_per_process():
    stats = [
        _stats([("a", 4)], real=30, padded=40, build="h:1:x", process="h:1"),
        _stats([("a", 4)], real=30, padded=40, build="h:1:x", process="h:1"),
        _stats([("a", 2)], real=20, padded=20, build="h:2:y", process="h:2"),
    ]
    perf = _manifest([ShardStats("a", 10, 0)], stats, [])["performance"]
    assert perf["padding_efficiency"] == 0.8
    assert perf["texts_per_second"] == 1.0 and perf["real_tokens_per_second"] == 8.0
    assert (perf["encoder_builds"], perf["worker_processes"], perf["batches"]) == (2, 2, 3)
