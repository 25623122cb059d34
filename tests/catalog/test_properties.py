"""Property-based tests (hypothesis): invariants every correct implementation satisfies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import losskit as lk

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-30, 30, allow_nan=False, allow_subnormal=False)


@st.composite
def logits_and_labels(draw, max_n=6, max_k=6):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, max_k))
    z = draw(arrays(np.float64, (n, k), elements=finite))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return z, y


@st.composite
def distribution_pair(draw, max_k=6):
    k = draw(st.integers(2, max_k))
    w = st.floats(0.01, 10.0)
    p = draw(arrays(np.float64, (k,), elements=w))
    q = draw(arrays(np.float64, (k,), elements=w))
    return p / p.sum(), q / q.sum()


@SETTINGS
@given(logits_and_labels(), st.floats(-50, 50))
def test_softmax_ce_is_invariant_to_shifting_the_logits(zy, c):
    z, y = zy
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y)
    v2, g2 = lk.softmax_cross_entropy.value_and_grad(z + c, y)
    np.testing.assert_allclose(v2, v, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g2, g, rtol=1e-7, atol=1e-9)


@SETTINGS
@given(logits_and_labels(), st.floats(0.0, 1.0))
def test_softmax_ce_is_non_negative_and_its_grad_rows_sum_to_zero(zy, smoothing):
    z, y = zy
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, reduction="none",
                                                   label_smoothing=smoothing)
    assert np.all(v >= -1e-12)
    np.testing.assert_allclose(g.sum(axis=-1), 0.0, atol=1e-12)
    assert np.all(np.isfinite(g))


@SETTINGS
@given(logits_and_labels())
def test_softmax_ce_is_equivariant_to_permuting_the_batch(zy):
    z, y = zy
    perm = np.random.default_rng(len(y)).permutation(len(y))
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, reduction="none")
    vp, gp = lk.softmax_cross_entropy.value_and_grad(z[perm], y[perm], reduction="none")
    np.testing.assert_array_equal(vp, v[perm])
    np.testing.assert_array_equal(gp, g[perm])


@SETTINGS
@given(logits_and_labels())
def test_integer_labels_equal_one_hot_targets(zy):
    z, y = zy
    onehot = np.eye(z.shape[1])[y]
    for loss, pred in ((lk.softmax_cross_entropy, z),
                       (lk.cross_entropy, lk.softmax(z) * 0.98 + 0.01)):
        v, g = loss.value_and_grad(pred, y)
        v2, g2 = loss.value_and_grad(pred, onehot)
        np.testing.assert_allclose(v2, v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g2, g, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(logits_and_labels())
def test_softmax_ce_equals_nll_of_log_softmax_and_ce_of_softmax(zy):
    z, y = zy
    a = lk.softmax_cross_entropy(z, y, reduction="none")
    b = lk.nll_loss(lk.log_softmax(z), y, reduction="none")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(distribution_pair(), st.sampled_from([2.0, math.e, 10.0]))
def test_cross_entropy_is_entropy_plus_kl_in_any_base(pq, base):
    """CE(q; p) computed by the loss (nats) = H(p) + KL(p||q), converted to `base`."""
    info = pytest.importorskip("losskit.info")
    p, q = pq
    ce_nats = float(lk.cross_entropy(q, p, reduction="sum"))
    h = float(info.entropy(p, base=base))
    kl = float(info.kl_divergence(p, q, base=base))
    np.testing.assert_allclose(ce_nats / math.log(base), h + kl, rtol=1e-9, atol=1e-12)
    assert kl >= -1e-12


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=finite),
       arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=finite))
def test_regression_losses_non_negative_and_zero_at_the_target(y, t):
    t = np.resize(t, y.shape)
    for loss in (lk.mse, lk.l2_loss, lk.mae):
        assert np.all(loss(y, t, reduction="none") >= 0)
        assert float(loss(y, y)) == 0.0
        assert not np.any(loss.grad(y, y))
    # the three conventions of the sources are one loss at different scales
    np.testing.assert_allclose(lk.mse(y, t, reduction="sum"), 2 * lk.l2_loss(y, t, reduction="sum"))


@SETTINGS
@given(arrays(np.float64, st.integers(1, 12), elements=finite),
       arrays(np.float64, st.integers(1, 12), elements=st.floats(0, 1)))
def test_sigmoid_bce_gradient_is_sigmoid_minus_target(z, t):
    t = np.resize(t, z.shape)
    g = lk.sigmoid_binary_cross_entropy.grad(z, t, reduction="sum")
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-z)) - t, rtol=1e-9, atol=1e-12)
    assert np.all(lk.sigmoid_binary_cross_entropy(z, t, reduction="none") >= 0)


@SETTINGS
@given(logits_and_labels(), st.floats(0.1, 10.0))
def test_uniform_class_weight_does_not_change_the_mean(zy, c):
    z, y = zy
    k = z.shape[1]
    for loss, pred in ((lk.softmax_cross_entropy, z), (lk.multiclass_hinge, z)):
        np.testing.assert_allclose(loss(pred, y, class_weight=np.full(k, c)), loss(pred, y),
                                   rtol=1e-10, atol=1e-12)


@SETTINGS
@given(logits_and_labels())
def test_class_weight_equals_sample_weight_of_the_label(zy):
    z, y = zy
    k = z.shape[1]
    w = np.linspace(0.5, 2.0, k)
    for loss in (lk.softmax_cross_entropy, lk.multiclass_hinge, lk.nll_loss):
        pred = lk.log_softmax(z) if loss is lk.nll_loss else z
        for red in ("sum", "mean", "none"):
            a = loss.value_and_grad(pred, y, class_weight=w, reduction=red)
            b = loss.value_and_grad(pred, y, sample_weight=w[y], reduction=red)
            np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)


@SETTINGS
@given(logits_and_labels(max_n=8))
def test_ignored_targets_equal_dropping_them(zy):
    z, y = zy
    y_ign = y.copy()
    y_ign[::2] = -100
    keep = y_ign != -100
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y_ign, ignore_index=-100)
    if keep.any():
        v2, g2 = lk.softmax_cross_entropy.value_and_grad(z[keep], y[keep])
        np.testing.assert_allclose(v, v2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g[keep] * keep.sum(), g2 * keep.sum(), rtol=1e-10, atol=1e-12)
    assert not np.any(g[~keep])


@SETTINGS
@given(arrays(np.float64, st.integers(1, 10), elements=finite), st.floats(0.1, 3.0))
def test_hinge_non_negative_zero_beyond_the_margin(s, margin):
    t = np.where(np.arange(s.size) % 2 == 0, 1.0, -1.0)
    v = lk.hinge(s, t, margin=margin, reduction="none")
    assert np.all(v >= 0)
    np.testing.assert_array_equal(v == 0, t * s >= margin)
