import pytest

from pipeline.manifest import ReconciliationError, ShardStats, build_manifest


def _manifest(stats, embedded, failed):
    return build_manifest(stats, embedded, failed, {"embeddings": ["e-1", "e-0"]}, {"model": "m"}, "t0", "t1")


def test_counts_add_up_overall_per_shard_and_per_reason():
    m = _manifest(
        [ShardStats("a", 10, 2), ShardStats("b", 5, 0)],
        [("a", 5), ("a", 2), ("b", 4)],
        [(("a", "undecodable"), 1), (("b", "invalid_json"), 1)],
    )
    assert m["counts"] == {"read": 15, "embedded": 11, "skipped": 2, "failed": 2}
    assert m["failed_by_reason"] == {"invalid_json": 1, "undecodable": 1}
    assert [s["embedded"] for s in m["shards"]] == [7, 4]
    assert m["files"]["embeddings"] == ["e-0", "e-1"]


def test_a_lost_record_fails_reconciliation():
    with pytest.raises(ReconciliationError, match="shard a"):
        _manifest([ShardStats("a", 10, 0)], [("a", 9)], [])


def test_records_from_an_unknown_shard_fail_reconciliation():
    with pytest.raises(ReconciliationError, match="never reported"):
        _manifest([ShardStats("a", 1, 0)], [("a", 1), ("b", 1)], [])
