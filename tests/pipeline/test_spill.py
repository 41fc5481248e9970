"""Spilled elements: packed values in one staging file per producer, each loaded back from its byte range."""

import fsspec
import numpy as np
import pytest

from pipeline.formats.output import STAGING_DIR
from pipeline.formats.spill import SPILL_PREFIX, pack, spill, spill_directory, spill_path, stash, stash_one, unpack
from pipeline.stages.decisions import NewKeys


def _keys(shard: int, n: int) -> NewKeys:
    return NewKeys.of(shard, f"s{shard}.jsonl", [f"id-{shard}-{i}" for i in range(n)], list(range(n)),
                      [f"{i:064x}" for i in range(n)], [i % 3 for i in range(n)])


def _same_keys(a: NewKeys, b: NewKeys) -> bool:
    return (a.shard, a.source) == (b.shard, b.source) and a.ids.equals(b.ids) and all(
        np.array_equal(x, y) for x, y in ((a.lines, b.lines), (a.hashes, b.hashes), (a.removed, b.removed)))


def test_pack_round_trips_and_compresses_text():
    texts = tuple(f"a review of product {i}: it works as described and arrived on time" for i in range(2000))
    assert unpack(pack(texts)) == texts
    assert len(pack(texts)) < len("".join(texts).encode()) / 3


@pytest.mark.parametrize("root", ["local", "memory://spill-test/out"])
def test_each_spilled_element_loads_its_own_value_from_one_file(tmp_path, root):
    output = str(tmp_path / "out") if root == "local" else root
    values = {bucket: _keys(bucket, 10 * bucket + 1) for bucket in (0, 3, 7)}
    path = spill_path(output, "keys-00002")
    refs = list(spill(path, values.items()))
    assert [bucket for bucket, _ in refs] == [0, 3, 7]
    assert {ref.path for _, ref in refs} == {path}
    assert path.endswith(f"{STAGING_DIR}/{SPILL_PREFIX}keys-00002.bin")  # flat: cleaned with the staging folder
    for bucket, ref in reversed(refs):  # any order: each reads its own range
        assert _same_keys(ref.load(), values[bucket])
    with fsspec.open(path, "rb") as f:
        assert len(f.read()) == sum(ref.size for _, ref in refs)


def test_nothing_to_spill_writes_no_file(tmp_path):
    path = spill_path(str(tmp_path), "bucket-00001")
    assert list(spill(path, [])) == []
    assert not (tmp_path / STAGING_DIR).exists()



def test_values_spill_only_where_a_range_read_is_cheap(tmp_path):
    assert spill_directory(str(tmp_path)) == str(tmp_path)
    assert spill_directory(f"file://{tmp_path}") == f"file://{tmp_path}"
    assert spill_directory("gs://bucket/out") is None and spill_directory("s3://bucket/out") is None
    keys = _keys(1, 4)
    ((bucket, held),) = stash(None, "keys-00001", [(5, keys)])
    assert bucket == 5 and held.load() is keys and not (tmp_path / STAGING_DIR).exists()


def test_one_value_waits_alone_on_a_local_disk_and_travels_packed_otherwise(tmp_path):
    keys = _keys(2, 50)
    spilled = stash_one(str(tmp_path), "part-00002-00000", keys)
    assert spilled.path.endswith(f"{STAGING_DIR}/{SPILL_PREFIX}part-00002-00000.bin") and spilled.offset == 0
    assert _same_keys(spilled.load(), keys)
    packed = stash_one(None, "part-00002-00000", keys)
    assert len(packed.data) < 50 * 40 and _same_keys(packed.load(), keys)
