"""losskit.gradcheck: central differences against analytic gradients, kinks, errors.

Every analytic gradient used here is derived by hand from its function (written out next
to it), or comes from torch.autograd in float64; expected failures are built by breaking
a correct gradient in a known element, so the expected ``worst_index`` is known in
advance. Nothing is compared with numbers produced by losskit itself.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losskit.gradcheck import GradcheckResult, gradcheck

SETTINGS = settings(max_examples=40, deadline=None)


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _x(shape=(3, 4), seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


# ----------------------------------------------------------------------- numpy softmax CE
def np_softmax_ce(z, y):
    """Mean over rows of -log softmax(z)[y], written with NumPy only."""
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return np.mean(lse - z[np.arange(z.shape[0]), y])


def np_softmax_ce_grad(z, y):
    """d/dz of the mean: (softmax(z) - onehot(y)) / N."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return (p - np.eye(z.shape[1])[y]) / z.shape[0]


# ----------------------------------------------------------------------- correct gradients
@pytest.mark.parametrize("fn, grad", [
    (lambda x: np.sum(x ** 3 - 2 * x ** 2 + x), lambda x: 3 * x ** 2 - 4 * x + 1),
    (lambda x: np.sum(np.exp(x)), np.exp),
    (lambda x: np.sum(np.sin(x) * x), lambda x: np.cos(x) * x + np.sin(x)),
    (lambda x: np.sum(x) ** 2, lambda x: 2 * np.sum(x) * np.ones_like(x)),
], ids=["polynomial", "exp", "x_sin_x", "square_of_sum"])
def test_correct_gradients_pass(fn, grad):
    x = _x()
    res = gradcheck(fn, x, grad=grad)
    assert res.ok and bool(res)
    assert res.kinks == 0 and res.failed == 0
    assert res.max_abs_error < 1e-6 and res.max_rel_error < 1e-6
    assert res.analytic.shape == x.shape == res.numeric.shape
    np.testing.assert_allclose(res.numeric, grad(x), rtol=1e-7, atol=1e-8)
    assert len(res.worst_index) == 2


def test_numeric_is_a_central_difference_of_known_accuracy():
    # for f = x^3 the central difference is exactly 3x^2 + h^2 (no higher terms)
    x = np.array([0.5, -1.5, 2.0])
    res = gradcheck(lambda x: np.sum(x ** 3), x, grad=lambda x: 3 * x ** 2, step=1e-3)
    h = 1e-3 * np.maximum(1.0, np.abs(x))
    np.testing.assert_allclose(res.numeric, 3 * x ** 2 + h ** 2, rtol=1e-9)


def test_softmax_cross_entropy_with_integer_labels():
    z = _x((5, 4), seed=1, scale=2.0)
    y = np.array([0, 3, 1, 1, 2])
    res = gradcheck(np_softmax_ce, z, y, grad=np_softmax_ce_grad)
    assert res.ok, str(res)
    # a classic bug: forgetting the 1/N of the mean
    bad = gradcheck(np_softmax_ce, z, y, grad=lambda z, y: np_softmax_ce_grad(z, y) * 5)
    assert not bad.ok and bad.failed == z.size


def test_labels_stay_integers_and_floats_become_float64():
    seen = {}

    def f(z, y, w):
        seen["dtypes"] = (z.dtype, y.dtype, w.dtype)
        return np_softmax_ce(z, y) * np.sum(w)

    z = _x((3, 4)).astype(np.float32)
    y = np.array([0, 2, 1], dtype=np.int32)
    w = np.ones(3, dtype=np.float32)
    res = gradcheck(f, z, y, w, grad=lambda z, y, w: np_softmax_ce_grad(z, y) * np.sum(w))
    assert res.ok
    assert seen["dtypes"] == (np.float64, np.int32, np.float64)
    assert res.analytic.dtype == np.float64 and res.numeric.dtype == np.float64


def test_loss_object_grad_is_used_by_default():
    lk = pytest.importorskip("losskit")
    p, t = _x((4, 3), seed=2), _x((4, 3), seed=3)
    # mse with reduction "mean": gradient 2 (p - t) / p.size, from the definition
    res = gradcheck(lk.mse, p, t)
    assert res.ok
    np.testing.assert_allclose(res.analytic, 2 * (p - t) / p.size, rtol=1e-12)


def test_keyword_arrays_are_converted_and_passed():
    def f(x, *, scale):
        return np.sum(scale * x ** 2)

    def g(x, *, scale):
        return 2 * scale * x

    x = _x((4,))
    scale = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    assert gradcheck(f, x, grad=g, scale=scale).ok
    assert not gradcheck(f, x, grad=lambda x, scale: 2 * x, scale=scale).ok


def test_an_eps_option_reaches_fn():
    # many losses have an `eps` option: it is forwarded, never taken as the step
    seen = []

    def f(x, *, eps):
        seen.append(eps)
        return np.sum(np.sqrt(x ** 2 + eps))

    def g(x, *, eps):
        return x / np.sqrt(x ** 2 + eps)

    x = np.array([0.0, 0.5, -2.0])
    res = gradcheck(f, x, grad=g, eps=0.1)
    assert res.ok and set(seen) == {0.1} and res.step == 1e-6
    # with a wrong eps in the gradient the check must notice
    assert not gradcheck(f, x, grad=lambda x, eps: g(x, eps=1.0), eps=0.1).ok


def test_point_itself_is_not_modified():
    x = _x((2, 3))
    before = x.copy()
    gradcheck(lambda x: np.sum(x ** 2), x, grad=lambda x: 2 * x)
    np.testing.assert_array_equal(x, before)


def test_step_scales_with_magnitude():
    # f ~ 1e13: an absolute step of 1e-6 would drown in rounding (eps*f/h ~ 2e3 >> tol)
    x = np.array([1.0e6, -3.0e6])
    res = gradcheck(lambda x: np.sum(x ** 2), x, grad=lambda x: 2 * x)
    assert res.ok, str(res)


def test_scalar_and_empty_arguments():
    res = gradcheck(lambda x: np.exp(x), 0.7, grad=np.exp)
    assert res.ok and res.worst_index == () and res.analytic.shape == ()
    assert math.isclose(float(res.numeric), math.exp(0.7), rel_tol=1e-8)
    res = gradcheck(lambda x: np.sum(x ** 2), np.zeros((0, 3)), grad=lambda x: 2 * x)
    assert res.ok and res.worst_index is None and res.max_abs_error == 0.0
    assert "nothing to check" in str(res)


def test_float_list_argument():
    res = gradcheck(lambda x: np.sum(np.asarray(x) ** 2), [1.0, -2.0], grad=lambda x: 2 * x)
    assert res.ok


# ----------------------------------------------------------------------- wrong gradients
def test_wrong_element_is_reported_as_worst():
    x = _x((3, 4), seed=4)

    def bad(x):
        g = 3 * x ** 2
        g[1, 2] += 0.1
        return g

    res = gradcheck(lambda x: np.sum(x ** 3), x, grad=bad)
    assert not res.ok and not bool(res)
    assert res.worst_index == (1, 2)
    assert res.failed == 1
    assert math.isclose(res.max_abs_error, 0.1, rel_tol=1e-5)
    assert math.isclose(res.max_rel_error, 0.1 / (3 * x[1, 2] ** 2 + 0.1), rel_tol=1e-4)
    text = str(res)
    assert "FAILED" in text and "(1, 2)" in text and "1 of 12" in text
    assert repr(res).startswith("GradcheckResult(ok=False")


def test_wrong_sign_fails_everywhere():
    x = _x((5,), seed=5) + 3.0  # away from 0, where -exp and exp differ
    res = gradcheck(lambda x: np.sum(np.exp(x)), x, grad=lambda x: -np.exp(x))
    assert not res.ok and res.failed == 5


@pytest.mark.parametrize("error", [2e-6, 1e-4])
def test_small_error_at_a_smooth_minimum_is_not_excused_as_a_kink(error):
    # 100 x^2 at 0: the one-sided slopes at step h are -100h and +100h (and +-6.25h at
    # h/16), so an error of 2e-6 lies between them; but the gap shrinks with the step,
    # as it does for any smooth function, so it is no kink
    res = gradcheck(lambda x: np.sum(100 * x ** 2), np.array([0.0, 1.0]),
                    grad=lambda x: 200 * x + error)
    assert not res.ok and res.kinks == 0 and res.worst_index == (0,)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_analytic_gradient_fails(bad_value):
    x = _x((4,), seed=6)

    def g(x):
        out = np.cos(x)
        out[2] = bad_value
        return out

    res = gradcheck(lambda x: np.sum(np.sin(x)), x, grad=g)
    assert not res.ok and res.worst_index == (2,)
    assert res.max_abs_error == math.inf


def test_step_leaving_the_domain_fails_but_smaller_step_passes():
    x = np.array([1e-7, 1.0])  # sqrt(x - h) is NaN for h = 1e-6
    with np.errstate(invalid="ignore"):
        res = gradcheck(lambda x: np.sum(np.sqrt(x)), x, grad=lambda x: 0.5 / np.sqrt(x))
        assert not res.ok and res.worst_index == (0,)
        ok = gradcheck(lambda x: np.sum(np.sqrt(x)), x, grad=lambda x: 0.5 / np.sqrt(x),
                       step=1e-10, rtol=1e-4)
    assert ok.ok


# ----------------------------------------------------------------------- kinks
def test_abs_at_zero_accepts_subgradient_zero():
    x = np.array([0.0, 1.5, -2.0])
    res = gradcheck(lambda x: np.sum(np.abs(x)), x, grad=np.sign)
    assert res.ok


@pytest.mark.parametrize("sub", [-1.0, -0.3, 1.0])
def test_abs_at_zero_accepts_any_subgradient(sub):
    x = np.array([0.0, 1.5, -2.0])
    res = gradcheck(lambda x: np.sum(np.abs(x)), x,
                    grad=lambda x: np.where(x == 0, sub, np.sign(x)))
    assert res.ok, str(res)
    assert res.kinks == 1


def test_abs_at_zero_rejects_gradient_outside_the_subdifferential():
    x = np.array([1.5, 0.0, -2.0])
    res = gradcheck(lambda x: np.sum(np.abs(x)), x,
                    grad=lambda x: np.where(x == 0, 5.0, np.sign(x)))
    assert not res.ok
    assert res.worst_index == (1,) and res.failed == 1 and res.kinks == 0


def test_relu_and_hinge_at_their_kinks():
    x = np.array([0.0, 2.0, -1.0])
    relu = lambda x: np.sum(np.maximum(x, 0.0))  # noqa: E731
    for sub in (0.0, 1.0):
        res = gradcheck(relu, x, grad=lambda x: np.where(x > 0, 1.0, np.where(x == 0, sub, 0.0)))
        assert res.ok and res.kinks == 1
    assert not gradcheck(relu, x, grad=lambda x: np.where(x >= 0, 1.5, 0.0)).ok
    # hinge max(0, 1 - y s) with s = 1, y = +1 sits exactly on the margin:
    # the subdifferential in s is [-1, 0]
    s, y = np.array([1.0, 0.2, 3.0]), np.array([1.0, 1.0, -1.0])

    def hinge(s, y):
        return np.sum(np.maximum(0.0, 1.0 - y * s))

    def hinge_grad(s, y):
        return np.where(1.0 - y * s > 0, -y, 0.0)

    res = gradcheck(hinge, s, y, grad=hinge_grad)
    assert res.ok and res.kinks == 1


@pytest.mark.parametrize("delta", [3e-9, 4e-8, 5e-8, 6e-8, 3e-7, 9e-7])
def test_kink_just_beside_the_point_is_accepted(delta):
    # |x| at x = +-delta, with the kink inside the step h = 1e-6: the true derivative
    # sign(x) must pass wherever the kink falls (including h/16 and h/256 boundaries)
    for x0 in (delta, -delta):
        res = gradcheck(lambda x: np.sum(np.abs(x)), np.array([x0, 2.0]), grad=np.sign)
        assert res.ok, (x0, str(res))
        assert res.kinks == 1


def test_kink_count_is_zero_for_smooth_functions():
    x = _x((6,), seed=7)
    res = gradcheck(lambda x: np.sum(np.log1p(np.exp(x))), x,
                    grad=lambda x: 1 / (1 + np.exp(-x)))
    assert res.ok and res.kinks == 0


# ----------------------------------------------------------------------- array outputs
def test_array_output_is_summed():
    x = _x((3, 2), seed=8)
    assert gradcheck(lambda x: x ** 2, x, grad=lambda x: 2 * x).ok  # gradient of the sum
    assert not gradcheck(lambda x: x ** 2, x, grad=lambda x: 2 * x / x.size).ok  # of mean


# ----------------------------------------------------------------------- other libraries
def test_torch_tensor_inputs():
    torch = pytest.importorskip("torch")
    lk = pytest.importorskip("losskit")
    p = torch.randn(4, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    t = torch.randn(4, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    res = gradcheck(lk.mse, p, t, reduction="sum")
    assert res.ok
    assert isinstance(res.analytic, np.ndarray) and res.analytic.dtype == np.float64
    # float64 of the float32 values: the gradient of sum (p - t)^2 is 2 (p - t)
    np.testing.assert_allclose(res.analytic, 2 * (p.double() - t.double()).numpy(),
                               rtol=1e-12)
    x = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: np.sum(np.sin(x)), x, grad=np.cos).ok


def test_jax_array_inputs():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.asarray([0.3, -1.2, 2.0])
    res = gradcheck(lambda x: np.sum(np.tanh(x)), x, grad=lambda x: 1 - np.tanh(x) ** 2)
    assert res.ok


def test_numeric_matches_torch_autograd_in_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    a = rng.normal(size=(3, 4))
    x = rng.normal(size=4)

    def f_np(x):  # vector output y = A tanh(x) + x^2 (summed by gradcheck)
        return a @ np.tanh(x) + np.sum(x ** 2) * np.ones(3)

    def f_torch(xt):
        return torch.from_numpy(a) @ torch.tanh(xt) + torch.sum(xt ** 2) * torch.ones(
            3, dtype=torch.float64)

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (g_autograd,) = torch.autograd.grad(f_torch(xt).sum(), xt)
    jac = torch.autograd.functional.jacobian(f_torch, xt.detach())
    res = gradcheck(f_np, x, grad=lambda x: g_autograd.numpy())
    assert res.ok
    np.testing.assert_allclose(res.numeric, g_autograd.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.numeric, jac.sum(dim=0).numpy(), rtol=1e-8, atol=1e-10)
    # and against a deliberately wrong "autograd" answer: torch of f without x^2
    (g_wrong,) = torch.autograd.grad(
        (torch.from_numpy(a) @ torch.tanh(xt)).sum(), xt)
    assert not gradcheck(f_np, x, grad=lambda x: g_wrong.numpy()).ok


# ----------------------------------------------------------------------- wrt
def test_wrt_second_argument_with_grad():
    a, b = _x((3,), seed=10), _x((3,), seed=11)

    def f(a, b):
        return np.sum(a * b ** 2)

    assert gradcheck(f, a, b, wrt=1, grad=lambda a, b: 2 * a * b).ok
    assert gradcheck(f, a, b, wrt=-1, grad=lambda a, b: 2 * a * b).ok
    assert gradcheck(f, a, b, wrt=0, grad=lambda a, b: b ** 2).ok
    bad = gradcheck(f, a, b, wrt=1, grad=lambda a, b: a * b)
    assert not bad.ok


def test_wrt_nonzero_without_grad_is_an_error():
    lk = pytest.importorskip("losskit")
    p, t = _x((2, 2)), _x((2, 2), seed=1)
    with pytest.raises(ValueError, match=r"wrt=1.*grad="):
        gradcheck(lk.mse, p, t, wrt=1)


# ----------------------------------------------------------------------- result object
def test_result_is_frozen_and_readable():
    res = gradcheck(lambda x: np.sum(x ** 2), np.array([1.0, 2.0]), grad=lambda x: 2 * x)
    assert isinstance(res, GradcheckResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.ok = False
    text = str(res)
    assert text.startswith("gradcheck passed") and "max abs error" in text
    assert "rtol=1e-05" in text
    assert "ok=True" in repr(res)


# ----------------------------------------------------------------------- errors
def _sq(x):
    return np.sum(x ** 2)


def _sq_grad(x):
    return 2 * x


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, wrt=1), IndexError, "`wrt`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, wrt=-2), IndexError, "`wrt`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, wrt=0.0), TypeError, "`wrt`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, wrt=True), TypeError, "`wrt`"),
    (lambda: gradcheck(_sq, np.ones(2, dtype=int), grad=_sq_grad), TypeError, "floating"),
    (lambda: gradcheck(_sq, [1, 2], grad=_sq_grad), TypeError, "floating"),
    (lambda: gradcheck(_sq, 3, grad=_sq_grad), TypeError, "floating"),
    (lambda: gradcheck(_sq, np.array([True]), grad=_sq_grad), TypeError, "floating"),
    (lambda: gradcheck(_sq, "1.0", grad=_sq_grad), TypeError, "float"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, step=0.0), ValueError, "`step`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, step=-1e-6), ValueError, "`step`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, step=math.nan), ValueError, "`step`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, step=math.inf), ValueError, "`step`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, rtol=-1.0), ValueError, "`rtol`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=_sq_grad, atol=-1.0), ValueError, "`atol`"),
    (lambda: gradcheck("f", np.ones(2), grad=_sq_grad), TypeError, "`fn`"),
    (lambda: gradcheck(_sq, np.ones(2), grad=3), TypeError, "`grad`"),
    (lambda: gradcheck(_sq, np.ones(2)), TypeError, r"\.grad.*grad="),
    (lambda: gradcheck(_sq, grad=_sq_grad), ValueError, "positional"),
    (lambda: gradcheck(_sq, np.ones(3), grad=lambda x: np.ones(2)), ValueError, "shape"),
    (lambda: gradcheck(_sq, np.ones(3), grad=lambda x: (x, x)), TypeError, "gradient"),
    (lambda: gradcheck(lambda x: (x, x), np.ones(3), grad=_sq_grad), TypeError, "fn"),
    (lambda: gradcheck(lambda x: np.sum(np.log(x)), np.array([-1.0, 2.0]),
                       grad=lambda x: 1 / x), ValueError, "finite"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_errors(call, exc, pattern):
    with np.errstate(invalid="ignore"), pytest.raises(exc, match=pattern):
        call()


# ----------------------------------------------------------------------- properties
@SETTINGS
@given(data=st.data(), n=st.integers(1, 5))
def test_quadratic_forms_pass_with_their_exact_gradient(data, n):
    elems = st.floats(-3, 3, allow_nan=False, allow_subnormal=False)
    a = data.draw(arrays(np.float64, (n, n), elements=elems))
    b = data.draw(arrays(np.float64, (n,), elements=elems))
    x = data.draw(arrays(np.float64, (n,), elements=elems))

    def f(x):
        return 0.5 * x @ a @ x + b @ x

    def g(x):  # d/dx of x^T A x / 2 is (A + A^T) x / 2
        return 0.5 * (a + a.T) @ x + b

    res = gradcheck(f, x, grad=g)
    assert res.ok, str(res)
    assert res.kinks == 0


@SETTINGS
@given(data=st.data(), n=st.integers(1, 5))
def test_a_broken_element_is_found(data, n):
    elems = st.floats(-3, 3, allow_nan=False, allow_subnormal=False)
    a = data.draw(arrays(np.float64, (n, n), elements=elems))
    x = data.draw(arrays(np.float64, (n,), elements=elems))
    k = data.draw(st.integers(0, n - 1))
    err = data.draw(st.sampled_from([-1.0, 1.0])) * data.draw(st.floats(1e-2, 10.0))

    def g(x):
        out = 0.5 * (a + a.T) @ x
        out[k] += err
        return out

    res = gradcheck(lambda x: 0.5 * x @ a @ x, x, grad=g)
    assert not res.ok
    assert res.worst_index == (k,) and res.failed == 1
