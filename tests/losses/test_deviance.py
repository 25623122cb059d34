"""Tweedie and Gamma deviances on the log link (losskit.losses.deviance).

References: scikit-learn's ``HalfTweedieLoss``/``HalfGammaLoss`` (``sklearn._loss``, value
up to a term of the target alone, and gradient), XGBoost's ``reg:tweedie``/``reg:gamma``
gradients written out from ``src/objective/regression_obj.cu`` (TweedieRegression,
GammaRegression), and mpmath at 50 digits for the accuracy near the optimum. The catalog
suites (tests/catalog, cases in tests/cases/cases_regression.py) add the torch/JAX
references, finite differences and every backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import losskit as lk

POWERS = (0.0, 1.0, 1.2, 1.5, 1.9, 2.0, 2.5, 3.0)


def _inputs(seed, power, n=40):
    r = np.random.default_rng(seed)
    raw = r.normal(scale=0.8, size=n)
    t = r.gamma(2.0, 1.0, size=n)
    if power == 0:
        t = t - 1.5  # any real target
    elif power < 2:
        t[:5] = 0.0  # exact zeros
    else:
        t = t + 0.05
    return raw, t


@pytest.mark.parametrize("power", POWERS)
def test_value_and_gradient_equal_scikit_learn(power):
    from sklearn._loss.loss import HalfTweedieLoss

    raw, t = _inputs(1, power)
    ref = HalfTweedieLoss(power=power)
    v, g = lk.tweedie_deviance.value_and_grad(raw, t, power=power, reduction="none")
    # scikit-learn drops the terms of t alone; constant_to_optimal_zero puts them back
    np.testing.assert_allclose(v, ref.loss(t, raw) + ref.constant_to_optimal_zero(t),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g, ref.gradient(t, raw), rtol=1e-12, atol=1e-14)


def test_gamma_equals_scikit_learn_and_tweedie_power_2():
    from sklearn._loss.loss import HalfGammaLoss

    raw, t = _inputs(2, 2.0)
    ref = HalfGammaLoss()
    v, g = lk.gamma_deviance.value_and_grad(raw, t, reduction="none")
    np.testing.assert_allclose(v, ref.loss(t, raw) + ref.constant_to_optimal_zero(t),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g, ref.gradient(t, raw), rtol=1e-12, atol=1e-14)
    vt, gt = lk.tweedie_deviance.value_and_grad(raw, t, power=2, reduction="none")
    np.testing.assert_allclose(v, vt, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, gt, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("power", (1.0, 1.3, 1.5, 1.8))
def test_gradient_is_xgboosts_tweedie_objective(power):
    # XGBoost TweedieRegression::GetGradient: grad = -y exp((1 - rho) p) + exp((2 - rho) p)
    raw, t = _inputs(3, power)
    rho = power
    xgb = -t * np.exp((1 - rho) * raw) + np.exp((2 - rho) * raw)
    np.testing.assert_allclose(lk.tweedie_deviance.grad(raw, t, power=power, reduction="sum"),
                               xgb, rtol=1e-12, atol=1e-14)


def test_gradient_is_xgboosts_gamma_objective():
    # XGBoost GammaRegression::GetGradient: grad = 1 - y / exp(p)
    raw, t = _inputs(4, 2.0)
    np.testing.assert_allclose(lk.gamma_deviance.grad(raw, t, reduction="sum"),
                               1 - t / np.exp(raw), rtol=1e-12, atol=1e-14)


def _mp_half_deviance(raw, t, p):
    import mpmath as mp

    mp.mp.dps = 50
    mu, t = mp.exp(mp.mpf(raw)), mp.mpf(t)
    if p == 1:
        return float(t * mp.log(t / mu) - t + mu)
    if p == 2:
        return float(t / mu - mp.log(t / mu) - 1)
    p = mp.mpf(p)
    return float(t ** (2 - p) / ((1 - p) * (2 - p)) - t * mu ** (1 - p) / (1 - p)
                 + mu ** (2 - p) / (2 - p))


@pytest.mark.parametrize("power", (1.0, 1.5, 2.0, 3.0))
@pytest.mark.parametrize("offset", (1e-9, -3e-6, 0.01, 4.0))
def test_accurate_near_the_optimum(power, offset):
    """The value keeps its relative accuracy where mu is within 1e-9 of t, where the
    textbook formula cancels to noise. (Only the rounding of log t in float64, 1e-16
    absolute in x = log t - r, remains: relative 2e-16 / |x| in a value of order x^2.)"""
    t = 2.7
    raw = math.log(t) + offset
    v = float(lk.tweedie_deviance(np.array([raw]), np.array([t]), power=power))
    exact = _mp_half_deviance(raw, t, power)
    np.testing.assert_allclose(v, exact, rtol=max(1e-12, 4e-16 / abs(offset)))
    if power == 1.5 and abs(offset) < 1e-6:
        mu, p = math.exp(raw), power
        textbook = (t ** (2 - p) / ((1 - p) * (2 - p)) - t * mu ** (1 - p) / (1 - p)
                    + mu ** (2 - p) / (2 - p))
        assert abs(textbook - exact) > 100 * abs(v - exact)


def test_zero_targets_and_the_poisson_link():
    raw = np.array([-1.0, 0.0, 2.0])
    t = np.zeros(3)
    for p in (1.0, 1.4):
        b = 2 - p
        np.testing.assert_allclose(lk.tweedie_deviance(raw, t, power=p, reduction="none"),
                                   np.exp(b * raw) / b, rtol=1e-14)
        np.testing.assert_allclose(lk.tweedie_deviance.grad(raw, t, power=p, reduction="sum"),
                                   np.exp(b * raw), rtol=1e-14)
    # power 1 is Poisson: the same gradient as poisson_nll, the value shifted by t log t - t
    raw, t = _inputs(5, 1.0)
    shift = lk.tweedie_deviance(raw, t, power=1, reduction="none") - lk.poisson_nll(
        raw, t, reduction="none")
    np.testing.assert_allclose(shift, np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0) - t,
                               atol=1e-12)
    np.testing.assert_allclose(lk.tweedie_deviance.grad(raw, t, power=1),
                               lk.poisson_nll.grad(raw, t), rtol=1e-13)


@settings(max_examples=60, deadline=None)
@given(raw=st.floats(-20, 20), t=st.floats(1e-6, 1e6), power=st.sampled_from(POWERS[1:]))
def test_nonnegative_zero_at_the_mean_and_signed_gradient(raw, t, power):
    v, g = lk.tweedie_deviance.value_and_grad(np.array([raw]), np.array([t]), power=power)
    assert v >= 0
    # the gradient pushes the mean exp(r) towards t
    mu = math.exp(raw)
    if mu > t * (1 + 1e-9):
        assert g[0] > 0
    elif mu < t * (1 - 1e-9):
        assert g[0] < 0
    v0 = lk.tweedie_deviance(np.array([math.log(t)]), np.array([t]), power=power)
    assert abs(float(v0)) <= 1e-12 * max(1.0, t ** (2 - power))


def test_float32_fast_path_equals_float64():
    raw, t = _inputs(6, 1.5, n=5000)
    v32, g32 = lk.tweedie_deviance.value_and_grad(raw.astype(np.float32), t.astype(np.float32))
    v64, g64 = lk.tweedie_deviance.value_and_grad(raw, t)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("power, message", [
    (0.5, r"^`power` must be 0 or at least 1 .*got 0\.5: there is no Tweedie distribution "
          r"with 0 < power < 1$"),
    (-1.0, r"^`power` must be 0 or at least 1 .*got -1\.0$"),
    (float("nan"), r"`power`"),
    (float("inf"), r"`power`"),
])
def test_bad_power(power, message):
    with pytest.raises(ValueError, match=message):
        lk.tweedie_deviance(np.zeros(2), np.ones(2), power=power)


def test_bad_power_type():
    with pytest.raises(TypeError, match="`power`"):
        lk.tweedie_deviance(np.zeros(2), np.ones(2), power="1.5")


def test_targets_outside_the_domain():
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, inf\]; it has values "
                                         r"below 0 \(min -1\): Tweedie targets with "
                                         r"1 <= power < 2 are non-negative \(power=1\.5\)$"):
        lk.tweedie_deviance(np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"^`target` must lie in \(0, inf\]; it has values at "
                                         r"or below 0 \(min 0\): Tweedie targets with "
                                         r"power >= 2 are positive \(power=3\)$"):
        lk.tweedie_deviance(np.zeros(2), np.array([1.0, 0.0]), power=3)
    with pytest.raises(ValueError, match=r"^`target` must lie in \(0, inf\].*Gamma targets "
                                         r"are positive$"):
        lk.gamma_deviance(np.zeros(2), np.array([1.0, 0.0]))
    # power 0 (normal) takes any real target
    assert np.isfinite(lk.tweedie_deviance(np.zeros(2), np.array([-3.0, 2.0]), power=0))


def test_invalid_target_under_jit_is_nan():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda r, t: lk.gamma_deviance(r, t))
    assert np.isnan(float(f(jnp.zeros(2), jnp.array([1.0, 0.0]))))
    assert np.isfinite(float(f(jnp.zeros(2), jnp.array([1.0, 2.0]))))


def test_nan_propagates():
    v, g = lk.tweedie_deviance.value_and_grad(np.array([0.0, np.nan, 0.0]),
                                              np.array([np.nan, 1.0, 0.0]), reduction="none")
    assert np.isnan(v[:2]).all() and np.isnan(g[:2]).all() and np.isfinite(v[2])


def _mp_gradient(raw, t, p):
    import mpmath as mp

    mp.mp.dps = 50
    mu = mp.exp(mp.mpf(raw))
    return float(mu ** (2 - mp.mpf(p)) - mp.mpf(t) * mu ** (1 - mp.mpf(p)))


@pytest.mark.parametrize("power", (1.0, 1.5, 2.0, 3.0))
def test_far_from_the_optimum_finite_or_infinite_never_nan(power):
    """Scores of +-50 and +-800 and targets from 1e-300 to 1e300 (float64): the value and
    gradient match mpmath to 1e-12, or are the infinity mpmath's number overflows to."""
    worst = 0.0
    for raw in (-800.0, -50.0, -3.0, 0.7, 4.0, 50.0, 700.0, 800.0):
        for t in (1e-300, 1e-10, 0.3, 2.7, 1e10, 1e300):
            v, g = lk.tweedie_deviance.value_and_grad(np.array([raw]), np.array([t]),
                                                      power=power, reduction="none")
            for got, exact in ((v[0], _mp_half_deviance(raw, t, power)),
                               (g[0], _mp_gradient(raw, t, power))):
                assert not np.isnan(got), (raw, t)
                if np.isinf(exact):
                    assert got == exact, (raw, t, got)
                elif abs(exact) > 1e-290:
                    worst = max(worst, abs(got - exact) / abs(exact))
    assert worst < 1e-12


@pytest.mark.parametrize("power, value_at_minus_inf", [(1.0, math.inf), (1.5, math.inf),
                                                        (2.0, math.inf), (3.0, math.inf)])
def test_infinite_scores(power, value_at_minus_inf):
    """r = -inf, +inf (mu = 0, inf) with t = 2: the limits of the formulas, no NaN."""
    v, g = lk.tweedie_deviance.value_and_grad(np.array([-math.inf, math.inf]),
                                              np.array([2.0, 2.0]), power=power,
                                              reduction="none")
    assert v[0] == value_at_minus_inf
    # mu -> inf: mu^{2-p}/(2-p) grows without bound for p < 2 (and log mu at p = 2);
    # for p > 2 the value tends to t^{2-p}/((1-p)(2-p)), 1/(2t) at p = 3
    assert v[1] == (0.25 if power == 3 else math.inf)
    assert g[0] == (-2.0 if power == 1 else -math.inf)  # mu - t at p = 1
    assert g[1] == {1.0: math.inf, 1.5: math.inf, 2.0: 1.0, 3.0: 0.0}[power]
