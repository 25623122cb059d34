"""The edges of each family: huge and infinite logits, log 0, clamps per dtype.

Expected values are derived by hand from the definitions (comments give the derivation).
"""

from __future__ import annotations


import numpy as np
import pytest

import losskit as lk

INF = np.inf


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.mark.parametrize("big", [1e4, 1e30, 1e300])
def test_softmax_ce_huge_logits_are_exact(big):
    z = np.array([[big, 0.0, -big], [0.0, big, 0.0]])
    y = np.array([0, 0])
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, reduction="none")
    # row 0: the target dominates: -log 1 = 0; row 1: logsumexp = big, loss = big - 0
    np.testing.assert_allclose(v, [0.0, big], rtol=1e-15)
    # grad = softmax - onehot: row 0 -> 0; row 1 -> (-1, 1, 0)
    np.testing.assert_allclose(g, [[0, 0, 0], [-1, 1, 0]], atol=1e-15)


def test_softmax_ce_minus_inf_logit_on_another_class_is_masked_out():
    z = np.array([[1.0, 2.0, -INF]])
    y = np.array([0])
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y)
    # equal to the two-class problem on the finite logits: log(e^1 + e^2) - 1
    np.testing.assert_allclose(v, np.log(np.e + np.e ** 2) - 1.0, rtol=1e-15)
    p = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(g, [[p[0] - 1, p[1], 0.0]], rtol=1e-15, atol=1e-16)


def test_softmax_ce_minus_inf_logit_on_the_target_costs_infinity():
    v, g = lk.softmax_cross_entropy.value_and_grad(np.array([[-INF, 0.0]]), np.array([0]))
    assert v == INF
    np.testing.assert_allclose(g, [[-1.0, 1.0]])  # softmax (0, 1) - onehot (1, 0)


def test_softmax_ce_all_minus_inf_row_ignored_contributes_nothing():
    z = np.array([[-INF, -INF], [0.0, 1.0]])
    y = np.array([-100, 1])
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, ignore_index=-100)
    np.testing.assert_allclose(v, np.log(1 + np.e) - 1.0, rtol=1e-15)
    assert np.all(g[0] == 0)


def test_softmax_ce_soft_target_zero_on_minus_inf_class():
    # 0 * log 0 = 0: a class with target 0 and logit -inf costs nothing
    v = lk.softmax_cross_entropy(np.array([[0.0, 0.0, -INF]]), np.array([[0.5, 0.5, 0.0]]))
    np.testing.assert_allclose(v, np.log(2.0), rtol=1e-15)


@pytest.mark.parametrize("z,t,expected,grad", [
    (INF, 1.0, 0.0, 0.0),          # sigma = 1, perfect
    (-INF, 0.0, 0.0, 0.0),
    (-INF, 1.0, INF, -1.0),        # sigma(z) - t = 0 - 1
    (1e4, 0.0, 1e4, 1.0),          # softplus(1e4) = 1e4
    (-1e4, 1.0, 1e4, -1.0),
    (1e4, 0.5, 0.5e4, 0.5),        # 0.5 softplus(-1e4) + 0.5 softplus(1e4)
    (0.0, 1.0, np.log(2.0), -0.5),
])
def test_sigmoid_bce_at_the_edges(z, t, expected, grad):
    v, g = lk.sigmoid_binary_cross_entropy.value_and_grad(np.array([z]), np.array([t]))
    np.testing.assert_allclose(v, expected, rtol=1e-15)
    np.testing.assert_allclose(g, [grad], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_probability_clamps_are_dtype_aware(dtype):
    eps = np.finfo(dtype).eps
    # cross_entropy: probability 0 on the true class costs -log(eps of the input dtype)
    p = np.array([[0.0, 1.0]], dtype=dtype)
    v, g = lk.cross_entropy.value_and_grad(p, np.array([0]))
    assert v.dtype == dtype
    np.testing.assert_allclose(float(v), -np.log(float(eps)), rtol=1e-3)
    assert np.all(g == 0)  # the exact derivative of the clamped value: flat below eps
    # binary_cross_entropy at both ends
    y = np.array([0.0, 1.0, 0.0, 1.0], dtype=dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0], dtype=dtype)
    v = lk.binary_cross_entropy(y, t, reduction="none")
    np.testing.assert_allclose(v.astype(float), [0, 0, -np.log(float(eps)), -np.log(float(eps))],
                               rtol=1e-3)
    assert np.all(np.isfinite(lk.binary_cross_entropy.grad(y, t)))


def test_clamped_gradient_is_exact_derivative_of_clamped_value():
    # just above the clamp the gradient is -t/y; below it the value is flat and so is the grad
    eps = np.finfo(np.float64).eps
    y = np.array([2 * eps, 0.5 * eps])
    t = np.array([1.0, 1.0])
    g = lk.binary_cross_entropy.grad(y, t, reduction="sum")
    np.testing.assert_allclose(g, [-1 / (2 * eps), 0.0], rtol=1e-12)


def test_cross_entropy_zero_probability_on_a_non_target_class_is_free():
    v, g = lk.cross_entropy.value_and_grad(np.array([[0.5, 0.5, 0.0]]), np.array([0]))
    np.testing.assert_allclose(v, np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(g, [[-2.0, 0.0, 0.0]], rtol=1e-15)  # -t/y = -1/0.5


def test_nll_accepts_minus_inf_log_probability_off_target():
    v = lk.nll_loss(np.array([[-INF, np.log(1.0)]]), np.array([1]))
    assert float(v) == 0.0


def test_nan_propagates_through_every_loss():
    z = np.array([[np.nan, 0.0], [0.0, 1.0]])
    v, g = lk.softmax_cross_entropy.value_and_grad(z, np.array([0, 1]), reduction="none")
    assert np.isnan(v[0]) and not np.isnan(v[1])
    assert np.isnan(g[0]).all() and not np.isnan(g[1]).any()
    assert np.isnan(lk.mse(np.array([np.nan, 1.0]), np.array([0.0, 1.0])))


def test_mae_and_hinge_use_subgradient_zero_at_the_kink():
    assert lk.mae.grad(np.array([1.0]), np.array([1.0]))[0] == 0.0
    assert lk.hinge.grad(np.array([1.0]), np.array([1.0]))[0] == 0.0  # t*s == margin
    assert lk.multiclass_hinge.grad(np.array([[1.0, 0.0]]), np.array([0]))[0].tolist() == [0, 0]


# ------------------------------------------------------------------ NaN weights propagate
# The weighted mean is sum(s l) / sum(s w): a NaN weight makes both sums NaN, so the value
# and every gradient entry are NaN (IEEE arithmetic); only a true zero total weight is "a
# mean over nothing" (0 with a zero gradient).
from loss_cases import CASES  # noqa: E402

_SEEN: dict[str, object] = {}
for _c in CASES:
    _SEEN.setdefault(_c.loss.name, _c)
_ONE = list(_SEEN.values())


def _nan_weight_for(case, arrays):
    v = case.loss(*arrays, reduction="none", **case.options)
    sw = np.ones(np.shape(v))
    sw.flat[0] = np.nan
    return sw


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
@pytest.mark.parametrize("case", _ONE, ids=list(_SEEN))
def test_a_nan_sample_weight_makes_the_loss_and_gradient_nan(case, reduction):
    arrays = case.inputs()
    sw = _nan_weight_for(case, arrays)
    v, g = case.loss.value_and_grad(*arrays, reduction=reduction, sample_weight=sw,
                                    **case.options)
    assert np.isnan(v)
    if reduction == "mean":  # the total weight is NaN: every entry of the gradient
        assert np.isnan(g).all()
    else:  # the NaN example's own entries
        assert np.isnan(g).any()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", [c for c in _ONE if "class_weight" in c.loss.option_defaults()],
                         ids=[n for n, c in _SEEN.items()
                              if "class_weight" in c.loss.option_defaults()])
def test_a_nan_class_weight_makes_the_loss_nan(case):
    arrays = case.inputs()
    k = np.shape(arrays[1] if case.loss.name == "linear_cross_entropy" else arrays[0])
    k = k[case.options.get("axis", case.loss.option_defaults().get("axis", -1)) or -1]
    cw = np.ones(k)
    cw[:] = np.nan  # every class: whichever labels the case draws, its weight is NaN
    v, g = case.loss.value_and_grad(*arrays, **{**case.options, "class_weight": cw})
    assert np.isnan(v) and np.isnan(g).all()


def test_mse_nan_weight_is_not_a_mean_over_nothing():
    # the example: (0.0, [0, 0, 0]) before
    v, g = lk.mse.value_and_grad(np.ones(3), np.zeros(3), sample_weight=np.array([1.0, np.nan, 1.0]))
    assert np.isnan(v) and np.isnan(g).all()
    # a true zero total weight stays a mean over nothing
    v, g = lk.mse.value_and_grad(np.ones(3), np.zeros(3), sample_weight=np.zeros(3))
    assert v == 0.0 and not g.any()


def test_nan_weights_propagate_on_torch_and_jax():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    y = np.array([0, 1])
    cw = np.array([1.0, np.nan, 1.0])
    zt = torch.tensor(z, requires_grad=True)
    v = lk.softmax_cross_entropy(zt, torch.tensor(y), class_weight=torch.tensor(cw))
    v.backward()
    assert torch.isnan(v) and torch.isnan(zt.grad).all()
    vj, gj = lk.softmax_cross_entropy.value_and_grad(jnp.asarray(z), jnp.asarray(y),
                                                     class_weight=jnp.asarray(cw))
    assert np.isnan(np.asarray(vj)) and np.isnan(np.asarray(gj)).all()
