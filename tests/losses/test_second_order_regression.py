"""Second order of the regression losses at the edges the catalog cases do not reach:
kinks, huge residuals, log terms at 0, clamps and clips, Tweedie powers between the
catalog's. Expected values are the mathematics written out here or PyTorch's autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")


def _torch_diag_hessian(fn, y):
    """The Hessian of ``fn(y).sum()`` (y a float64 array), checked diagonal; its diagonal."""
    x = torch.tensor(y, dtype=torch.float64)
    h = torch.autograd.functional.hessian(lambda p: fn(p).sum(), x).reshape(x.numel(), -1)
    h = h.numpy(force=True)
    np.testing.assert_array_equal(h - np.diag(np.diag(h)), 0.0)
    return np.diag(h).reshape(np.shape(y))


def test_huber_and_smooth_l1_on_both_sides_of_the_kink():
    d = np.array([0.0, 0.5, -2.0, 2.0, 3.0, -1e300, np.inf, np.nan])
    t = np.zeros_like(d)
    with np.errstate(invalid="ignore"):  # the value at d = inf is inf - inf
        h = lk.huber.hessian(d, t, delta=2.0, reduction="none")
        s = lk.smooth_l1.hessian(d, t, beta=2.0, reduction="none")
        s0 = lk.smooth_l1.hessian(d, t, beta=0.0, reduction="none")
    # 1 on the quadratic side |d| <= delta (the kink included), 0 beyond
    np.testing.assert_array_equal(h, [1, 1, 1, 1, 0, 0, 0, np.nan])
    np.testing.assert_array_equal(s, [0.5, 0.5, 0.5, 0.5, 0, 0, 0, np.nan])
    np.testing.assert_array_equal(s0, [0, 0, 0, 0, 0, 0, 0, np.nan])  # beta = 0 is mae


def test_pseudo_huber_and_log_cosh_far_out():
    d = np.array([1e-9, 0.75, -30.0, 1e5, 1e300])
    t = np.zeros_like(d)
    ph = lk.pseudo_huber.hessian(d, t, delta=1.0, reduction="none")
    s = d / 1.0
    expect = [(1 + v * v) ** -1.5 if v < 1e100 else 0.0 for v in s]
    np.testing.assert_allclose(ph, expect, rtol=1e-14, atol=0)
    assert ph[1] == pytest.approx(0.512)  # (1 + 9/16)^{-3/2} = (4/5)^3
    lc = lk.log_cosh.hessian(d, t, reduction="none")
    # sech^2 d: 1 - tanh^2(30) would round to 0; the true 4 e^{-60} is kept
    expect = [1 / math.cosh(v) ** 2 if abs(v) < 700 else 0.0 for v in d]
    np.testing.assert_allclose(lc, expect, rtol=1e-14, atol=0)
    assert lc[2] > 0 and np.all(np.isfinite(lc))


def test_piecewise_linear_losses_have_zero_hessians():
    y = np.array([[0.5, -3.0, 1e300], [2.0, 1.0, -1e300]])
    t = np.array([[1.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])
    for loss, opts in ((lk.mae, {}), (lk.quantile, {"q": 0.9}),
                       (lk.mape, {"epsilon": 1e-7, "percent": True})):
        h = loss.hessian(y, t, **opts)
        assert h.shape == y.shape and not np.any(h)
    head = lk.quantile.hessian(y, t[:, 0], q=[0.1, 0.5, 0.9], sample_weight=np.array([2., 3.]))
    assert head.shape == y.shape and not np.any(head)


def test_poisson_nll_edges():
    x = np.array([-1e4, 0.0, 50.0])
    t = np.array([3.0, 0.0, 2.0])
    h = lk.poisson_nll.hessian(x, t, reduction="none")
    np.testing.assert_allclose(h, [0.0, 1.0, math.exp(50.0)], rtol=1e-15)  # e^x
    # rates with eps = 0: t / x^2, +inf for a positive count at rate 0, 0 for a zero count
    rate = np.array([0.0, 0.0, 0.5, 4.0])
    cnt = np.array([0.0, 2.0, 3.0, 2.0])
    h = lk.poisson_nll.hessian(rate, cnt, log_input=False, eps=0.0, reduction="none")
    np.testing.assert_array_equal(h, [0.0, np.inf, 12.0, 0.125])
    # eps and full against autograd, with a sample weight and the mean
    rate, cnt, w = np.array([0.3, 1.5, 2.0]), np.array([0.0, 4.0, 1.0]), np.array([1., 2., .5])
    ct, wt = torch.tensor(cnt), torch.tensor(w)
    expect = _torch_diag_hessian(
        lambda p: wt * torch.nn.functional.poisson_nll_loss(
            p, ct, log_input=False, full=True, eps=0.1, reduction="none") / wt.sum(), rate)
    got = lk.poisson_nll.hessian(rate, cnt, log_input=False, full=True, eps=0.1,
                                 sample_weight=w)
    np.testing.assert_allclose(got, expect, rtol=1e-13)


def test_gaussian_nll_clamped_and_shared_variance():
    rng = np.random.default_rng(0)
    mu, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    var = np.array([[1e-9], [0.5], [2.0]])  # the first row below the clamp eps = 1e-3
    vt = torch.tensor(var)
    expect = _torch_diag_hessian(
        lambda p: torch.nn.functional.gaussian_nll_loss(p, torch.tensor(t), vt, eps=1e-3,
                                                        reduction="mean"), mu)
    got = lk.gaussian_nll.hessian(mu, t, var, eps=1e-3)
    np.testing.assert_allclose(got, expect, rtol=1e-13)
    np.testing.assert_allclose(got[0], 1 / (1e-3 * 6))  # 1 / (max(v, eps) N)
    v = rng.normal(size=(3, 2))
    np.testing.assert_allclose(lk.gaussian_nll.hvp(mu, t, var[:, 0], vector=v, eps=1e-3,
                                                   reduction="sum"),
                               v / np.maximum(var, 1e-3), rtol=1e-14)


def test_msle_clip_and_near_minus_one():
    y = np.array([-0.5, 1e-8, 0.3, 4.0])
    t = np.array([1.0, 0.2, 0.0, 1.0])
    clip = 1e-7
    yc = np.maximum(y, clip)
    d = np.log1p(yc) - np.log1p(np.maximum(t, clip))
    expect = np.where(y < clip, 0.0, 2 * (1 - d) / (1 + yc) ** 2)
    got = lk.msle.hessian(y, t, clip=clip, reduction="none")
    np.testing.assert_allclose(got, expect, rtol=1e-14)
    assert got[0] == 0 and got[1] == 0  # below the clip the prediction does not move it
    # no clip, a prediction just above -1: large, finite, 2 (1 - d) / (1 + y)^2
    y, t = np.array([-1 + 1e-10]), np.array([0.0])
    d = math.log1p(-1 + 1e-10)
    np.testing.assert_allclose(lk.msle.hessian(y, t, reduction="sum"),
                               [2 * (1 - d) / (1 + y[0]) ** 2], rtol=1e-6)


@pytest.mark.parametrize("power", [1.2, 2.5, 4.0])
def test_tweedie_powers_between_the_catalog_cases(power):
    r = np.array([-1.0, 0.3, 0.8, 1.5, -0.2])
    t = np.array([0.7, 2.0, 0.1, 1.0, 3.0])
    if power < 2:
        t[0] = 0.0  # an exact zero, allowed for 1 <= p < 2
    tt, p = torch.tensor(t), power

    def ref(rr):  # the half unit deviance of McCullagh and Nelder, mu = exp(r)
        mu = torch.exp(rr)
        return (tt ** (2 - p) / ((1 - p) * (2 - p)) - tt * mu ** (1 - p) / (1 - p)
                + mu ** (2 - p) / (2 - p))

    got = lk.tweedie_deviance.hessian(r, t, power=power, reduction="none")
    np.testing.assert_allclose(got, _torch_diag_hessian(ref, r), rtol=1e-12)
    # the closed form of XGBoost's reg:tweedie and scikit-learn's HalfTweedieLoss
    closed = -(1 - p) * t * np.exp((1 - p) * r) + (2 - p) * np.exp((2 - p) * r)
    np.testing.assert_allclose(got, closed, rtol=1e-12)


def test_deviance_hessians_far_from_the_optimum():
    # t mu^{1-p} with t = 1e-300 and r = -1500: e^{750} overflows alone, the product is
    # e^{750 + log 1e-300} (finite); the same for the Gamma's t / mu at r = -800
    lt = math.log(1e-300)
    r, t = np.array([-1500.0]), np.array([1e-300])
    h = lk.tweedie_deviance.hessian(r, t, power=1.5, reduction="none")
    np.testing.assert_allclose(h, [0.5 * math.exp(lt + 750.0) + 0.5 * math.exp(-750.0)],
                               rtol=1e-12)
    r = np.array([-800.0, 0.0, 700.0])
    t = np.array([1e-300, 2.0, 1.0])
    expect = [math.exp(lt + 800.0), 2.0, math.exp(-700.0)]  # t / mu
    np.testing.assert_allclose(lk.gamma_deviance.hessian(r, t, reduction="none"), expect,
                               rtol=1e-12)
    np.testing.assert_allclose(lk.tweedie_deviance.hessian(r, t, power=2, reduction="none"),
                               expect, rtol=1e-12)
    # p = 1: mu for every count, zeros included; p = 0: mu (2 mu - t), 0 as mu -> 0
    r, t = np.array([-1e4, 0.0, 3.0]), np.array([0.0, 0.0, 5.0])
    np.testing.assert_allclose(lk.tweedie_deviance.hessian(r, t, power=1, reduction="none"),
                               [0.0, 1.0, math.exp(3.0)], rtol=1e-15)
    np.testing.assert_allclose(lk.tweedie_deviance.hessian(r, t, power=0, reduction="none"),
                               [0.0, 2.0, math.exp(3.0) * (2 * math.exp(3.0) - 5.0)],
                               rtol=1e-15)
    # p = 3 at the optimum: t^{2-p}; far above the target it turns negative: -mu^{-1}
    r, t = np.array([math.log(4.0), 600.0]), np.array([4.0, 1.0])
    h = lk.tweedie_deviance.hessian(r, t, power=3, reduction="none")
    np.testing.assert_allclose(h, [0.25, -math.exp(-600.0) + 2 * math.exp(-1200.0)],
                               rtol=1e-12)
