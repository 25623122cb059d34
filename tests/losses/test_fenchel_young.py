"""The Fenchel-Young losses: ``lk.sparsemax``, ``sparsemax_loss``,
``multiclass_sparsemax_loss`` and ``make_fenchel_young_loss``.

Values and gradients against the references also run in the catalog suites
(``cases_fenchel_young.py``). Expected numbers here come from Optax (values, and
``jax.grad`` of its losses for the gradients), from an exhaustive search over supports
(the projection onto the simplex without a sort), from the definitions worked by hand
(comments give the derivation) or from finite differences; never from losskit.
Comparisons between two losskit functions are identities the documentation states.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import losskit as lk
from conftest import BACKENDS
from engines import fused, generic
from losskit.core import dispatch
from losskit.kernels import fast_paths as _fast

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")
torch = pytest.importorskip("torch")

INF, NAN = np.inf, np.nan
SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-20, 20, allow_nan=False, allow_subnormal=False)
MSL = lk.multiclass_sparsemax_loss
BSL = lk.sparsemax_loss

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the test extra
    HAVE_NUMBA = False


@pytest.fixture(autouse=True)
def _no_runtime_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# --------------------------------------------------------------------------- references
def optax_projection(z):
    """optax.projections.projection_simplex on every row (last axis)."""
    z = np.asarray(z)
    rows = jnp.asarray(z.reshape(-1, z.shape[-1]))
    return np.asarray(jax.vmap(optax.projections.projection_simplex)(rows)).reshape(z.shape)


def sorted_projection(z):
    """Martins and Astudillo's algorithm 1 on every row (last axis), in NumPy: sort the
    scores, find the support size k(z) = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)}, then
    tau = (sum of the k largest - 1) / k. (The hypothesis properties use it: optax's
    projection compiles once per shape, which hypothesis varies.)"""
    z = np.asarray(z, dtype=np.float64)
    zs = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    cs = np.cumsum(zs, axis=-1)
    kz = np.sum(1 + k * zs > cs, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cs, kz - 1, axis=-1) - 1) / kz
    return np.maximum(z - tau, 0.0)


def brute_force_projection(x):
    """The projection of one row onto the simplex by trying every support S: on S,
    p = x - tau with tau = (sum_S x - 1) / |S|, 0 elsewhere; the feasible candidate
    (p >= 0) closest to x is the projection (no sort, no QP solver)."""
    k = len(x)
    best, best_d = None, INF
    for r in range(1, k + 1):
        for s in itertools.combinations(range(k), r):
            s = list(s)
            tau = (x[s].sum() - 1.0) / len(s)
            p = np.zeros(k)
            p[s] = x[s] - tau
            if (p >= -1e-12).all():
                d = np.sum((p - x) ** 2)
                if d < best_d:
                    best, best_d = p, d
    return best


def optax_multiclass(z, y):
    """(value per row, jax.grad of their sum) of optax.losses.multiclass_sparsemax_loss."""
    zj, yj = jnp.asarray(z), jnp.asarray(y)
    v = optax.losses.multiclass_sparsemax_loss(zj, yj)
    g = jax.grad(lambda s: optax.losses.multiclass_sparsemax_loss(s, yj).sum())(zj)
    return np.asarray(v), np.asarray(g)


def optax_binary(z, t):
    zj, tj = jnp.asarray(z), jnp.asarray(t)
    v = optax.losses.sparsemax_loss(zj, tj)
    g = jax.grad(lambda s: optax.losses.sparsemax_loss(s, tj).sum())(zj)
    return np.asarray(v), np.asarray(g)


def optax_sparsemax_fy(z, t):
    """The sparsemax Fenchel-Young loss of distributions t: Optax's
    make_fenchel_young_loss of the conjugate <theta, p> - |p|^2 / 2 (p its
    projection_simplex), plus Omega(t) = |t|^2 / 2; value per row and jax.grad."""
    def conjugate(theta):
        p = optax.projections.projection_simplex(theta)
        return jnp.dot(theta, p) - 0.5 * jnp.dot(p, p)

    fy = optax.losses.make_fenchel_young_loss(max_fun=conjugate)
    tj = jnp.asarray(t)

    def f(s):
        return fy(s, tj) + 0.5 * jnp.sum(tj * tj, axis=-1)

    zj = jnp.asarray(z)
    return np.asarray(f(zj)), np.asarray(jax.grad(lambda s: f(s).sum())(zj))


# ============================================================================ sparsemax
@pytest.mark.parametrize("k", [1, 2, 3, 7, 50])
def test_sparsemax_equals_optax_projection(k):
    z = np.random.default_rng(k).normal(scale=2.0, size=(40, k))
    np.testing.assert_allclose(lk.sparsemax(z), optax_projection(z), rtol=1e-12, atol=1e-15)


def test_sparsemax_equals_the_brute_force_projection():
    rng = np.random.default_rng(0)
    for _ in range(60):
        k = int(rng.integers(1, 7))
        x = rng.normal(scale=rng.choice([0.1, 1.0, 5.0]), size=k)
        np.testing.assert_allclose(lk.sparsemax(x), brute_force_projection(x),
                                   rtol=1e-12, atol=1e-14)
        # the two references of this file agree
        np.testing.assert_allclose(sorted_projection(x), brute_force_projection(x),
                                   rtol=1e-12, atol=1e-14)


def test_sparsemax_worked_examples():
    # (1, 0.5, -1): support {0, 1}, tau = (1.5 - 1) / 2 = 0.25
    np.testing.assert_allclose(lk.sparsemax(np.array([1.0, 0.5, -1.0])), [0.75, 0.25, 0.0])
    # ties share the mass; a lead of 1 or more takes all of it
    np.testing.assert_array_equal(lk.sparsemax(np.array([2.0, 2.0, 2.0, 2.0])), [0.25] * 4)
    np.testing.assert_array_equal(lk.sparsemax(np.array([1.0, 0.0, -5.0])), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(lk.sparsemax(np.array([3.0])), [1.0])


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_sparsemax_axis(axis):
    z = np.random.default_rng(1).normal(size=(3, 4, 5))
    expected = np.moveaxis(optax_projection(np.moveaxis(z, axis, -1)), -1, axis)
    np.testing.assert_allclose(lk.sparsemax(z, axis=axis), expected, rtol=1e-12, atol=1e-15)


def test_sparsemax_edges():
    # huge scores keep their precision: the row is shifted by its maximum first
    np.testing.assert_array_equal(lk.sparsemax(np.array([1e300, -1e300])), [1.0, 0.0])
    np.testing.assert_allclose(lk.sparsemax(np.array([1e8 + 0.5, 1e8])), [0.75, 0.25])
    # -inf is a masked entry: the others are projected alone
    np.testing.assert_allclose(lk.sparsemax(np.array([0.3, -INF, 0.1])), [0.6, 0.0, 0.4])
    # no finite entry, a +inf or a NaN entry: no projection (as softmax)
    for row in ([-INF, -INF], [INF, 0.0], [NAN, 1.0], [INF, INF]):
        assert np.isnan(lk.sparsemax(np.array(row))).all(), row
    # a bad row does not touch its neighbours
    out = lk.sparsemax(np.array([[NAN, 0.0], [1.0, 0.0]]))
    assert np.isnan(out[0]).all() and out[1].tolist() == [1.0, 0.0]


def test_sparsemax_dtypes_and_errors():
    z32 = np.array([1.0, 0.5, -1.0], dtype=np.float32)
    out = lk.sparsemax(z32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.75, 0.25, 0.0], rtol=1e-6)
    half = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float16)
    assert lk.sparsemax(half).dtype == torch.float16
    assert lk.sparsemax([1.0, 0.0]).tolist() == [1.0, 0.0]  # a list: NumPy, float64
    with pytest.raises(TypeError, match="floating dtype"):
        lk.sparsemax(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-2, 1\]"):
        lk.sparsemax(np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match="0-d"):
        lk.sparsemax(np.float64(1.0))


@pytest.mark.parametrize("backend", BACKENDS, ids=[b.name for b in BACKENDS])
def test_sparsemax_on_every_backend(backend):
    z = np.random.default_rng(2).normal(size=(5, 6))
    out = lk.sparsemax(backend.asarray(z))
    assert backend.is_native(out)
    np.testing.assert_allclose(backend.to_numpy(out), optax_projection(z), rtol=1e-12,
                               atol=1e-15)


def test_sparsemax_under_jit():
    z = np.random.default_rng(3).normal(size=(4, 5))
    out = jax.jit(lk.sparsemax)(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(out), optax_projection(z), rtol=1e-12, atol=1e-15)


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 8)), elements=finite),
       st.floats(-100, 100))
def test_sparsemax_is_a_distribution_invariant_to_shifts(z, c):
    p = lk.sparsemax(z)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(lk.sparsemax(z + c), p, atol=1e-11)
    # order preserving, and a point of the simplex is its own projection
    assert np.all(np.diff(np.take_along_axis(p, np.argsort(z, axis=-1), -1), axis=-1) >= 0)
    np.testing.assert_allclose(lk.sparsemax(p), p, atol=1e-12)


# ============================================================================ K classes
@pytest.mark.parametrize("scale", [1e-3, 1.0, 3.0, 1e3])
@pytest.mark.parametrize("k", [2, 5, 30])
def test_multiclass_equals_optax(k, scale):
    rng = np.random.default_rng(k)
    z = rng.normal(scale=scale, size=(50, k))
    y = rng.integers(0, k, 50)
    ref_v, ref_g = optax_multiclass(z, y)
    v, g = MSL.value_and_grad(z, y, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-12 * max(scale, 1.0))
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-12)
    v0, g0 = generic(MSL, z, y, reduction="none")
    np.testing.assert_allclose(v0, ref_v, rtol=1e-10, atol=1e-12 * max(scale, 1.0))
    np.testing.assert_allclose(g0, ref_g, rtol=1e-10, atol=1e-12)


def test_multiclass_ties_equal_optax():
    z = np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 2.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0],
                  [0.5, 0.5, -0.5, -0.5]])
    y = np.array([0, 3, 2, 1])
    ref_v, ref_g = optax_multiclass(z, y)
    v, g = MSL.value_and_grad(z, y, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g, ref_g, rtol=1e-14, atol=1e-15)


def test_multiclass_martins_astudillo_closed_form():
    # eq. 18: -z_y + 1/2 sum_{j in S} (z_j^2 - tau^2) + 1/2, tau from the brute-force support
    rng = np.random.default_rng(5)
    z = rng.normal(size=(20, 5))
    y = rng.integers(0, 5, 20)
    expected = []
    for row, label in zip(z, y):
        p = brute_force_projection(row)
        s = p > 0
        tau = (row[s].sum() - 1.0) / s.sum()
        expected.append(-row[label] + 0.5 * np.sum(row[s] ** 2 - tau ** 2) + 0.5)
    np.testing.assert_allclose(MSL(z, y, reduction="none"), expected, rtol=1e-12)


def test_multiclass_distribution_targets_equal_optax_fenchel_young():
    rng = np.random.default_rng(6)
    z = rng.normal(scale=2.0, size=(30, 6))
    t = rng.dirichlet(np.ones(6) * 0.5, 30)
    t[0] = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    ref_v, ref_g = optax_sparsemax_fy(z, t)
    for dispatch_on in (True, False):
        v, g = (MSL.value_and_grad(z, t, reduction="none") if dispatch_on
                else generic(MSL, z, t, reduction="none"))
        np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-13)
    # one-hot rows are the integer labels
    np.testing.assert_allclose(MSL(z[:1], np.array([1]), reduction="none"), v[:1], rtol=1e-14)


def test_multiclass_is_zero_past_the_margin_and_precise_near_it():
    # a lead of 1 or more: p = e_y, loss and gradient exactly 0
    z = np.array([[3.0, 2.0, -7.0], [-1.0, 5.0, 4.0]])
    v, g = MSL.value_and_grad(z, np.array([0, 1]), reduction="none")
    assert v.tolist() == [0.0, 0.0] and not g.any()
    # lead a = 1 - e: tau = -e/2, p = (1 - e/2, e/2), loss = 2 (e/2)^2 / 2 = e^2 / 4. The
    # threshold rounds 1 + a (relative error ~eps / e in p's small entries, as every
    # sparsemax); the loss adds no cancellation of its own: Optax's textbook form
    # 1/2 (1 - |p|^2) loses eps / e^2 (4e-4 relative at e = 1e-6)
    for a, rtol in ((1.0 - 1e-3, 1e-12), (1.0 - 1e-6, 1e-9), (1.0 - 1e-9, 1e-6)):
        e = 1.0 - a  # exact (Sterbenz)
        z = np.array([[a, 0.0]])
        for fn in (MSL, lambda *x: generic(MSL, *x, want="value")):
            np.testing.assert_allclose(fn(z, np.array([0])), e * e / 4, rtol=rtol)
        np.testing.assert_allclose(MSL.grad(z, np.array([0])), [[-e / 2, e / 2]], rtol=rtol)


def test_multiclass_infinite_and_nan_scores():
    # -inf on another class: a masked class, the same loss as without it
    z = np.array([[1.0, -INF, 0.5, -1.0]])
    v, g = MSL.value_and_grad(z, np.array([0]))
    v3, g3 = MSL.value_and_grad(z[:, [0, 2, 3]], np.array([0]))
    assert v == v3 and g[0, 1] == 0.0 and (g[:, [0, 2, 3]] == g3).all()
    # -inf on the true class: inf (no lead is enough), the gradient p - e_y stays finite
    v, g = MSL.value_and_grad(np.array([[-INF, 1.0, 0.5]]), np.array([0]))
    assert v == INF
    np.testing.assert_allclose(g, [[-1.0, 0.75, 0.25]])
    # a row without projection: NaN value and gradient; ignored, it contributes nothing
    for row in ([-INF, -INF, -INF], [INF, 0.0, 0.0], [NAN, 0.0, 1.0]):
        z = np.array([row, [2.0, 0.0, 0.0]])
        v, g = MSL.value_and_grad(z, np.array([0, 0]), reduction="none")
        assert np.isnan(v[0]) and np.isnan(g[0]).all() and v[1] == 0.0, row
        v, g = MSL.value_and_grad(z, np.array([-1, 1]), ignore_index=-1)
        # the second row alone: p = e_0, label 1: loss 1/2 (1 + 1) + (tau - z_1) = 1 + 1
        assert v == 2.0 and not g[0].any()
    # huge scores: finite, shifted by the row's maximum
    v = MSL(np.array([[1e300, -1e300]]), np.array([1]), reduction="none")
    np.testing.assert_allclose(v, [2e300])
    assert MSL(np.array([[1e300, -1e300]]), np.array([0])) == 0.0


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_multiclass_float32(dt):
    rng = np.random.default_rng(8)
    z = rng.normal(size=(16, 7))
    y = rng.integers(0, 7, 16)
    ref_v, ref_g = optax_multiclass(z, y)
    v, g = MSL.value_and_grad(z.astype(dt), y)
    assert v.dtype == dt and g.dtype == dt
    tol = 1e-5 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(v, ref_v.mean(), rtol=tol)
    np.testing.assert_allclose(g, ref_g / 16, rtol=tol, atol=tol / 10)


@pytest.mark.parametrize("target", ["labels", "soft"])
def test_multiclass_finite_differences(target):
    rng = np.random.default_rng(9)
    z = rng.normal(scale=2.0, size=(8, 5))
    t = rng.integers(0, 5, 8) if target == "labels" else rng.dirichlet(np.ones(5), 8)
    for reduction in ("none", "sum", "mean"):
        assert lk.gradcheck(MSL, z, t, reduction=reduction).ok


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 7)), elements=finite),
       st.data())
def test_multiclass_fenchel_young_properties(z, data):
    n, k = z.shape
    y = data.draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    v, g = MSL.value_and_grad(z, y, reduction="none")
    p = sorted_projection(z)
    onehot = np.eye(k)[y]
    # the gradient is the prediction minus the target; rows sum to 0
    np.testing.assert_allclose(g, p - onehot, atol=1e-12)
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-12)
    # non-negative, and 0 exactly when sparsemax(z) is the one-hot target
    assert (v >= 0).all()
    at_target = np.abs(p - onehot).max(-1) < 1e-12
    assert np.all(v[at_target] == 0.0)
    assert np.all(v[~at_target] > 0.0)
    # invariant to adding a constant to a row
    c = data.draw(st.floats(-50, 50))
    np.testing.assert_allclose(MSL(z + c, y, reduction="none"), v, atol=1e-10)


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 6)), elements=finite),
       st.data())
def test_multiclass_distribution_target_properties(z, data):
    n, k = z.shape
    w = data.draw(arrays(np.float64, (n, k), elements=st.floats(0.0, 5.0)))
    w[:, 0] += 0.1
    t = w / w.sum(-1, keepdims=True)
    v, g = MSL.value_and_grad(z, t, reduction="none")
    assert (v >= -1e-15).all()
    np.testing.assert_allclose(g, sorted_projection(z) - t, atol=1e-12)
    # at its own prediction the loss is 0
    p = lk.sparsemax(z)
    np.testing.assert_allclose(MSL(z, p / p.sum(-1, keepdims=True), reduction="none"), 0.0,
                               atol=1e-12)


def test_multiclass_errors():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="sum to 1"):
        MSL(z, np.full((3, 4), 0.3))
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        MSL(z, np.array([[1.5, -0.5, 0, 0]] * 3))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\]"):
        MSL(z, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="class_weight"):
        MSL(z, np.array([0, 1, 2]), class_weight=np.ones(4))
    with pytest.raises(ValueError, match="`ignore_index` applies to integer class labels"):
        MSL(z, np.full((3, 4), 0.25), ignore_index=-1)
    with pytest.raises(TypeError, match="floating dtype"):
        MSL(np.zeros((3, 4), dtype=int), np.array([0, 1, 2]))


# ---------------------------------------------------------------------- the row kernel
@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(_fast, "USE_NUMBA", request.param == "numba")
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 1 << 17)
    return request.param


def _close(a, b, dt):
    tol = 2e-5 if np.dtype(dt) == np.float32 else 1e-11
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["labels", "ignore", "soft"])
def test_row_kernel_equals_generic(engine, dt, target):
    rng = np.random.default_rng(11)
    z = rng.normal(scale=3.0, size=(12, 9)).astype(dt)
    z[1, 0] = -INF  # a masked class
    z[4, :3] = 1.5  # ties
    kw = {}
    if target == "soft":
        t = rng.dirichlet(np.ones(9) * 0.5, 12).astype(dt)
    else:
        t = rng.integers(0, 9, 12)
        if target == "ignore":
            t[[2, 5]] = -100
            kw["ignore_index"] = -100
    sw = rng.uniform(0.0, 2.0, 12)
    for reduction in ("none", "sum", "mean", "batchmean"):
        for w in (None, sw):
            v, g = fused(MSL, z, t, engine=engine, reduction=reduction, sample_weight=w, **kw)
            v0, g0 = generic(MSL, z, t, reduction=reduction, sample_weight=w, **kw)
            assert g.dtype == dt and np.asarray(v).dtype == dt
            _close(v, v0, dt)
            _close(g, g0, dt)


def test_row_kernel_long_rows(engine):
    # spread-out scores (few candidates within 1 of the maximum), scores all within 1 of
    # each other (every entry a candidate: the most fixed-point passes), 2^j and log gaps
    rng = np.random.default_rng(12)
    z = np.stack([-(2.0 ** np.arange(1000)), rng.normal(scale=3.0, size=1000),
                  rng.normal(scale=1e-3, size=1000), -np.log1p(np.arange(1000.0)),
                  -np.linspace(0.0, 0.99, 1000) ** 3])
    y = np.array([0, 5, 7, 0, 999])
    v, g = fused(MSL, z, y, engine=engine, reduction="none")
    v0, g0 = generic(MSL, z, y, reduction="none")
    ref_v, ref_g = optax_multiclass(z, y)
    np.testing.assert_allclose(v, v0, rtol=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(v, ref_v, rtol=1e-10)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14)


def test_row_kernel_declines_rows_without_projection(engine):
    # NaN, +inf or only -inf: the generic path answers (NaN rows), the kernel declines
    z = np.array([[NAN, 0.0, 1.0], [0.5, 0.0, 0.0]])
    y = np.array([0, 1])
    v, g = fused(MSL, z, y, engine="numba", answered=False, reduction="none") \
        if engine == "numba" else MSL.value_and_grad(z, y, reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all() and np.isfinite(v[1])
    # invalid targets fall back to the generic error
    with pytest.raises(ValueError, match="sum to 1"):
        MSL(np.zeros((2, 3)), np.full((2, 3), 0.5))


def test_row_kernel_out_and_readonly(engine):
    rng = np.random.default_rng(13)
    z = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, 6)
    z.setflags(write=False)
    ref = generic(MSL, z, y, want="grad")
    out = np.empty_like(z)
    assert MSL.grad(z, y, out=out) is out
    _close(out, ref, np.float64)
    z2 = z.copy()
    MSL.grad(z2, y, out=z2)  # out is the input: read first, then overwritten
    _close(z2, ref, np.float64)


def test_parallel_build_equals_generic(monkeypatch):
    if not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(_fast, "USE_NUMBA", True)
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 1)
    rng = np.random.default_rng(14)
    z = rng.normal(size=(300, 17))
    y = rng.integers(0, 17, 300)
    v, g = fused(MSL, z, y, engine="numba")
    v0, g0 = generic(MSL, z, y)
    _close(v, v0, np.float64)
    _close(g, g0, np.float64)


# ============================================================================ binary
def test_binary_equals_optax_on_a_grid():
    z = np.array([-1e300, -5.0, -1.0 - 1e-12, -1.0, -0.999, -0.3, 0.0, 0.4, 0.999, 1.0,
                  1.0 + 1e-12, 2.5, 1e300])
    for label in (0.0, 1.0):
        t = np.full_like(z, label)
        ref_v, ref_g = optax_binary(z, t)
        for fn in (lambda *a: BSL.value_and_grad(*a, reduction="none"),
                   lambda *a: generic(BSL, *a, reduction="none")):
            v, g = fn(z, t)
            np.testing.assert_allclose(v, ref_v, rtol=1e-13, atol=0)
            np.testing.assert_allclose(g, ref_g, rtol=1e-13, atol=0)


def test_binary_infinite_and_nan_scores():
    z = np.array([-INF, INF, -INF, INF, NAN])
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    v, g = BSL.value_and_grad(z, t, reduction="none")
    # right side: 0, no gradient; wrong side: inf with gradient -1 / +1 (sparse plus is
    # linear there, as optax's jnp.where picks x); NaN propagates
    assert v[:4].tolist() == [0.0, 0.0, INF, INF] and g[:4].tolist() == [0.0, 0.0, -1.0, 1.0]
    assert np.isnan(v[4]) and np.isnan(g[4])
    # Optax's values agree; its jax.grad is NaN there (the untaken (x + 1)^2 / 4 branch
    # of its jnp.where), so the gradients are the limits written above
    np.testing.assert_array_equal(v[:4], optax_binary(z[:4], t[:4])[0])


def test_binary_is_precise_near_the_margin():
    # t = 1, z = 1 - e: (1 - z)^2 / 4 = e^2 / 4 with e exact; gradient -e / 2
    for e in (1e-4, 1e-8, 1e-12):
        z = np.array([1.0 - e])
        e = 1.0 - z[0]
        for fn in (lambda *a: BSL.value_and_grad(*a, reduction="none"),
                   lambda *a: generic(BSL, *a, reduction="none")):
            v, g = fn(z, np.ones(1))
            np.testing.assert_allclose(v, e * e / 4, rtol=1e-12)
            np.testing.assert_allclose(g, -e / 2, rtol=1e-12)


def test_binary_soft_targets_equal_the_sparsemax_fenchel_young_loss_of_two_scores():
    # the scores (z, 0) and the distribution (t, 1 - t), through Optax's projection
    rng = np.random.default_rng(15)
    z = rng.normal(scale=2.0, size=40)
    t = rng.random(40)
    t[:3] = [0.0, 1.0, 0.5]
    ref_v, ref_g = optax_sparsemax_fy(np.stack([z, np.zeros_like(z)], -1),
                                      np.stack([t, 1.0 - t], -1))
    v, g = BSL.value_and_grad(z, t, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g, ref_g[:, 0], rtol=1e-10, atol=1e-13)


@SETTINGS
@given(arrays(np.float64, st.integers(1, 20), elements=finite), st.data())
def test_binary_properties(z, data):
    t = data.draw(arrays(np.float64, z.shape, elements=st.floats(0.0, 1.0)))
    v, g = BSL.value_and_grad(z, t, reduction="none")
    p = np.clip((z + 1) / 2, 0, 1)
    assert (v >= 0).all()
    np.testing.assert_allclose(g, p - t, atol=1e-15)
    # zero at its own prediction: z = 2 t - 1
    np.testing.assert_allclose(BSL(2 * t - 1, t, reduction="none"), 0.0, atol=1e-15)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_binary_fast_path_equals_generic(engine, dt):
    rng = np.random.default_rng(16)
    z = rng.normal(scale=2.0, size=(40, 3)).astype(dt)
    z[0, :] = [1.0, -1.0, INF]
    t = rng.random((40, 3)).astype(dt)
    t[:5] = 1.0
    for reduction in ("none", "sum", "mean", "batchmean"):
        v, g = fused(BSL, z, t, engine=engine, reduction=reduction)
        v0, g0 = generic(BSL, z, t, reduction=reduction)
        _close(v, v0, dt)
        _close(g, g0, dt)


def test_binary_finite_differences_and_errors():
    rng = np.random.default_rng(17)
    z = rng.normal(scale=2.0, size=(6, 3))
    t = rng.random((6, 3))
    assert lk.gradcheck(BSL, z, t).ok
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        BSL(z, t + 1.0)
    with pytest.raises(ValueError, match="same shape"):
        BSL(z, t[:, :1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        BSL(z, t, margin=1.0)


# ============================================================================ the factory
def test_factory_of_logsumexp_equals_optax_make_fenchel_young_loss():
    rng = np.random.default_rng(18)
    z = rng.normal(scale=2.0, size=(10, 5))
    t = rng.dirichlet(np.ones(5), 10)
    fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    ref = optax.losses.make_fenchel_young_loss(max_fun=jax.scipy.special.logsumexp)
    ref_v = np.asarray(ref(jnp.asarray(z), jnp.asarray(t)))
    ref_g = np.asarray(jax.grad(lambda s: ref(s, jnp.asarray(t)).sum())(jnp.asarray(z)))
    v, g = fy.value_and_grad(z, t, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    assert fy.name == "fenchel_young_loss" and fy not in lk.catalog()
    # integer labels are the one-hot rows
    y = rng.integers(0, 5, 10)
    np.testing.assert_allclose(fy(z, y, reduction="none"),
                               np.asarray(ref(jnp.asarray(z), jnp.eye(5)[y])), rtol=1e-12)


def test_factory_with_a_regularizer_is_non_negative_and_matches_the_kl():
    rng = np.random.default_rng(19)
    z = rng.normal(size=(8, 4))
    t = rng.dirichlet(np.ones(4), 8)
    t[0] = [0.0, 0.5, 0.5, 0.0]  # 0 log 0 = 0

    def negentropy(p):
        return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)

    fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax, regularizer=negentropy,
                                    name="shannon_fy")
    # KL(t || softmax z): optax.losses.kl_divergence(log_softmax(z), t)
    ref = np.asarray(optax.losses.kl_divergence(jax.nn.log_softmax(jnp.asarray(z)),
                                                jnp.asarray(t)))
    np.testing.assert_allclose(fy(z, t, reduction="none"), ref, rtol=1e-10, atol=1e-14)
    shannon = lk.make_fenchel_young_loss("shannon")
    np.testing.assert_allclose(shannon(z, t, reduction="none"), ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(shannon.grad(z, t), (lk.softmax(z) - t) / 8, rtol=1e-12)
    # at its own prediction: 0
    np.testing.assert_allclose(fy(z, lk.softmax(z), reduction="none"), 0.0, atol=1e-12)


def test_shannon_on_labels_is_softmax_cross_entropy():
    rng = np.random.default_rng(20)
    z = rng.normal(scale=3.0, size=(10, 6))
    y = rng.integers(0, 6, 10)
    shannon = lk.make_fenchel_young_loss("shannon")
    ref = optax.losses.softmax_cross_entropy_with_integer_labels
    v, g = shannon.value_and_grad(z, y, reduction="none")
    np.testing.assert_allclose(v, np.asarray(ref(jnp.asarray(z), jnp.asarray(y))), rtol=1e-12)
    ref_g = jax.grad(lambda s: ref(s, jnp.asarray(y)).sum())(jnp.asarray(z))
    np.testing.assert_allclose(g, np.asarray(ref_g), rtol=1e-12, atol=1e-15)
    assert lk.make_fenchel_young_loss("sparsemax") is lk.multiclass_sparsemax_loss


def test_factory_axis_ignore_index_weights_and_copies():
    rng = np.random.default_rng(21)
    z = rng.normal(size=(3, 4, 5))  # classes on axis 1
    y = rng.integers(0, 4, (3, 5))
    y[0, 0] = -1
    fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    v = fy(z, y, axis=1, ignore_index=-1, reduction="none")
    ref = np.array(optax.losses.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(np.moveaxis(z, 1, -1)), jnp.asarray(np.where(y < 0, 0, y))))
    ref[0, 0] = 0.0
    np.testing.assert_allclose(v, ref, rtol=1e-12)
    g = fy.grad(z, y, axis=1, ignore_index=-1, reduction="sum")
    ref_g = lk.softmax(z, axis=1) - np.moveaxis(np.eye(4)[np.where(y < 0, 0, y)], -1, 1)
    ref_g[0, :, 0] = 0.0
    np.testing.assert_allclose(g, ref_g, atol=1e-14)
    # a configured copy keeps the regulariser
    copy = type(fy)(axis=1, ignore_index=-1, reduction="none")
    np.testing.assert_allclose(copy(z, y), v, rtol=1e-15)
    assert lk.gradcheck(fy, z, np.where(y < 0, 0, y), axis=1).ok


def test_factory_gradient_is_the_prediction_map():
    # a prediction map that is not the conjugate's gradient gives a gradient that is not
    # the value's: gradcheck sees it (the closed form is used, nothing is differentiated)
    z = np.random.default_rng(22).normal(size=(4, 3))
    y = np.array([0, 1, 2, 0])
    wrong = lk.make_fenchel_young_loss(lk.logsumexp, lk.sparsemax)
    assert not lk.gradcheck(wrong, z, y).ok
    np.testing.assert_allclose(wrong.grad(z, y, reduction="sum"),
                               optax_projection(z) - np.eye(3)[y], atol=1e-14)


def test_factory_errors():
    z = np.zeros((2, 3))
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="`conjugate` must be one of 'shannon', 'sparsemax'"):
        lk.make_fenchel_young_loss("gini")
    with pytest.raises(TypeError, match="leave `prediction_map` and `regularizer` out"):
        lk.make_fenchel_young_loss("shannon", lk.softmax)
    with pytest.raises(TypeError, match="`conjugate` must be"):
        lk.make_fenchel_young_loss(3.0, lk.softmax)
    with pytest.raises(TypeError, match="`prediction_map` must be a callable"):
        lk.make_fenchel_young_loss(lk.logsumexp)
    with pytest.raises(TypeError, match="`regularizer` must be a callable"):
        lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax, regularizer=1.0)
    with pytest.raises(TypeError, match="`name` must be a non-empty string"):
        lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax, name="")
    bad = lk.make_fenchel_young_loss(lambda s: s, lk.softmax, name="bad_fy")
    with pytest.raises(ValueError, match=r"`conjugate` of bad_fy must return one value per "
                                         r"row, shape \(2,\)"):
        bad(z, y)
    bad = lk.make_fenchel_young_loss(lk.logsumexp, lk.logsumexp, name="bad_fy")
    with pytest.raises(ValueError, match=r"`prediction_map` of bad_fy must return an array of "
                                         r"shape \(2, 3\)"):
        bad.grad(z, y)
    fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    with pytest.raises(ValueError, match="sum to 1"):
        fy(z, np.full((2, 3), 0.5))


# ============================================================================ adapters
def test_torch_autograd_of_every_fenchel_young_loss():
    rng = np.random.default_rng(23)
    z = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, 5)
    p = optax_projection(z)
    for loss, expected in ((MSL, p - np.eye(4)[y]),
                           (lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax),
                            lk.softmax(z) - np.eye(4)[y]),
                           (lk.make_fenchel_young_loss("shannon"),
                            lk.softmax(z) - np.eye(4)[y])):
        zt = torch.tensor(z, requires_grad=True)
        v = loss(zt, torch.as_tensor(y), reduction="sum")
        v.backward()
        np.testing.assert_allclose(zt.grad.numpy(), expected, atol=1e-14)
    zt = torch.tensor(z[:, 0], requires_grad=True)
    t = (y % 2).astype(float)
    BSL(zt, torch.as_tensor(t), reduction="sum").backward()
    np.testing.assert_allclose(zt.grad.numpy(), optax_binary(z[:, 0], t)[1], rtol=1e-14)


def test_jax_grad_and_jit_of_every_fenchel_young_loss():
    rng = np.random.default_rng(24)
    z = jnp.asarray(rng.normal(size=(5, 4)))
    y = jnp.asarray(rng.integers(0, 4, 5))
    g = jax.jit(jax.grad(lambda s: MSL(s, y, reduction="sum")))(z)
    np.testing.assert_allclose(np.asarray(g), optax_multiclass(z, y)[1], atol=1e-14)
    fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    ref = optax.losses.make_fenchel_young_loss(max_fun=jax.scipy.special.logsumexp)
    onehot = jax.nn.one_hot(y, 4)
    g = jax.jit(jax.grad(lambda s: fy(s, y, reduction="sum")))(z)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(
        lambda s: ref(s, onehot).sum())(z)), atol=1e-14)
    t = (y % 2).astype(jnp.float64)
    g = jax.jit(jax.grad(lambda s: BSL(s, t, reduction="sum")))(z[:, 0])
    np.testing.assert_allclose(np.asarray(g), optax_binary(z[:, 0], t)[1], rtol=1e-14)


def test_metadata():
    for loss in (MSL, BSL):
        assert loss.family == "classification" and loss in lk.catalog("classification")
        assert len(loss.when_to_use) > 80 and loss.references and loss.gradient_formula
    assert MSL.inputs == ("prediction", "target")
    assert set(MSL.option_defaults()) == {"axis", "ignore_index"}
    assert BSL.option_defaults() == {}
