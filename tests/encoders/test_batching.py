import numpy as np
import pytest

from encoders.batching import BUCKET_LENGTHS, batch_rows, bucket_length, grid_length, pad_batch, plan_batches


def test_bucket_length_rounds_up_and_caps_at_max_seq_length():
    assert bucket_length(9, 512) == 16
    assert bucket_length(16, 512) == 16
    assert bucket_length(300, 256) == 256
    assert bucket_length(600, 1000) == 1000


def test_every_text_is_planned_exactly_once():
    lengths = [5, 120, 33, 7, 64, 250, 2, 19] * 10
    plans = plan_batches(lengths, 256, max_batch_size=8, max_tokens_per_batch=1024)
    planned = sorted(i for p in plans for i in p.indices)
    assert planned == list(range(len(lengths)))


@pytest.mark.parametrize("bucketed", [False, True])
def test_batches_respect_token_budget_and_size_cap(bucketed):
    lengths = [5, 120, 33, 7, 64, 250, 2, 19] * 10
    for plan in plan_batches(lengths, 256, max_batch_size=8, max_tokens_per_batch=1024, bucketed=bucketed):
        longest = max(lengths[i] for i in plan.indices)
        assert len(plan.indices) <= 8
        assert longest <= plan.padded_length
        assert len(plan.indices) == 1 or len(plan.indices) * plan.padded_length <= 1024
        if bucketed:
            assert plan.padded_length in BUCKET_LENGTHS
        else:
            assert plan.padded_length == grid_length(longest, 256)


def test_a_full_batch_has_exactly_batch_rows_rows():
    lengths = [30] * 100
    plans = plan_batches(lengths, 256, max_batch_size=64, max_tokens_per_batch=1024, bucketed=True)
    assert len(plans[0].indices) == batch_rows(plans[0].padded_length, 64, 1024) == 1024 // 32


def test_longest_batch_comes_first():
    plans = plan_batches([3, 200, 40, 9], 256, max_batch_size=1, max_tokens_per_batch=10_000)
    assert [p.indices[0] for p in plans] == [1, 2, 3, 0]


def test_a_text_longer_than_the_budget_still_gets_a_batch():
    plans = plan_batches([256], 256, max_batch_size=4, max_tokens_per_batch=100)
    assert [p.indices for p in plans] == [(0,)]


def test_pad_batch_right_pads_ids_and_marks_real_tokens():
    ids, mask = pad_batch([[2, 7, 3], [2, 3]], 4, pad_id=0, rows=3)
    np.testing.assert_array_equal(ids, [[2, 7, 3, 0], [2, 3, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert ids.dtype == np.int32 and mask.dtype == np.int32


def test_much_shorter_texts_do_not_join_a_long_batch():
    plans = plan_batches([200, 190, 40, 38, 36], 256, max_batch_size=64, max_tokens_per_batch=100_000)
    assert [sorted(p.indices) for p in plans] == [[0, 1], [2, 3], [4]]
    assert [p.padded_length for p in plans] == [208, 40, 36]


def test_grid_length_pads_at_most_an_eighth_and_keeps_few_lengths():
    padded = [grid_length(n, 512) for n in range(1, 513)]
    assert padded[:31] == list(range(1, 32))
    assert all(n <= g <= n + n / 8 for n, g in enumerate(padded, start=1))
    assert padded == sorted(padded) and len(set(padded)) == 31 + 8 * 4 + 1  # 1..31, 8 per doubling to 512, 512
    assert grid_length(125, 128) == 128 and grid_length(130, 128) == 128


def test_a_batch_short_of_its_full_rows_runs_as_power_of_two_pieces_longest_first():
    lengths = [40] * 5 + [35] * 32
    plans = plan_batches(lengths, 128, max_batch_size=64, max_tokens_per_batch=8192)
    assert [len(p.indices) for p in plans] == [32, 4, 1]
    assert [p.padded_length for p in plans] == [40, 36, 36]
    assert [i for p in plans for i in p.indices] == list(range(37))


def test_batch_shapes_come_from_a_small_set_however_many_groups():
    rng = np.random.default_rng(0)
    shapes = set()
    for _ in range(200):  # 200 groups of a long-tailed length mix
        lengths = np.minimum(rng.lognormal(2.6, 0.7, 1024).astype(int) + 2, 128).tolist()
        plans = plan_batches(lengths, 128, max_batch_size=64, max_tokens_per_batch=8192)
        assert sorted(i for p in plans for i in p.indices) == list(range(1024))
        shapes |= {(len(p.indices), p.padded_length) for p in plans}
    grid = {grid_length(n, 128) for n in range(1, 129)}
    full = {length: batch_rows(length, 64, 8192) for length in grid}
    for rows, length in shapes:
        assert length in grid
        assert rows == full[length] or rows & (rows - 1) == 0
    assert len(shapes) <= len(grid) * 7  # a full batch or 1, 2, ..., 32 rows, for each grid length
