"""Regularisation penalties: l1_penalty, l2_penalty, elastic_net_penalty.

Expected values come from the formulas written out here (math.fsum over Python floats),
central finite differences in float64, torch autograd, and scikit-learn's ElasticNet
(its documented objective and its fitted solution). Never from losskit itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losskit.penalties import Penalty, elastic_net_penalty, l1_penalty, l2_penalty

SETTINGS = settings(max_examples=50, deadline=None)
PENALTIES = {
    "l1": (l1_penalty, ()),
    "l2": (l2_penalty, ()),
    "elastic_net": (elastic_net_penalty, (0.3,)),
}


# --------------------------------------------------------------------------- references
def ref_value(kind, w, lam, *params):
    w = [float(v) for v in np.ravel(w)]
    l1 = math.fsum(abs(v) for v in w)
    l2 = math.fsum(v * v for v in w)
    if kind == "l1":
        return lam * l1
    if kind == "l2":
        return lam / 2 * l2
    (rho,) = params
    return lam * (rho * l1 + (1 - rho) / 2 * l2)


def central_differences(f, w, h=1e-6):
    w = np.array(w, dtype=np.float64)
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[i] += h
        down[i] -= h
        g[i] = (float(f(up)) - float(f(down))) / (2 * h)
    return g


def torch_penalty(torch, kind, w, lam, *params):
    if kind == "l1":
        return lam * w.abs().sum()
    if kind == "l2":
        return lam / 2 * (w * w).sum()
    (rho,) = params
    return lam * (rho * w.abs().sum() + (1 - rho) / 2 * (w * w).sum())


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("kind", PENALTIES)
@pytest.mark.parametrize("lam", [0.0, 0.01, 1.0, 3.5])
def test_value_matches_the_formula(kind, lam):
    pen, params = PENALTIES[kind]
    w = np.random.default_rng(0).normal(size=(4, 3))
    out = pen(w, lam, *params)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float64
    np.testing.assert_allclose(float(out), ref_value(kind, w, lam, *params), rtol=1e-14)


def test_hand_computed_values():
    w = np.array([3.0, -4.0, 0.0])
    assert float(l1_penalty(w, 0.5)) == 3.5  # 0.5 * 7
    assert float(l2_penalty(w, 0.5)) == 6.25  # 0.5 / 2 * 25
    # 2 * (0.25 * 7 + 0.75 / 2 * 25) = 3.5 + 18.75
    assert float(elastic_net_penalty(w, 2.0, 0.25)) == pytest.approx(22.25, rel=1e-15)


@SETTINGS
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e3, 1e3)),
       st.floats(0, 10), st.floats(0, 1))
def test_values_and_gradients_match_the_formulas(w, lam, rho):
    np.testing.assert_allclose(float(elastic_net_penalty(w, lam, rho)),
                               ref_value("elastic_net", w, lam, rho), rtol=1e-12, atol=1e-300)
    g = elastic_net_penalty.grad(w, lam, rho)
    np.testing.assert_allclose(g, lam * (rho * np.sign(w) + (1 - rho) * w), rtol=1e-12,
                               atol=1e-300)
    assert float(l1_penalty(w, lam)) >= 0 and float(l2_penalty(w, lam)) >= 0


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", PENALTIES)
def test_gradient_matches_central_differences(kind):
    pen, params = PENALTIES[kind]
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 4))
    w = np.where(np.abs(w) < 1e-2, 0.5, w)  # stay away from the L1 kink
    lam = 0.7
    fd = central_differences(lambda v: pen(v, lam, *params), w)
    g = pen.grad(w, lam, *params)
    assert g.shape == w.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", PENALTIES)
def test_gradient_matches_torch_autograd_including_zero_weights(kind):
    torch = pytest.importorskip("torch")
    pen, params = PENALTIES[kind]
    w = np.random.default_rng(2).normal(size=(5, 2))
    w[0, 0] = 0.0  # torch's abs'(0) = sign(0) = 0: the same subgradient
    wt = torch.tensor(w, requires_grad=True)
    ref = torch_penalty(torch, kind, wt, 0.3, *params)
    ref.backward()
    value, grad = pen.value_and_grad(w, 0.3, *params)
    np.testing.assert_allclose(float(value), float(ref.detach()), rtol=1e-13)
    np.testing.assert_allclose(grad, wt.grad.numpy(), rtol=1e-13, atol=0)


def test_l1_subgradient_is_zero_at_zero():
    np.testing.assert_array_equal(l1_penalty.grad(np.array([0.0, -0.0, 2.0, -3.0]), 0.5),
                                  [0.0, 0.0, 0.5, -0.5])
    np.testing.assert_array_equal(elastic_net_penalty.grad(np.array([0.0]), 0.5, 0.5), [0.0])


@pytest.mark.parametrize("kind", PENALTIES)
def test_value_and_grad_equals_the_separate_calls(kind):
    pen, params = PENALTIES[kind]
    w = np.random.default_rng(3).normal(size=7)
    v, g = pen.value_and_grad(w, 1.3, *params)
    np.testing.assert_array_equal(v, pen(w, 1.3, *params))
    np.testing.assert_array_equal(g, pen.grad(w, 1.3, *params))


# --------------------------------------------------------------------------- elastic net
def test_elastic_net_reduces_to_l1_and_l2():
    w = np.array([[1.5, -0.25], [0.0, 3.0]])
    for f in ("__call__", "grad"):
        np.testing.assert_array_equal(getattr(elastic_net_penalty, f)(w, 0.4, 1.0),
                                      getattr(l1_penalty, f)(w, 0.4))
        np.testing.assert_array_equal(getattr(elastic_net_penalty, f)(w, 0.4, 0.0),
                                      getattr(l2_penalty, f)(w, 0.4))


def test_elastic_net_endpoints_stay_exact_for_infinite_weights():
    w = np.array([np.inf, 1.0])
    assert float(elastic_net_penalty(w, 1.0, 0.0)) == np.inf  # not 0 * inf = NaN
    assert float(elastic_net_penalty(w, 1.0, 1.0)) == np.inf
    np.testing.assert_array_equal(elastic_net_penalty.grad(w, 1.0, 1.0), [1.0, 1.0])


def test_elastic_net_is_sklearns_objective_penalty():
    # scikit-learn's ElasticNet minimises (sklearn.linear_model.ElasticNet docstring):
    #   1 / (2 n) ||y - X w||^2 + alpha * l1_ratio * ||w||_1
    #                           + 0.5 * alpha * (1 - l1_ratio) * ||w||^2
    rng = np.random.default_rng(4)
    X, y, w = rng.normal(size=(20, 5)), rng.normal(size=20), rng.normal(size=5)
    alpha, l1_ratio = 0.3, 0.6
    n = len(y)
    data = np.sum((y - X @ w) ** 2) / (2 * n)
    sk_objective = (data + alpha * l1_ratio * np.sum(np.abs(w))
                    + 0.5 * alpha * (1 - l1_ratio) * np.sum(w ** 2))
    ours = data + float(elastic_net_penalty(w, alpha, l1_ratio))
    np.testing.assert_allclose(ours, sk_objective, rtol=1e-14)


@pytest.mark.parametrize("l1_ratio", [0.0, 0.5, 1.0])
def test_sklearn_elastic_net_solution_is_stationary_for_our_gradient(l1_ratio):
    # Independent check of the convention: at scikit-learn's fitted coefficients, the
    # gradient of 1/(2n)||y - Xw||^2 plus our penalty gradient vanishes on the nonzero
    # coefficients, and the data gradient is within alpha * l1_ratio on the zero ones (KKT).
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 6))
    y = X @ np.array([2.0, -1.0, 0.0, 0.0, 0.5, 0.0]) + 0.1 * rng.normal(size=60)
    alpha = 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that l1_ratio=0 is slow to converge
        model = linear_model.ElasticNet(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False,
                                        tol=1e-14, max_iter=100_000).fit(X, y)
    w = model.coef_
    data_grad = X.T @ (X @ w - y) / len(y)
    total = data_grad + elastic_net_penalty.grad(w, alpha, l1_ratio)
    nonzero = w != 0
    assert nonzero.any()
    np.testing.assert_allclose(total[nonzero], 0.0, atol=1e-8)
    assert np.all(np.abs(data_grad[~nonzero]) <= alpha * l1_ratio + 1e-8)
    # the same penalty with the L2 part doubled (a wrong convention) is not stationary
    if l1_ratio < 1:
        wrong = data_grad + elastic_net_penalty.grad(w, alpha, l1_ratio) + \
            alpha * (1 - l1_ratio) * w
        assert np.abs(wrong[nonzero]).max() > 1e-3


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kind", PENALTIES)
@pytest.mark.parametrize("strength, error, match", [
    (-1.0, ValueError, r"`strength` must lie in \[0, inf\); got -1\.0"),
    (-1, ValueError, r"`strength`.*got -1"),
    (float("inf"), ValueError, r"`strength`.*got inf"),
    (float("nan"), ValueError, r"`strength`.*got nan"),
    ("0.1", TypeError, r"`strength` must be a real number; got str"),
    (None, TypeError, r"`strength` must be a real number"),
    (True, TypeError, r"`strength` must be a real number; got bool"),
])
def test_bad_strength_is_an_error(kind, strength, error, match):
    pen, params = PENALTIES[kind]
    for method in (pen, pen.grad, pen.value_and_grad):
        with pytest.raises(error, match=match):
            method(np.ones(3), strength, *params)


@pytest.mark.parametrize("l1_ratio, error, match", [
    (1.5, ValueError, r"`l1_ratio` must lie in \[0, 1\]; got 1\.5"),
    (-0.1, ValueError, r"`l1_ratio` must lie in \[0, 1\]; got -0\.1"),
    (float("nan"), ValueError, r"`l1_ratio`.*got nan"),
    ("half", TypeError, r"`l1_ratio` must be a real number"),
])
def test_bad_l1_ratio_is_an_error(l1_ratio, error, match):
    with pytest.raises(error, match=match):
        elastic_net_penalty(np.ones(3), 0.1, l1_ratio)
    with pytest.raises(error, match=match):
        elastic_net_penalty.grad(np.ones(3), 0.1, l1_ratio=l1_ratio)


def test_argument_binding_errors():
    with pytest.raises(TypeError, match="missing the argument `l1_ratio`"):
        elastic_net_penalty(np.ones(3), 0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ratio'"):
        elastic_net_penalty(np.ones(3), 0.1, ratio=0.5)
    with pytest.raises(TypeError, match="positional arguments"):
        l1_penalty(np.ones(3), 0.1, 0.5)
    with pytest.raises(TypeError, match="multiple values for 'l1_ratio'"):
        elastic_net_penalty(np.ones(3), 0.1, 0.5, l1_ratio=0.5)
    # keyword and positional l1_ratio agree
    np.testing.assert_array_equal(elastic_net_penalty(np.ones(3), 0.1, l1_ratio=0.5),
                                  elastic_net_penalty(np.ones(3), 0.1, 0.5))


@pytest.mark.parametrize("kind", PENALTIES)
def test_integer_weights_are_a_type_error_but_integer_lists_are_float64(kind):
    pen, params = PENALTIES[kind]
    with pytest.raises(TypeError, match=r"`w` must have a floating dtype.*got int64"):
        pen(np.array([1, -2, 3]), 0.1, *params)
    with pytest.raises(TypeError, match=r"`w` must have a floating dtype"):
        pen.grad(np.array([1, -2, 3]), 0.1, *params)
    g = pen.grad([1, -2, 3], 0.1, *params)
    assert g.dtype == np.float64
    np.testing.assert_allclose(float(pen([1, -2, 3], 0.1, *params)),
                               ref_value(kind, [1, -2, 3], 0.1, *params), rtol=1e-15)
    with pytest.raises(TypeError, match="`w` must be an array"):
        pen(None, 0.1, *params)


# --------------------------------------------------------------------------- edge values
@pytest.mark.parametrize("kind", PENALTIES)
def test_zero_strength_switches_the_penalty_off_even_for_non_finite_weights(kind):
    pen, params = PENALTIES[kind]
    w = np.array([np.inf, np.nan, -2.0])
    v, g = pen.value_and_grad(w, 0.0, *params)
    assert float(v) == 0.0
    np.testing.assert_array_equal(g, np.zeros(3))


@pytest.mark.parametrize("kind", PENALTIES)
def test_nan_weights_propagate(kind):
    pen, params = PENALTIES[kind]
    v, g = pen.value_and_grad(np.array([np.nan, 1.0]), 0.5, *params)
    assert math.isnan(float(v))
    assert math.isnan(g[0]) and g[1] == pytest.approx(
        0.5 * {"l1": 1.0, "l2": 1.0, "elastic_net": 0.3 + 0.7}[kind])


def test_huge_weights_give_inf_without_warning():
    assert float(l2_penalty(np.array([1e200, 1.0]), 1.0)) == np.inf
    np.testing.assert_array_equal(l2_penalty.grad(np.array([1e200]), 2.0), [2e200])


def test_empty_weights_give_zero():
    v, g = l2_penalty.value_and_grad(np.zeros((0, 3)), 1.0)
    assert float(v) == 0.0 and g.shape == (0, 3)


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("kind", PENALTIES)
def test_same_result_and_array_type_on_every_backend(kind, backend):
    pen, params = PENALTIES[kind]
    w = np.random.default_rng(6).normal(size=(3, 2))
    w[1, 1] = 0.0
    v, g = pen.value_and_grad(backend.asarray(w), 0.25, *params)
    assert backend.is_native(v) and backend.is_native(g)
    assert str(v.dtype).endswith("float64") and tuple(v.shape) == ()
    assert str(g.dtype).endswith("float64") and tuple(g.shape) == (3, 2)
    np.testing.assert_allclose(backend.to_numpy(v), ref_value(kind, w, 0.25, *params),
                               rtol=1e-12)
    rho = params[0] if params else (1.0 if kind == "l1" else 0.0)
    np.testing.assert_allclose(backend.to_numpy(g),
                               0.25 * (rho * np.sign(w) + (1 - rho) * w), rtol=1e-12)


@pytest.mark.parametrize("kind", PENALTIES)
def test_float32_stays_float32_on_every_backend(kind, backend):
    pen, params = PENALTIES[kind]
    w = np.random.default_rng(7).normal(size=5).astype(np.float32)
    v, g = pen.value_and_grad(backend.asarray(w), 0.5, *params)
    assert str(v.dtype).endswith("float32") and str(g.dtype).endswith("float32")
    np.testing.assert_allclose(backend.to_numpy(v), ref_value(kind, w, 0.5, *params),
                               rtol=1e-4)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", PENALTIES)
def test_half_precision_is_accumulated_in_float32(kind, dtype_name):
    torch = pytest.importorskip("torch")
    pen, params = PENALTIES[kind]
    dtype = getattr(torch, dtype_name)
    w = torch.full((4096,), 1 / 3, dtype=dtype)
    v, g = pen.value_and_grad(w, 1.0, *params)
    assert v.dtype == dtype and g.dtype == dtype and g.shape == w.shape
    ref = ref_value(kind, w.double().numpy(), 1.0, *params)
    np.testing.assert_allclose(float(v), ref, rtol=1e-2 if dtype_name == "bfloat16" else 2e-3)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_float16_squares_do_not_overflow(lib):
    # 300^2 = 90000 overflows float16 (max 65504); computed in float32 the value
    # 1e-3 / 2 * 90000 = 45 and the gradient 1e-3 * 300 = 0.3 are representable
    if lib == "torch":
        torch = pytest.importorskip("torch")
        w = torch.tensor([300.0], dtype=torch.float16)
    else:
        w = np.array([300.0], dtype=np.float16)
    v, g = l2_penalty.value_and_grad(w, 1e-3)
    assert str(v.dtype).endswith("float16")
    assert float(v) == pytest.approx(45.0, rel=1e-3)
    assert float(g[0]) == pytest.approx(0.3, rel=1e-3)


def test_dask_stays_lazy():
    da = pytest.importorskip("dask.array")
    w = np.random.default_rng(8).normal(size=(4, 4))
    v, g = l1_penalty.value_and_grad(da.from_array(w, chunks=2), 0.5)
    assert isinstance(v, da.Array) and isinstance(g, da.Array)
    np.testing.assert_allclose(v.compute(), ref_value("l1", w, 0.5), rtol=1e-12)


def test_jax_grad_of_the_value_agrees_with_grad():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    w = jnp.asarray(np.random.default_rng(9).normal(size=6))
    for pen, params in PENALTIES.values():
        auto = jax.grad(lambda v, p=pen, a=params: p(v, 0.8, *a))(w)
        np.testing.assert_allclose(np.asarray(pen.grad(w, 0.8, *params)), np.asarray(auto),
                                   rtol=1e-12)


# --------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("kind", PENALTIES)
def test_metadata(kind):
    pen, _ = PENALTIES[kind]
    assert isinstance(pen, Penalty)
    assert pen.name == f"{kind}_penalty"
    assert r"\lambda" in pen.formula and r"\partial" in pen.gradient_formula
    assert len(pen.when_to_use.split()) > 30 and "\n\n" not in pen.when_to_use
    meta = pen.info()
    assert meta["name"] == pen.name and meta["params"][0] == "strength"
    assert repr(pen).startswith(f"<losskit.{pen.name}(w, strength")
    doc = type(pen).__doc__ or ""
    assert ".. math::" in doc and "References" in doc and ">>> " in doc


def test_module_docstring_explains_structural_risk():
    import losskit.penalties as mod

    assert "structural risk" in mod.__doc__.lower() and "empirical risk" in mod.__doc__
