import numpy as np
import pytest
import tensorflow as tf

from encoders.pooling import POOLING_METHODS, l2_normalize, pool


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.int32)
    pooled = rng.normal(size=(2, 3)).astype(np.float32)
    return seq, mask, pooled


def test_mean_ignores_padding(batch):
    seq, mask, _ = batch
    out = pool("mean", seq, mask).numpy()
    np.testing.assert_allclose(out[0], seq[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[1], seq[1, :2].mean(axis=0), rtol=1e-6)


def test_max_ignores_padding_even_when_padding_is_larger(batch):
    seq, mask, _ = batch
    seq = seq.copy()
    seq[1, 2:] = 100.0
    np.testing.assert_allclose(pool("max", seq, mask).numpy()[1], seq[1, :2].max(axis=0))


def test_cls_takes_first_token(batch):
    seq, mask, _ = batch
    np.testing.assert_array_equal(pool("cls", seq, mask).numpy(), seq[:, 0])


def test_pooler_passes_the_models_pooled_output(batch):
    seq, mask, pooled = batch
    np.testing.assert_array_equal(pool("pooler", seq, mask, pooled).numpy(), pooled)


def test_pooler_without_pooled_output_is_an_error(batch):
    seq, mask, _ = batch
    with pytest.raises(ValueError, match="pooled output"):
        pool("pooler", seq, mask, None)


def test_unknown_method_names_the_choices(batch):
    seq, mask, _ = batch
    with pytest.raises(ValueError, match="mean, cls, pooler, max"):
        pool("sum", seq, mask)


@pytest.mark.parametrize("method", POOLING_METHODS)
def test_every_method_returns_float32_even_from_reduced_precision(batch, method):
    seq, mask, pooled = batch
    out = pool(method, tf.cast(seq, tf.bfloat16), mask, tf.cast(pooled, tf.bfloat16))
    assert out.shape == (2, 3) and out.dtype == tf.float32


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows_finite():
    out = l2_normalize(tf.constant([[3.0, 4.0], [0.0, 0.0]])).numpy()
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0.0, 0.0])
