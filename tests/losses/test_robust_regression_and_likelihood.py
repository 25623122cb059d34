"""Robust and likelihood regression losses: huber, smooth_l1, log_cosh, quantile (pinball),
poisson_nll, gaussian_nll.

The generic suites (``test_losses.py``, ``test_backends.py``) run the Cases of
``cases_regression.py`` against torch / optax. Here: the edges of each loss (huge
residuals, kinks, clamps, zero rates and variances, NaN), every error message, the
sample-weight conventions against PyTorch's ``weight=`` and the weighted formula,
half precision, and hypothesis properties. Expected numbers come from the definitions
written out here, mpmath, scipy, scikit-learn or PyTorch, never from losskit.
"""

from __future__ import annotations

import math
import re

import mpmath
import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import losskit as lk
from losskit.losses.likelihood import gaussian_nll, poisson_nll
from losskit.losses.robust_regression import huber, log_cosh, pinball, quantile, smooth_l1

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=50, deadline=None)
INF, NAN = math.inf, math.nan
LN2 = math.log(2.0)
ROBUST = {"huber": huber, "smooth_l1": smooth_l1, "log_cosh": log_cosh, "quantile": quantile}
LIKELIHOOD = {"poisson_nll": poisson_nll, "gaussian_nll": gaussian_nll}
ALL = {**ROBUST, **LIKELIHOOD}


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _t(a, grad=False, dtype=torch.float64):
    return torch.tensor(np.asarray(a, dtype=float), dtype=dtype, requires_grad=grad)


def _torch_value_grad(fn, y, *others):
    """Value and autograd gradient (wrt the first argument) of a torch expression."""
    yt = _t(y, grad=True)
    v = fn(yt, *[_t(o) for o in others])
    v.sum().backward()
    return v.detach().numpy(), yt.grad.numpy()


# ============================================================== metadata
def test_metadata_and_catalog():
    names = {loss.name for loss in lk.catalog(family="regression")}
    assert set(ALL) <= names
    for name, loss in ALL.items():
        assert loss.name == name and loss.family == "regression"
        assert loss.formula and loss.gradient_formula and loss.prediction and loss.target
        assert len(loss.when_to_use) > 80
        doc = type(loss).__doc__
        assert "{common_parameters}" not in doc and "sample_weight" in doc
        assert doc.count(".. math::") >= 1 and "\\partial" in doc  # value and gradient
        assert "doi:" in doc or "arXiv:" in doc
    assert quantile.aliases == ("pinball",) and pinball is quantile
    assert gaussian_nll.inputs == ("prediction", "target", "var")
    assert gaussian_nll.differentiable == ("prediction", "var")
    # the keyword options are the contract
    assert huber.option_defaults() == {"delta": 1.0}
    assert smooth_l1.option_defaults() == {"beta": 1.0}
    assert log_cosh.option_defaults() == {}
    assert quantile.option_defaults() == {"q": 0.5}
    assert poisson_nll.option_defaults() == {"log_input": True, "full": False, "eps": 1e-8}
    assert gaussian_nll.option_defaults() == {"full": False, "eps": 1e-6}


# ============================================================== huber / smooth_l1
D_GRID = np.array([-1e3, -3.0, -1.0, -0.5, -1e-9, 0.0, 1e-9, 0.5, 1.0, 3.0, 1e3])


@pytest.mark.parametrize("delta", [0.25, 1.0, 2.0])
def test_huber_is_the_piecewise_definition_with_exact_gradient(delta):
    y, t = D_GRID + 0.5, np.full_like(D_GRID, 0.5)
    d = y - t  # exact: every residual and 0.5 are representable
    expected = np.where(np.abs(d) <= delta, 0.5 * d ** 2, delta * (np.abs(d) - 0.5 * delta))
    v, g = huber.value_and_grad(y, t, delta=delta, reduction="none")
    np.testing.assert_allclose(v, expected, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(g, np.clip(d, -delta, delta))


def test_huber_gradient_at_the_kink_is_exactly_delta():
    # |d| = delta: the derivative is continuous there, both sides give +-delta
    g = huber.grad(np.array([2.0, -2.0, 0.0]), np.zeros(3), delta=2.0, reduction="sum")
    np.testing.assert_array_equal(g, [2.0, -2.0, 0.0])
    res = lk.gradcheck(huber, np.array([2.0, -2.0, 0.5]), np.zeros(3), reduction="sum",
                    delta=2.0)
    assert res.ok and res.kinks == 0  # C^1: no kink in the first derivative


@pytest.mark.parametrize("big", [1e200, 1e300, INF])
def test_huber_and_smooth_l1_do_not_overflow_on_huge_residuals(big):
    y = np.array([big, -big])
    v, g = huber.value_and_grad(y, np.zeros(2), delta=1.5, reduction="none")
    # delta (|d| - delta/2) = 1.5 * big to double precision (big >> 1)
    np.testing.assert_array_equal(v, [1.5 * big, 1.5 * big])
    np.testing.assert_array_equal(g, [1.5, -1.5])
    v, g = smooth_l1.value_and_grad(y, np.zeros(2), beta=0.5, reduction="none")
    np.testing.assert_array_equal(v, [big, big])  # |d| - beta/2
    np.testing.assert_array_equal(g, [1.0, -1.0])


def test_huber_matches_torch_at_huge_residuals():
    y = np.array([1e200, -3e150, 2.0])
    ref_v, ref_g = _torch_value_grad(
        lambda a, b: F.huber_loss(a, b, delta=0.7, reduction="none"), y, np.zeros(3))
    v, g = huber.value_and_grad(y, np.zeros(3), delta=0.7, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-15)
    np.testing.assert_allclose(g, ref_g, rtol=1e-15)


def test_huber_float32_huge_residual_where_the_square_would_overflow():
    # 0.5 * (1e30)^2 = 5e59 overflows float32 (max 3.4e38); the linear branch never squares
    y = np.array([1e30, -1e30], dtype=np.float32)
    v, g = huber.value_and_grad(y, np.zeros(2, dtype=np.float32), reduction="none")
    assert v.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(v, [1e30, 1e30], rtol=1e-6)
    np.testing.assert_array_equal(g, [1.0, -1.0])


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_smooth_l1_is_the_piecewise_definition(beta):
    y, t = D_GRID + 0.5, np.full_like(D_GRID, 0.5)
    d = y - t
    expected = np.where(np.abs(d) < beta, 0.5 * d ** 2 / beta, np.abs(d) - 0.5 * beta)
    v, g = smooth_l1.value_and_grad(y, t, beta=beta, reduction="none")
    np.testing.assert_allclose(v, expected, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(g, np.clip(d / beta, -1, 1), rtol=1e-15, atol=0)


def test_smooth_l1_beta_zero_is_the_absolute_error_without_0_over_0():
    y, t = np.array([-2.0, 0.0, 3.0, 1e-300]), np.zeros(4)
    v, g = smooth_l1.value_and_grad(y, t, beta=0.0, reduction="none")
    np.testing.assert_array_equal(v, [2.0, 0.0, 3.0, 1e-300])
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0, 1.0])  # subgradient 0 at d = 0
    ref = F.smooth_l1_loss(_t(y), _t(t), beta=0.0, reduction="none").numpy()
    np.testing.assert_array_equal(v, ref)


def test_smooth_l1_tiny_beta_keeps_the_quadratic_branch_accurate():
    # beta = 1e-300, d = 5e-301: d^2 / (2 beta) = 1.25e-301 (d^2 alone underflows)
    v = smooth_l1(np.array([5e-301]), np.array([0.0]), beta=1e-300, reduction="none")
    np.testing.assert_allclose(v, [1.25e-301], rtol=1e-12)


# ============================================================== log_cosh
def _mp_log_cosh(d):
    # cosh(d) - 1 ~ d^2 / 2 must survive the rounding of cosh: 50 digits beyond d^2
    with mpmath.workdps(50 + 2 * max(0, int(-math.log10(abs(d))))):
        return float(mpmath.log(mpmath.cosh(mpmath.mpf(d))))


def _mp_tanh(d):
    with mpmath.workdps(50):
        return float(mpmath.tanh(mpmath.mpf(d)))


LOG_COSH_POINTS = [1e-150, 1e-8, 1e-5, 1e-3, 0.3, 0.999, 1.0, 1.001, 2.5, 20.0, 300.0, 710.0,
                   800.0, 1e5]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_log_cosh_is_accurate_to_machine_precision_everywhere(sign):
    d = sign * np.array(LOG_COSH_POINTS)
    v, g = log_cosh.value_and_grad(d, np.zeros_like(d), reduction="none")
    # relative accuracy near 0 too, where log(e^d + e^-d) - log 2 cancels
    np.testing.assert_allclose(v, [_mp_log_cosh(x) for x in d], rtol=4e-16 * 8, atol=0)
    np.testing.assert_allclose(g, [_mp_tanh(x) for x in d], rtol=4e-16 * 4, atol=0)


@pytest.mark.parametrize("big", [1e200, 1e300, INF])
def test_log_cosh_huge_residuals_do_not_overflow(big):
    v, g = log_cosh.value_and_grad(np.array([big, -big]), np.zeros(2), reduction="none")
    np.testing.assert_array_equal(v, [big, big])  # |d| - log 2 == |d| in float64
    np.testing.assert_array_equal(g, [1.0, -1.0])


def test_log_cosh_float32_past_the_overflow_of_cosh():
    # cosh overflows float32 past ~89.4; log cosh(100) = 100 - log 2 (+ e^-200)
    d = np.array([100.0, -1e38, 0.5], dtype=np.float32)
    v, g = log_cosh.value_and_grad(d, np.zeros(3, dtype=np.float32), reduction="none")
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, [100 - LN2, 1e38, _mp_log_cosh(0.5)], rtol=1e-6)
    np.testing.assert_allclose(g, [1.0, -1.0, math.tanh(0.5)], rtol=1e-6)


# ============================================================== quantile (pinball)
def test_quantile_sign_convention_under_prediction_costs_q():
    # target 1, prediction 0: too low by 1 -> q; prediction 2: too high by 1 -> 1 - q
    v = quantile(np.array([0.0, 2.0]), np.array([1.0, 1.0]), q=0.8, reduction="none")
    np.testing.assert_allclose(v, [0.8, 0.2], rtol=1e-15)


def test_quantile_gradient_and_subgradient_zero_at_the_kink():
    y, t = np.array([0.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])
    g = quantile.grad(y, t, q=0.8, reduction="sum")
    np.testing.assert_allclose(g, [-0.8, 0.2, 0.0], rtol=1e-15)
    res = lk.gradcheck(quantile, y, t, reduction="sum", q=0.8)
    assert res.ok and res.kinks == 1  # 0 lies between the one-sided slopes -0.8 and 0.2


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 0.9])
def test_quantile_mean_equals_sklearn_mean_pinball_loss(q):
    from sklearn.metrics import mean_pinball_loss

    rng = np.random.default_rng(0)
    y, t = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    np.testing.assert_allclose(quantile(y, t, q=q), mean_pinball_loss(t, y, alpha=q),
                               rtol=1e-13)
    w = rng.uniform(0, 2, size=20)
    np.testing.assert_allclose(quantile(y, t, q=q, sample_weight=w),
                               mean_pinball_loss(t, y, alpha=q, sample_weight=w), rtol=1e-13)


def test_quantile_half_is_half_the_absolute_error():
    y, t = np.array([-1.5, 0.0, 2.0]), np.array([0.5, 0.0, -1.0])
    v, g = quantile.value_and_grad(y, t, q=0.5, reduction="none")
    np.testing.assert_array_equal(v, 0.5 * np.abs(y - t))
    np.testing.assert_array_equal(g, 0.5 * np.sign(y - t))


def test_quantile_mean_subgradient_vanishes_at_the_empirical_quantile():
    # targets 1..10, q = 0.3: for a shared prediction c the summed slope is
    # -0.3 #(t > c) + 0.7 #(t < c): -1 at c = 2.5, 0 at c = 3.5, +1 at c = 4.5
    t = np.arange(1.0, 11.0)
    for c, slope in [(2.5, -1.0), (3.5, 0.0), (4.5, 1.0)]:
        g = quantile.grad(np.full(10, c), t, q=0.3, reduction="sum")
        assert abs(float(g.sum()) - slope) < 1e-12


# ============================================================== poisson_nll
def test_poisson_rate_zero_costs_minus_t_log_eps_like_torch():
    x, t = np.zeros(3), np.array([0.0, 1.0, 3.0])
    v, g = poisson_nll.value_and_grad(x, t, log_input=False, reduction="none")
    eps = 1e-8
    np.testing.assert_allclose(v, [0.0, -math.log(eps), -3 * math.log(eps)], rtol=1e-15)
    np.testing.assert_allclose(g, [1.0, 1 - 1 / eps, 1 - 3 / eps], rtol=1e-15)
    ref_v, ref_g = _torch_value_grad(
        lambda a, b: F.poisson_nll_loss(a, b, log_input=False, reduction="none"), x, t)
    np.testing.assert_allclose(v, ref_v, rtol=1e-15)
    np.testing.assert_allclose(g, ref_g, rtol=1e-15)


def test_poisson_rate_zero_with_eps_zero():
    # zero count at rate 0 is certain (cost 0, slope 1); a positive count is impossible
    v, g = poisson_nll.value_and_grad(np.zeros(2), np.array([0.0, 2.0]), log_input=False,
                                      eps=0.0, reduction="none")
    np.testing.assert_array_equal(v, [0.0, INF])
    np.testing.assert_array_equal(g, [1.0, -INF])


def test_poisson_log_rate_minus_inf():
    # x = log 0: e^x - t x is 0 for t = 0 (0 * -inf taken as 0), +inf for t > 0
    v, g = poisson_nll.value_and_grad(np.array([-INF, -INF]), np.array([0.0, 2.0]),
                                      reduction="none")
    np.testing.assert_array_equal(v, [0.0, INF])
    np.testing.assert_array_equal(g, [0.0, -2.0])  # e^x - t


@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_stirling_term_only_for_counts_above_one(log_input):
    t = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 100.0])
    x = np.full_like(t, 0.7)
    plain = poisson_nll(x, t, log_input=log_input, reduction="none")
    fuller, g_full = poisson_nll.value_and_grad(x, t, log_input=log_input, full=True,
                                                reduction="none")
    stirling = np.where(t > 1, t * np.log(np.where(t > 1, t, 1)) - t
                        + 0.5 * np.log(2 * np.pi * np.where(t > 1, t, 1)), 0.0)
    np.testing.assert_allclose(fuller - plain, stirling, rtol=1e-13, atol=1e-15)
    # the term does not depend on x
    np.testing.assert_array_equal(g_full, poisson_nll.grad(x, t, log_input=log_input,
                                                           reduction="none"))
    # and it is Stirling's approximation of log t! (error below 1/(12 t))
    big = t > 1
    assert np.all(np.abs(stirling[big] - sc.gammaln(t[big] + 1)) < 1 / (12 * t[big]))


def test_poisson_gradient_vanishes_at_the_maximum_likelihood_rate():
    t = np.array([0.5, 1.0, 4.0, 30.0])
    np.testing.assert_allclose(poisson_nll.grad(np.log(t), t, reduction="sum"), 0, atol=1e-14)
    np.testing.assert_allclose(poisson_nll.grad(t, t, log_input=False, eps=0.0,
                                                reduction="sum"), 0, atol=1e-14)


def test_poisson_integer_counts_are_accepted():
    x = np.array([0.1, -0.3])
    np.testing.assert_array_equal(poisson_nll(x, np.array([2, 0])),
                                  poisson_nll(x, np.array([2.0, 0.0])))


# ============================================================== gaussian_nll
def test_gaussian_zero_variance_is_clamped_to_eps_and_var_gradient_is_flat_there():
    mu, t = np.array([0.0, 0.0, 0.0]), np.array([2e-3, 2e-3, 2e-3])
    var = np.array([0.0, 1e-7, 1e-6])  # below, below, at eps = 1e-6
    v, (g_mu, g_var) = gaussian_nll.value_and_grad(mu, t, var, wrt="all", reduction="none")
    eps, d = 1e-6, -2e-3
    np.testing.assert_allclose(v, 0.5 * (np.log(eps) + d * d / eps), rtol=1e-14)
    np.testing.assert_allclose(g_mu, d / eps, rtol=1e-14)
    # exact derivative of max(v, eps): 0 below the clamp, one-sided from above at eps
    np.testing.assert_array_equal(g_var[:2], [0.0, 0.0])
    np.testing.assert_allclose(g_var[2], 0.5 * (1 / eps - d * d / eps ** 2), rtol=1e-12)
    assert g_var[2] == pytest.approx(-1.5e6)  # 0.5 (1e6 - 4e-6 / 1e-12)
    # values (not the var gradient: torch's clamp is straight-through) agree with torch
    ref = F.gaussian_nll_loss(_t(mu), _t(t), _t(var), reduction="none").numpy()
    np.testing.assert_allclose(v, ref, rtol=1e-14)


def test_gaussian_negative_variance_is_a_value_error_as_in_torch():
    mu, t, var = np.zeros(3), np.zeros(3), np.array([1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(_t(mu), _t(t), _t(var))
    for fn in (gaussian_nll, gaussian_nll.grad, gaussian_nll.value_and_grad):
        with pytest.raises(ValueError, match=r"^`var` must lie in \[0, inf\]; it has values "
                           r"below 0 \(min -0\.5\): variances must be non-negative \(0 is "
                           r"clamped to eps\)$"):
            fn(mu, t, var)


@pytest.mark.parametrize("shape,var_shape", [
    ((5, 3), (5, 3)), ((5, 3), (5,)), ((5, 3), (5, 1)), ((5, 3), (1, 3)),
    ((2, 3, 4, 4), (2, 1, 4, 4)), ((2, 3, 4), (2, 3)), ((4,), ()), ((4,), (1,)),
])
def test_gaussian_var_broadcasts_exactly_as_torch(shape, var_shape):
    rng = np.random.default_rng(1)
    mu, t = rng.normal(size=shape), rng.normal(size=shape)
    var = 0.2 + rng.random(size=var_shape)
    for red in ("none", "sum", "mean"):
        mt, vt = _t(mu, grad=True), _t(var, grad=True)
        ref = F.gaussian_nll_loss(mt, _t(t), vt, full=True, reduction=red)
        ref.sum().backward()
        v, (g_mu, g_var) = gaussian_nll.value_and_grad(mu, t, var, full=True, reduction=red,
                                                       wrt="all")
        np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(g_mu, mt.grad.numpy(), rtol=1e-13, atol=1e-15)
        assert g_var.shape == var_shape
        np.testing.assert_allclose(g_var, vt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_gaussian_python_float_variance():
    rng = np.random.default_rng(2)
    mu, t = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    # torch: a float var is var * ones_like(input); its gradient is the summed one
    vt = _t(0.7, grad=True)
    ref = F.gaussian_nll_loss(_t(mu), _t(t), vt * torch.ones(4, 2, dtype=torch.float64))
    ref.backward()
    np.testing.assert_allclose(ref.item(), F.gaussian_nll_loss(_t(mu), _t(t), 0.7).item(),
                               rtol=1e-15)
    v, (g_mu, g_var) = gaussian_nll.value_and_grad(mu, t, 0.7, wrt="all")
    np.testing.assert_allclose(v, ref.item(), rtol=1e-14)
    assert g_var.shape == () and g_var.dtype == np.float64
    np.testing.assert_allclose(g_var, vt.grad.item(), rtol=1e-13)


@pytest.mark.parametrize("var_shape", [(5, 2), (3,), (5, 3, 1), (), (1, 1), (5, 1, 1)])
def test_gaussian_var_of_another_shape_is_a_value_error(var_shape):
    mu = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"^`var` of gaussian_nll must have the shape of "
                       r"`prediction` \(5, 3\), that shape without its last axis \(5,\), or "
                       r"that shape with one axis of size 1 such as \(5, 1\), or be a Python "
                       rf"float; got {re.escape(str(var_shape))}$"):
        gaussian_nll(mu, mu, np.ones(var_shape))


def test_gaussian_var_of_a_0d_prediction_must_be_0d_or_a_float():
    with pytest.raises(ValueError, match=r"^`var` of gaussian_nll must have the shape of "
                       r"`prediction` \(\), or be a Python float; got \(1,\)$"):
        gaussian_nll(np.array(0.0), np.array(1.0), np.ones(1))
    np.testing.assert_allclose(gaussian_nll(np.array(0.0), np.array(1.0), np.array(4.0)),
                               0.5 * (math.log(4.0) + 1 / 4), rtol=1e-15)


def test_gaussian_target_is_never_broadcast():
    # torch would broadcast a target with one axis of size 1; losskit does not
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(4, 3\); got \(4, 1\)"):
        gaussian_nll(np.zeros((4, 3)), np.zeros((4, 1)), np.ones((4, 3)))


@pytest.mark.parametrize("bad", [True, "1", None])
def test_gaussian_var_of_the_wrong_kind_is_a_type_error(bad):
    with pytest.raises(TypeError, match="`var`"):
        gaussian_nll(np.zeros(3), np.zeros(3), bad)
    with pytest.raises(TypeError, match=r"`var` of gaussian_nll must be real-valued; got "
                       r"dtype bool"):
        gaussian_nll(np.zeros(3), np.zeros(3), np.ones(3, dtype=bool))


def test_gaussian_var_gradient_vanishes_at_the_maximum_likelihood_variance():
    mu, t = np.array([0.0, 1.0, -2.0]), np.array([0.5, -2.0, 1.0])
    g_var = gaussian_nll.grad(mu, t, (mu - t) ** 2, wrt="var", reduction="sum")
    np.testing.assert_allclose(g_var, 0.0, atol=1e-15)


@pytest.mark.parametrize("var_shape", [(4, 3), (4,), (4, 1)])
def test_gaussian_var_gradient_matches_finite_differences(var_shape):
    rng = np.random.default_rng(3)
    mu, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    var = 0.3 + rng.random(size=var_shape)
    sw = rng.uniform(0.5, 2, size=4)
    for red in ("sum", "mean", "batchmean"):
        res = lk.gradcheck(gaussian_nll, mu, t, var, wrt=2, reduction=red, sample_weight=sw,
                        grad=lambda *a, **kw: gaussian_nll.grad(*a, wrt="var", **kw))
        assert res.ok and res.kinks == 0, res


def test_gaussian_nan_variance_propagates():
    v, (g_mu, g_var) = gaussian_nll.value_and_grad(
        np.zeros(2), np.ones(2), np.array([NAN, 1.0]), wrt="all", reduction="none")
    assert np.isnan(v[0]) and np.isnan(g_mu[0]) and np.isnan(g_var[0])
    assert np.isfinite(v[1]) and np.isfinite(g_mu[1]) and np.isfinite(g_var[1])


def test_gaussian_broadcast_var_gradient_on_every_backend(backend):
    rng = np.random.default_rng(4)
    mu, t, var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 0.5 + rng.random(5)
    ref = gaussian_nll.value_and_grad(mu, t, var, wrt="all")
    v, (g_mu, g_var) = gaussian_nll.value_and_grad(
        backend.asarray(mu), backend.asarray(t), backend.asarray(var), wrt="all")
    assert backend.is_native(g_var) and tuple(g_var.shape) == (5,)
    np.testing.assert_allclose(backend.to_numpy(v), ref[0], rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(g_mu), ref[1][0], rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(g_var), ref[1][1], rtol=1e-12)


def test_gaussian_broadcast_var_gradient_under_jax_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    rng = np.random.default_rng(5)
    mu, t, var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 0.5 + rng.random((5, 1))

    def ref(m, tt, vv):  # torch's formula written in jax; autodiff gives the reference
        return jnp.mean(0.5 * (jnp.log(vv) + (m - tt) ** 2 / vv))

    ref_g = jax.grad(ref, argnums=(0, 2))(mu, t, var)
    g_mu, g_var = jax.jit(lambda m, tt, vv: gaussian_nll.grad(m, tt, vv, wrt="all"))(
        jnp.asarray(mu), jnp.asarray(t), jnp.asarray(var))
    np.testing.assert_allclose(np.asarray(g_mu), np.asarray(ref_g[0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g_var), np.asarray(ref_g[1]), rtol=1e-12)


# ============================================================== option validation
@pytest.mark.parametrize("loss,option,bad,interval", [
    (huber, "delta", 0.0, r"\(0, inf\)"),
    (huber, "delta", -1.0, r"\(0, inf\)"),
    (huber, "delta", INF, r"\(0, inf\)"),
    (huber, "delta", NAN, r"\(0, inf\)"),
    (smooth_l1, "beta", -0.5, r"\[0, inf\)"),
    (smooth_l1, "beta", INF, r"\[0, inf\)"),
    (quantile, "q", 0.0, r"\(0, 1\)"),
    (quantile, "q", 1.0, r"\(0, 1\)"),
    (quantile, "q", -0.1, r"\(0, 1\)"),
    (quantile, "q", 1.5, r"\(0, 1\)"),
    (quantile, "q", NAN, r"\(0, 1\)"),
    (poisson_nll, "eps", -1e-8, r"\[0, inf\)"),
    (poisson_nll, "eps", INF, r"\[0, inf\)"),
    (gaussian_nll, "eps", 0.0, r"\(0, inf\)"),
    (gaussian_nll, "eps", -1.0, r"\(0, inf\)"),
])
def test_option_out_of_range_is_a_value_error(loss, option, bad, interval):
    arrays = [np.ones(3)] * len(loss.inputs)
    for fn in (loss, loss.grad, loss.value_and_grad):
        with pytest.raises(ValueError, match=rf"^`{option}` must lie in {interval}; "
                           rf"got {re.escape(repr(bad))}$"):
            fn(*arrays, **{option: bad})


@pytest.mark.parametrize("loss,option,bad", [
    (huber, "delta", "1"), (huber, "delta", True), (smooth_l1, "beta", None),
    (quantile, "q", "0.5"), (quantile, "q", {0.5}),
])
def test_option_of_the_wrong_kind_is_a_type_error(loss, option, bad):
    with pytest.raises(TypeError, match=rf"^`{option}` must be a real number; got "):
        loss(np.ones(3), np.ones(3), **{option: bad})


@pytest.mark.parametrize("loss,flag", [(poisson_nll, "log_input"), (poisson_nll, "full"),
                                       (gaussian_nll, "full")])
@pytest.mark.parametrize("bad", [1, "yes", None])
def test_boolean_flags_must_be_bools(loss, flag, bad):
    arrays = [np.ones(3)] * len(loss.inputs)
    with pytest.raises(TypeError, match=rf"^`{flag}` must be True or False; got "
                       rf"{re.escape(repr(bad))}$"):
        loss(*arrays, **{flag: bad})


def test_poisson_negative_count_is_a_value_error():
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, inf\]; it has values "
                       r"below 0 \(min -1\): Poisson targets are counts$"):
        poisson_nll(np.zeros(3), np.array([1.0, -1.0, 2.0]))


def test_poisson_negative_rate_is_a_value_error():
    with pytest.raises(ValueError, match=r"^`prediction` must lie in \[0, inf\]; it has values "
                       r"below 0 \(min -0\.5\): with log_input=False the prediction is a rate; "
                       r"pass log-rates with log_input=True$"):
        poisson_nll.grad(np.array([1.0, -0.5]), np.ones(2), log_input=False)
    poisson_nll(np.array([1.0, -0.5]), np.ones(2))  # a log-rate may be negative


@pytest.mark.parametrize("name", sorted(ALL))
def test_integer_prediction_is_a_type_error(name):
    loss = ALL[name]
    arrays = [np.ones(3, dtype=np.int64)] + [np.ones(3)] * (len(loss.inputs) - 1)
    with pytest.raises(TypeError, match=rf"^`prediction` of `{name}` must have a floating "
                       r"dtype .*got int64"):
        loss(*arrays)


@pytest.mark.parametrize("name", sorted(ALL))
def test_target_shape_mismatch_is_a_value_error(name):
    loss = ALL[name]
    extra = [np.ones(4)] * (len(loss.inputs) - 2)
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(4,\); got \(4, 1\)"):
        loss(np.ones(4), np.ones((4, 1)), *extra)


# ============================================================== NaN, dtypes
def _valid(name, rng, shape=(4,), dtype=np.float64):
    if name == "poisson_nll":
        arrays = (rng.normal(size=shape), rng.poisson(2.0, size=shape).astype(float))
    elif name == "gaussian_nll":
        arrays = (rng.normal(size=shape), rng.normal(size=shape),
                  0.5 + rng.random(size=shape))
    else:
        arrays = (rng.normal(scale=2.0, size=shape), rng.normal(size=shape))
    return tuple(a.astype(dtype) for a in arrays)


@pytest.mark.parametrize("name,options", [(n, {}) for n in sorted(ALL)]
                         + [("poisson_nll", {"log_input": False}),
                            ("poisson_nll", {"log_input": False, "eps": 0.0, "full": True})])
def test_nan_prediction_and_target_propagate_elementwise(name, options):
    loss = ALL[name]
    rng = np.random.default_rng(6)
    for pos in (0, 1):  # NaN in the prediction, then in the target
        arrays = [a.copy() for a in _valid(name, rng)]
        if options:
            arrays[0] = np.abs(arrays[0])
        arrays[pos][1] = NAN
        v, g = loss.value_and_grad(*arrays, reduction="none", **options)
        assert np.isnan(v[1]) and np.isfinite(np.delete(v, 1)).all(), (pos, v)
        assert np.isnan(g[1]) and np.isfinite(np.delete(g, 1)).all(), (pos, g)


def _torch_reference(name, arrays, **kw):
    """The per-element loss by PyTorch (or the formula in torch where it has none)."""
    if name == "huber":
        return F.huber_loss(*arrays, reduction="none", **kw)
    if name == "smooth_l1":
        return F.smooth_l1_loss(*arrays, reduction="none", **kw)
    if name == "log_cosh":
        return torch.log(torch.cosh(arrays[0] - arrays[1]))
    if name == "quantile":
        q = kw.get("q", 0.5)
        d = arrays[1] - arrays[0]
        return torch.maximum(q * d, (q - 1) * d)
    if name == "poisson_nll":
        return F.poisson_nll_loss(*arrays, reduction="none", **kw)
    return F.gaussian_nll_loss(*arrays, reduction="none", **kw)


@pytest.mark.parametrize("dtype,tol", [(np.float16, 2e-3), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", sorted(ALL))
def test_half_and_single_precision_keep_their_dtype(name, dtype, tol):
    loss = ALL[name]
    arrays = _valid(name, np.random.default_rng(7), shape=(16,), dtype=dtype)
    v, g = loss.value_and_grad(*arrays)
    assert v.dtype == dtype and g.dtype == dtype and v.shape == ()
    # reference: torch in float32 on the same rounded inputs
    ts = [torch.tensor(a.astype(np.float32), requires_grad=(k == 0))
          for k, a in enumerate(arrays)]
    ref = _torch_reference(name, ts).mean()
    ref.backward()
    np.testing.assert_allclose(float(v), ref.item(), rtol=tol)
    np.testing.assert_allclose(g.astype(np.float32), ts[0].grad.numpy(), rtol=tol,
                               atol=tol / 100)


def test_float16_huge_huber_residual_is_computed_in_float32():
    # 60000^2 / 2 overflows float16 and the float32 result 59999.5 rounds to 60000
    y = np.array([60000.0], dtype=np.float16)
    v = huber(y, np.zeros(1, dtype=np.float16), reduction="none")
    assert v.dtype == np.float16 and float(v[0]) == 60000.0


# ============================================================== sample weights
OPTS = {"huber": {"delta": 0.8}, "smooth_l1": {"beta": 0.5}, "log_cosh": {},
        "quantile": {"q": 0.2}, "poisson_nll": {"full": True}, "gaussian_nll": {"full": True}}


@pytest.mark.parametrize("name", sorted(ALL))
def test_sample_weight_gives_the_weighted_formula(name):
    loss, opts = ALL[name], OPTS[name]
    rng = np.random.default_rng(8)
    arrays = _valid(name, rng, shape=(5, 3))
    w = np.array([0.0, 0.5, 1.0, 2.0, 3.5])
    for red in ("none", "sum", "mean", "batchmean"):
        ts = [_t(a, grad=(k == 0)) for k, a in enumerate(arrays)]
        per = _torch_reference(name, ts, **opts) * _t(w)[:, None]
        ref = {"none": per, "sum": per.sum(), "batchmean": per.sum() / 5,
               "mean": per.sum() / (3 * w.sum())}[red]  # the weights of the 15 elements
        ref.sum().backward()
        v, g = loss.value_and_grad(*arrays, sample_weight=w, reduction=red, **opts)
        np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g, ts[0].grad.numpy(), rtol=1e-13, atol=1e-15)


def test_huber_sample_weight_reproduces_torch_weight():
    rng = np.random.default_rng(9)
    y, t, w = rng.normal(size=(6, 2)) * 3, rng.normal(size=(6, 2)), rng.random((6, 2))
    for red in ("none", "sum"):
        ref = F.huber_loss(_t(y), _t(t), weight=_t(w), delta=1.3, reduction=red).numpy()
        np.testing.assert_allclose(huber(y, t, sample_weight=w, delta=1.3, reduction=red),
                                   ref, rtol=1e-14)
    # torch's weighted mean divides by the number of elements, not by the weights
    ref = F.huber_loss(_t(y), _t(t), weight=_t(w), delta=1.3, reduction="mean").item()
    ours = huber(y, t, sample_weight=w, delta=1.3, reduction="sum") / y.size
    np.testing.assert_allclose(ours, ref, rtol=1e-14)
    assert not np.isclose(huber(y, t, sample_weight=w, delta=1.3), ref, rtol=1e-3)


# ============================================================== properties
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)
vectors = arrays(np.float64, st.integers(1, 8), elements=finite)


@SETTINGS
@given(vectors, st.floats(0.01, 100))
def test_huber_lies_below_both_the_square_and_the_linear_bound(d, delta):
    v, g = huber.value_and_grad(d, np.zeros_like(d), delta=delta, reduction="none")
    a = np.abs(d)
    slack = 1e-12 * (1 + a * a)
    assert np.all(v >= 0)
    assert np.all(v <= 0.5 * a * a + slack) and np.all(v <= delta * a + slack)
    assert np.all(np.abs(g) <= delta)
    # smooth L1 is Huber divided by its threshold
    np.testing.assert_allclose(smooth_l1(d, np.zeros_like(d), beta=delta, reduction="none"),
                               v / delta, rtol=1e-12, atol=1e-300)


@SETTINGS
@given(vectors)
def test_log_cosh_is_sandwiched_and_even(d):
    v, g = log_cosh.value_and_grad(d, np.zeros_like(d), reduction="none")
    a = np.abs(d)
    assert np.all(v >= np.maximum(a - LN2, 0) - 1e-12 * (1 + a))
    assert np.all(v <= np.minimum(0.5 * a * a, a) + 1e-12 * (1 + a))
    np.testing.assert_array_equal(v, log_cosh(-d, np.zeros_like(d), reduction="none"))
    assert np.all(np.abs(g) <= 1) and np.all(g * d >= 0)


@SETTINGS
@given(vectors, st.floats(0.01, 0.99))
def test_quantile_swapping_roles_swaps_the_level(y, q):
    t = y[::-1].copy()
    v = quantile(y, t, q=q, reduction="none")
    assert np.all(v >= 0)
    np.testing.assert_allclose(v, quantile(t, y, q=1 - q, reduction="none"), rtol=1e-12,
                               atol=1e-300)


# ============================================================== pseudo_huber
def _mp_pseudo_huber(d, delta):
    mpmath.mp.dps = 60
    d, delta = mpmath.mpf(d), mpmath.mpf(delta)
    return (float(delta ** 2 * (mpmath.sqrt(1 + (d / delta) ** 2) - 1)),
            float(d / mpmath.sqrt(1 + (d / delta) ** 2)))


@pytest.mark.parametrize("delta", [0.3, 1.0, 7.0])
def test_pseudo_huber_is_exact_from_tiny_to_huge_residuals(delta):
    d = np.array([1e-300, -1e-12, 3e-9, 0.25, -1.0, 7.5, -1e8, 1e150, -1e300])
    v, g = lk.pseudo_huber.value_and_grad(d, np.zeros_like(d), delta=delta, reduction="none")
    for i, di in enumerate(d):
        ev, eg = _mp_pseudo_huber(di, delta)
        np.testing.assert_allclose(v[i], ev, rtol=4e-16, atol=0)
        np.testing.assert_allclose(g[i], eg, rtol=4e-16, atol=0)
    # the textbook form cancels to nothing near 0
    assert delta ** 2 * (np.sqrt(1 + (3e-9 / delta) ** 2) - 1) == 0.0


def test_pseudo_huber_edges_and_limits():
    v, g = lk.pseudo_huber.value_and_grad(np.array([INF, -INF, NAN, 0.0]), np.zeros(4),
                                          delta=2.0, reduction="none")
    np.testing.assert_array_equal(v[[0, 1, 3]], [INF, INF, 0.0])
    np.testing.assert_array_equal(g[[0, 1, 3]], [2.0, -2.0, 0.0])  # the slope delta far out
    assert np.isnan(v[2]) and np.isnan(g[2])
    # float32 keeps its dtype, and s^2 would overflow float32 at |d| = 1e20
    y32 = np.array([1e20, -3e-20], dtype=np.float32)
    v32, g32 = lk.pseudo_huber.value_and_grad(y32, np.zeros(2, np.float32), reduction="none")
    assert v32.dtype == np.float32 and np.isfinite(v32).all()
    np.testing.assert_allclose(v32, [1e20 - 1, 4.5e-40], rtol=1e-6)
    np.testing.assert_allclose(g32, [1.0, -3e-20], rtol=1e-6)


def test_pseudo_huber_between_squared_and_huber():
    """d^2/2 >= pseudo-Huber, and pseudo-Huber <= Huber (both delta) with equality at 0."""
    d = np.linspace(-20, 20, 401)
    z = np.zeros_like(d)
    ph = lk.pseudo_huber(d, z, delta=1.5, reduction="none")
    assert np.all(ph <= 0.5 * d ** 2 + 1e-15)
    assert np.all(ph <= lk.huber(d, z, delta=1.5, reduction="none") + 1e-12)
    np.testing.assert_allclose(lk.pseudo_huber.grad(d, z, delta=1.5, reduction="sum"),
                               d / np.sqrt(1 + (d / 1.5) ** 2), rtol=1e-14)


def test_pseudo_huber_gradient_is_xgboosts():
    # XGBoost PseudoHuberError::FirstOrderGradient: z = predt - label,
    # scale_sqrt = sqrt(1 + (z / slope)^2), grad = z / scale_sqrt
    r = np.random.default_rng(8)
    y, t = 3 * r.normal(size=50), r.normal(size=50)
    z = y - t
    np.testing.assert_allclose(lk.pseudo_huber.grad(y, t, delta=0.8, reduction="sum"),
                               z / np.sqrt(1 + (z / 0.8) ** 2), rtol=1e-14)


@pytest.mark.parametrize("delta", [0.0, -1.0, INF, NAN])
def test_pseudo_huber_bad_delta(delta):
    with pytest.raises(ValueError, match="`delta`"):
        lk.pseudo_huber(np.ones(2), np.zeros(2), delta=delta)


@SETTINGS
@given(d=st.floats(-1e6, 1e6), delta=st.floats(0.01, 100.0))
def test_pseudo_huber_gradient_bounded_by_delta(d, delta):
    g = lk.pseudo_huber.grad(np.array([d]), np.zeros(1), delta=delta)
    assert abs(g[0]) <= delta * (1 + 1e-15)
    assert abs(g[0]) <= abs(d) * (1 + 1e-15)


# ============================================================== multi-quantile heads
def test_quantile_head_equals_scikit_learn_per_level_and_the_tft_loss():
    from sklearn.metrics import mean_pinball_loss

    r = np.random.default_rng(40)
    levels = [0.1, 0.5, 0.9]
    y, t = r.normal(size=(50, 3)), r.normal(size=50)
    per_elem = lk.quantile(y, t, q=levels, reduction="none")
    assert per_elem.shape == (50, 3)
    for j, a in enumerate(levels):
        np.testing.assert_allclose(per_elem[:, j].mean(), mean_pinball_loss(t, y[:, j], alpha=a),
                                   rtol=1e-12)
    # the Temporal Fusion Transformer's loss (sktime/pytorch-forecasting,
    # temporal_fusion_transformer_pytorch/model/metrics.py): sum over the levels, mean
    # over the examples
    yt, tt = _t(y), _t(t)
    tft = torch.mean(torch.sum(torch.cat(
        [torch.max((a - 1) * (tt - yt[..., i]), a * (tt - yt[..., i])).unsqueeze(1)
         for i, a in enumerate(levels)], dim=1), dim=1))
    np.testing.assert_allclose(lk.quantile(y, t, q=levels, reduction="batchmean"), float(tft),
                               rtol=1e-12)
    # one level in a list is that level on a column of length 1
    np.testing.assert_allclose(lk.quantile(y[:, :1], t, q=[0.3], reduction="none")[:, 0],
                               lk.quantile(y[:, 0], t, q=0.3, reduction="none"), rtol=1e-15)
    # a 1-d array of levels and per-level targets
    np.testing.assert_allclose(lk.quantile(y, np.repeat(t[:, None], 3, 1), q=np.array(levels)),
                               lk.quantile(y, t, q=levels), rtol=1e-15)


def test_quantile_head_errors():
    y, t = np.zeros((4, 3)), np.zeros(4)
    with pytest.raises(ValueError, match=r"^`q` must hold at least one quantile level"):
        lk.quantile(y, t, q=[])
    with pytest.raises(ValueError, match=r"^`q` must lie in \(0, 1\); got 1\.0$"):
        lk.quantile(y, t, q=[0.1, 0.5, 1.0])
    with pytest.raises(TypeError, match=r"^`q` must be a real number; got str$"):
        lk.quantile(y, t, q=[0.1, "0.5", 0.9])
    with pytest.raises(ValueError, match=r"^`prediction` of quantile must have a last axis of "
                                         r"length len\(q\) = 2 \(one column per quantile "
                                         r"level\); got shape \(4, 3\)$"):
        lk.quantile(y, t, q=[0.2, 0.8])
    with pytest.raises(ValueError, match=r"got \(4, 2\)\. Or \(4,\): one target for every "
                                         r"quantile level$"):
        lk.quantile(y, np.zeros((4, 2)), q=[0.1, 0.5, 0.9])


@SETTINGS
@given(data=st.lists(st.floats(-100, 100), min_size=5, max_size=30),
       levels=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=4))
def test_quantile_head_gradient_vanishes_between_the_empirical_quantiles(data, levels):
    """For constant predictions, the gradient of the mean is sum([y > t] - q) / n per level:
    its sign says on which side of the empirical q-quantile the prediction lies."""
    t = np.array(data)
    for j, a in enumerate(levels):
        c = np.quantile(t, a, method="inverted_cdf")
        g = lk.quantile.grad(np.full((len(t), len(levels)), c), t, q=levels, reduction="sum")
        below = np.mean(t < c)
        # at the empirical quantile the one-sided derivatives bracket 0
        assert g[:, j].sum() <= len(t) * (1 - a) * 1 + 1e-9
        assert below <= a + 1e-9
