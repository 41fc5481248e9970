"""The nightly scale corpus: the same bytes every time, and a night 2 that differs as asked."""

import json

from bench.scale_corpus import NightPlan, night_records, write_night


def test_a_night_is_the_same_every_time_and_shards_do_not_depend_on_each_other(tmp_path):
    plan = NightPlan(records=300, shards=3)
    first = write_night(plan, tmp_path / "a", 1)
    again = write_night(plan, tmp_path / "b", 1)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert list(night_records(plan, 2, 1)) == [tuple(json.loads(line).values())
                                               for line in first[2].read_text().splitlines()]


def test_night_two_keeps_every_id_changes_about_the_share_asked_and_adds_new_ids():
    plan = NightPlan(records=20_000, shards=4, changed=0.05, new=0.01)
    one = dict(r for shard in range(4) for r in night_records(plan, shard, 1))
    two = dict(r for shard in range(4) for r in night_records(plan, shard, 2))
    assert len(one) == 20_000 and set(one) <= set(two) and len(two) == 20_200
    changed = sum(one[i] != two[i] for i in one)
    assert 800 < changed < 1200


def test_texts_have_a_skewed_length_mix_around_the_median():
    plan = NightPlan(records=5_000, shards=1)
    lengths = sorted(len(text.split()) for _, text in night_records(plan, 0, 1))
    assert 10 <= lengths[len(lengths) // 2] <= 14
    assert lengths[-1] > 3 * lengths[len(lengths) // 2] and lengths[0] < lengths[len(lengths) // 2] / 2
