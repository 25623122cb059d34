"""msle and mape (losskit.losses.relative_error): the clip and epsilon conventions, edges and
errors. Keras and scikit-learn's numbers: tests/catalog/test_conventions.py; torch/JAX
references, finite differences and backends: the catalog suites (tests/cases)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import losskit as lk


def test_msle_clip_zeroes_the_gradient_below_the_clip():
    y = np.array([-0.5, 1e-9, 2.0])
    t = np.array([1.0, 1.0, 1.0])
    c = 1e-7
    v, g = lk.msle.value_and_grad(y, t, clip=c, reduction="sum")
    yc = np.maximum(y, c)
    d = np.log1p(yc) - np.log1p(t)
    np.testing.assert_allclose(v, np.sum(d * d), rtol=1e-14)
    np.testing.assert_allclose(g, np.where(y < c, 0.0, 2 * d / (1 + yc)), rtol=1e-14)
    assert g[0] == 0.0 and g[1] == 0.0


def test_msle_gradient_by_central_differences():
    r = np.random.default_rng(0)
    y, t = r.uniform(-0.8, 5.0, size=12), r.uniform(0.0, 5.0, size=12)
    g = lk.msle.grad(y, t, reduction="sum")
    h = 1e-6
    fd = [(lk.msle(y + h * e, t, reduction="sum") - lk.msle(y - h * e, t, reduction="sum"))
          / (2 * h) for e in np.eye(12)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_msle_is_accurate_for_tiny_values():
    # log1p keeps log(1 + 1e-12) = 1e-12; log(1 + x) would round 1 + 1e-12 first
    y, t = np.array([2e-12]), np.array([1e-12])
    np.testing.assert_allclose(lk.msle(y, t), (1e-12) ** 2, rtol=1e-9)


@pytest.mark.parametrize("clip", [-1.0, -2.0, float("nan"), float("inf")])
def test_msle_bad_clip(clip):
    with pytest.raises(ValueError, match="`clip`"):
        lk.msle(np.ones(2), np.ones(2), clip=clip)


def test_msle_domain_without_clip():
    with pytest.raises(ValueError, match=r"^`target` must lie in \(-1, inf\]; it has values at "
                                         r"or below -1 \(min -1\): log\(1 \+ x\) needs x > -1; "
                                         r"pass clip=1e-7 for Keras's clip instead$"):
        lk.msle(np.ones(2), np.array([0.0, -1.0]))
    # with a clip, Keras's convention: anything is accepted
    assert np.isfinite(lk.msle(np.array([-5.0]), np.array([-3.0]), clip=1e-7))


def test_mape_zero_target_and_kink():
    y, t = np.array([1.0, 2.0, 0.0]), np.array([0.0, 2.0, 0.0])
    eps = np.finfo(np.float64).eps
    v, g = lk.mape.value_and_grad(y, t, reduction="none")
    np.testing.assert_array_equal(v, [1.0 / eps, 0.0, 0.0])
    np.testing.assert_array_equal(g, [1.0 / eps, 0.0, 0.0])  # subgradient 0 at y = t
    gp = lk.mape.grad(np.array([3.0, 1.0]), np.array([2.0, -4.0]), percent=True,
                      reduction="sum")
    np.testing.assert_allclose(gp, [100 / 2, 100 / 4])


def test_mape_options_are_checked():
    with pytest.raises(TypeError, match=r"^`percent` must be True or False; got 1$"):
        lk.mape(np.ones(2), np.ones(2), percent=1)
    for bad in (0.0, -1e-7, float("nan")):
        with pytest.raises(ValueError, match="`epsilon`"):
            lk.mape(np.ones(2), np.ones(2), epsilon=bad)


@settings(max_examples=50, deadline=None)
@given(t=st.floats(0.01, 1e6), scale=st.floats(0.5, 2.0))
def test_mape_is_relative(t, scale):
    """Scaling prediction and target together leaves MAPE unchanged."""
    y = np.array([0.7 * t, 1.3 * t])
    tt = np.array([t, t])
    np.testing.assert_allclose(lk.mape(y * scale, tt * scale), lk.mape(y, tt), rtol=1e-12)
    np.testing.assert_allclose(lk.mape(y, tt), 0.3, rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(t=st.floats(0.0, 1e6), f=st.floats(1.01, 10.0))
def test_msle_penalises_under_prediction_more(t, f):
    """A miss by the same amount costs more below the target than above (log is concave)."""
    d = (f - 1.0) * (t + 1.0) / 2
    if d >= t + 1.0:
        return
    under, over = lk.msle(np.array([t - d]), np.array([t])), lk.msle(np.array([t + d]),
                                                                       np.array([t]))
    assert under > over
