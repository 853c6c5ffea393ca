"""The proximal math against NumPy references, with property tests."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tf_rpp import proximal

# TensorFlow's CPU kernels flush subnormal floats to zero (and set that mode
# for the process, which hypothesis notices), so the strategies draw normal
# floats and the NumPy reference flushes its results the same way.
finite = st.floats(-10, 10, allow_nan=False, allow_subnormal=False, width=32)
arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite)
thresholds = st.floats(0, 5, allow_nan=False, allow_subnormal=False, width=32)
TINY = np.finfo(np.float32).tiny


def flush(y):
    y = np.array(y, dtype=np.float32)
    y[np.abs(y) < TINY] = 0.0
    return y


def np_soft_threshold(x, t):
    return flush(np.sign(x) * np.maximum(np.abs(x) - t, 0))


@settings(max_examples=200, deadline=None)
@given(arrays, thresholds)
def test_soft_threshold_matches_numpy_bit_for_bit(x, t):
    got = np.asarray(proximal.soft_threshold(x, np.float32(t)))
    want = np_soft_threshold(x, np.float32(t)).astype(np.float32)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=200, deadline=None)
@given(arrays, thresholds)
def test_soft_threshold_properties(x, t):
    t = np.float32(t)
    y = np.asarray(proximal.soft_threshold(x, t))
    # Exactly zero where |x| <= t, and nowhere else (but for flushed subnormals).
    np.testing.assert_array_equal(y == 0, (np.abs(x) <= t) | (np.abs(np.abs(x) - t) < TINY))
    # Shrinks, never flips a sign.
    assert np.all(np.abs(y) <= np.abs(x))
    assert np.all(np.sign(y) * np.sign(x) >= 0)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, 8, elements=finite), hnp.arrays(np.float32, 8, elements=finite), thresholds)
def test_soft_threshold_is_non_expansive(a, b, t):
    ya = np.asarray(proximal.soft_threshold(a, np.float32(t)), np.float64)
    yb = np.asarray(proximal.soft_threshold(b, np.float32(t)), np.float64)
    assert np.all(np.abs(ya - yb) <= np.abs(a.astype(np.float64) - b) + 1e-5)


@settings(max_examples=100, deadline=None)
@given(arrays, st.floats(float(np.float32(1e-6)), 1.0, width=32, allow_subnormal=False))
def test_reweight_matches_numpy(x, eps):
    got = np.asarray(proximal.reweight(x, np.float32(eps)))
    np.testing.assert_allclose(got, 1.0 / (np.abs(x) + np.float32(eps)), rtol=1e-6)
    assert np.all(got <= 1.0 / np.float32(eps) * (1 + 1e-6))


@settings(max_examples=100, deadline=None)
@given(arrays, st.floats(float(np.float32(1e-4)), 1.0, width=32, allow_subnormal=False), st.floats(0, float(np.float32(1e-2)), width=32, allow_subnormal=False))
def test_reweighted_prox_is_soft_threshold_with_per_entry_thresholds(x, eps, step):
    gamma = 1.0 / (np.abs(x) + np.float32(eps))
    got = np.asarray(proximal.reweighted_l1_prox(x, gamma, np.float32(step)))
    want = np_soft_threshold(x, np.float32(step) * gamma)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_reweighting_prunes_small_weights_and_spares_large_ones():
    x = np.array([1e-3, -2e-3, 0.5, -0.8], np.float32)
    y = np.asarray(proximal.reweighted_l1_prox(x, proximal.reweight(x, 1e-3), 1e-5))
    np.testing.assert_array_equal(y[:2], [0.0, 0.0])
    # Large weights move by step / (|w| + eps): a relative change below 1e-4.
    np.testing.assert_allclose(y[2:], x[2:], rtol=1e-4)


@given(hnp.arrays(np.float32, 10, elements=finite), hnp.arrays(np.bool_, 10))
def test_apply_mask_and_sparsity(x, mask):
    y = np.asarray(proximal.apply_mask(x, mask))
    np.testing.assert_array_equal(y, np.where(mask, x, 0))
    assert float(proximal.sparsity(y)) == pytest.approx(np.mean(y == 0))
