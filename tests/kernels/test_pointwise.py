"""The pointwise family: ``losskit.core.formula`` and its driver ``losskit.kernels.pointwise``.

Every loss moved onto the driver must give the generic path's value and gradient (the
generic path is the reference: its values are tested against PyTorch, JAX and the
mathematics in tests/catalog), on both engines, for every reduction, float32 and float64,
``out=``, read-only and strided inputs, sizes on both sides of ``PARALLEL_MIN``, inf and
NaN, and from several threads at once. Expected values never come from the driver itself.
Numba compiles one kernel per loss, dtype and build (about 0.3 s each): the tests are
parametrised so that each is compiled once.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch
from losskit.core.formula import Formula, where
from losskit.kernels import fast_paths as _fast
from losskit.kernels import gradient_cache
from losskit.losses import (cross_entropy, deviance, likelihood, margin, relative_error,
                            robust_regression)
from engines import (assert_same, check, call as _call, fused as fast, generic,
                     fast_paths_on)

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the test extra
    HAVE_NUMBA = False

REDUCTIONS = ("none", "sum", "mean", "batchmean")
INF, NAN = np.inf, np.nan
RNG = np.random.default_rng(20260311)

# (loss, options, target kind): every loss on the pointwise driver, with its options
CASES = [
    ("huber", {"delta": 0.5}, "real"),
    ("smooth_l1", {"beta": 0.7}, "real"),
    ("smooth_l1", {"beta": 0.0}, "real"),
    ("log_cosh", {}, "real"),
    ("quantile", {"q": 0.3}, "real"),
    ("poisson_nll", {}, "count"),
    ("poisson_nll", {"full": True}, "count"),
    ("poisson_nll", {"log_input": False, "eps": 0.0}, "rate"),
    ("hinge", {"margin": 1.0}, "sign"),
    ("squared_hinge", {"margin": 0.5}, "sign"),
    ("binary_cross_entropy", {}, "prob"),
    ("pseudo_huber", {"delta": 0.7}, "real"),
    ("msle", {"clip": 1e-7}, "real"),
    ("msle", {}, "rate"),
    ("mape", {}, "real"),
    ("mape", {"epsilon": 1e-7, "percent": True}, "real"),
    ("tweedie_deviance", {}, "count"),
    ("tweedie_deviance", {"power": 1}, "count"),
    ("tweedie_deviance", {"power": 3}, "positive"),
    ("gamma_deviance", {}, "positive"),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in CASES]


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch, HAVE_NUMBA)


@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_fast, "USE_NUMBA", request.param == "numba")
    return request.param


def inputs(kind, shape, dtype, edges=True):
    """Prediction and target of ``shape`` for a target kind, with inf/NaN edges."""
    z = np.asarray(RNG.normal(size=shape) * 3.0, dtype=dtype)
    if kind == "real":
        t = np.asarray(RNG.normal(size=shape) * 3.0, dtype=dtype)
        ze, te = [INF, -INF, NAN, 1e30, 0.0, 2.0, INF], [0.0, 0.0, 0.0, -1e30, 0.0, 1.5, INF]
    elif kind == "count":
        t = RNG.poisson(2.0, size=shape).astype(dtype)
        ze, te = [-INF, INF, NAN, 0.0, 1.0, 50.0], [0.0, 0.0, 1.0, NAN, 0.0, 3.0]
    elif kind == "rate":
        z = np.asarray(np.abs(z), dtype=dtype)
        t = RNG.poisson(2.0, size=shape).astype(dtype)
        ze, te = [0.0, 0.0, NAN, INF, 1.0, 1e-30], [0.0, 3.0, 1.0, 2.0, NAN, 0.0]
    elif kind == "positive":  # log-link scores against positive targets
        t = np.asarray(RNG.exponential(2.0, size=shape) + 0.05, dtype=dtype)
        ze, te = [INF, -INF, NAN, 0.0, 1e30, -1e30, 1e-12], [1.0, 1.0, 1.0, NAN, 2.0, 2.0, 1.0]
    elif kind == "prob":
        z = np.asarray(RNG.random(shape), dtype=dtype)
        t = np.asarray(np.where(RNG.random(shape) < 0.3, RNG.random(shape),
                                RNG.random(shape) < 0.5), dtype=dtype)
        # clamps at 0 and 1 (and below them: 1e-30, 1 - 1e-17), NaN in either input
        ze = [0.0, 1.0, 0.0, 1.0, NAN, 0.5, 1e-30, 1.0 - 1e-17, 0.0, 1.0]
        te = [1.0, 0.0, 0.0, 1.0, 1.0, NAN, 0.7, 0.2, 0.5, 0.5]
    else:
        t = np.where(RNG.random(shape) < 0.5, -1.0, 1.0).astype(dtype)
        ze, te = [NAN, INF, -INF, 1.0, -0.5, 0.0], [1.0, 1.0, 1.0, 1.0, -1.0, -1.0]
    if edges and z.size >= len(ze):
        z.reshape(-1)[:len(ze)] = ze
        t.reshape(-1)[:len(te)] = te
    return z, t


# ------------------------------------------------------------------ the driver == generic
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kw", "kind"), CASES, ids=IDS)
def test_driver_equals_generic(engine, name, kw, kind, dtype):
    loss = getattr(lk, name)
    for shape in [(), (5,), (13, 7), (2, 3, 4), (5000,)]:
        arrays = inputs(kind, shape, dtype)
        for reduction in REDUCTIONS:
            check(loss, arrays, engine, dtype, reduction=reduction, **kw)


def _second_order_fused(name):
    return getattr(dispatch.fast_path_for(type(getattr(lk, name))), "second_order", None)


# one float type per case, alternating (each compiles one kernel per float type and build)
SECOND_CASES = [(n, kw, kind, np.float32 if i % 2 else np.float64)
                for i, (n, kw, kind) in enumerate(CASES)]


@pytest.mark.parametrize(("name", "kw", "kind", "dtype"), SECOND_CASES, ids=IDS)
def test_second_order_driver_equals_generic(engine, monkeypatch, name, kw, kind, dtype):
    """hessian and grad_and_hessian: the fused gradient-and-Hessian loop equals the generic
    kernels, inf and NaN included (the parallel build throughout, PARALLEL_MIN lowered to
    0; the serial build is the same source without prange: test_second_order_serial_build)."""
    loss = getattr(lk, name)
    if not loss.second_order or _second_order_fused(name) is None:
        pytest.skip(f"{name} has no fused second-order kernel")
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 0)
    for shape in [(5,), (13, 7), (3, 9001)]:
        arrays = inputs(kind, shape, dtype)
        for reduction in ("none", "mean"):
            kw_r = dict(kw, reduction=reduction)
            g0, h0 = generic(loss, *arrays, want="grad_and_hessian", **kw_r)
            g1, h1 = fast(loss, *arrays, engine=engine, want="grad_and_hessian", **kw_r)
            assert_same(g1, g0, dtype)
            assert_same(h1, h0, dtype)
            h2 = fast(loss, *arrays, engine=engine, want="hessian", **kw_r)
            np.testing.assert_array_equal(h2, h1)


def test_second_order_serial_build_and_what_it_does_not_cover():
    z, t = inputs("real", (40,), np.float64)
    g0, h0 = generic(lk.huber, z, t, want="grad_and_hessian", delta=0.5)
    g1, h1 = fast(lk.huber, z, t, engine="numba" if HAVE_NUMBA else "numpy",
                  want="grad_and_hessian", delta=0.5)
    assert_same(g1, g0, np.float64)
    assert_same(h1, h0, np.float64)
    # sample weights, hvp and option values outside the kernel's validators: generic
    for kw in ({"sample_weight": np.ones(40)}, {"delta": np.float64(-1.0)}):
        engine_name = "numba" if HAVE_NUMBA else "numpy"
        try:
            fast(lk.huber, z, t, engine=engine_name, want="hessian", answered=False, **kw)
        except ValueError:  # the generic path's own error for delta < 0
            assert "delta" in kw
    before = dict(_fast.STATS)
    lk.huber.hvp(z, t, vector=np.ones(40))
    assert dict(_fast.STATS) == before


@pytest.mark.parametrize(("name", "kw", "kind"), CASES, ids=IDS)
def test_parallel_build_equals_generic(engine, monkeypatch, name, kw, kind):
    """Above PARALLEL_MIN (lowered, so that the inputs stay small) the blocks run in prange."""
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 10_000)
    monkeypatch.setattr(gradient_cache, "PREFAULT_MIN", 10_000)
    loss = getattr(lk, name)
    arrays = inputs(kind, (3, 9001), np.float32)  # 7 blocks, the last one partial
    for reduction in ("none", "mean"):
        check(loss, arrays, engine, np.float32, reduction=reduction, **kw)


@pytest.mark.parametrize(("name", "kw", "kind"),
                         CASES[:1] + CASES[5:6] + CASES[8:9] + CASES[10:11],
                         ids=IDS[:1] + IDS[5:6] + IDS[8:9] + IDS[10:11])
def test_out_read_only_strided_and_cast_inputs(engine, name, kw, kind):
    loss = getattr(lk, name)
    z, t = inputs(kind, (12, 10), np.float64)
    ref_v, ref_g = generic(loss, z, t, **kw)
    out = np.full(z.shape, 7.0)
    g = fast(loss, z, t, engine=engine, want="grad", out=out, **kw)
    assert g is out
    assert_same(out, ref_g, np.float64)
    v, g = fast(loss, z, t, engine=engine, out=out, **kw)
    assert g is out and float(v) == pytest.approx(float(ref_v), rel=1e-12, nan_ok=True)
    # out= shares memory with the prediction: computed aside, the inputs read intact
    z2 = z.copy()
    g = fast(loss, z2, t, engine=engine, want="grad", out=z2, **kw)
    assert g is z2
    assert_same(z2, ref_g, np.float64)
    # read-only inputs
    zr, tr = z.copy(), t.copy()
    zr.flags.writeable = tr.flags.writeable = False
    v, g = fast(loss, zr, tr, engine=engine, **kw)
    assert_same(g, ref_g, np.float64)
    # strided (non-contiguous) prediction and target: copied, then the fused loop
    zs, ts = np.zeros((12, 20)), np.zeros((12, 20))
    zs[:, ::2], ts[:, ::2] = z, t
    v, g = fast(loss, zs[:, ::2], ts[:, ::2], engine=engine, **kw)
    assert_same(g, ref_g, np.float64)
    # a non-contiguous out=
    outs = np.zeros((12, 20))
    fast(loss, z, t, engine=engine, want="grad", out=outs[:, ::2], **kw)
    assert_same(outs[:, ::2].copy(), ref_g, np.float64)
    # a float32 prediction with a float64 (or integer) target: cast like the generic path
    z32 = z.astype(np.float32)
    for t_other in (t, np.nan_to_num(t).astype(np.int64) if kind != "real" else t):
        check(loss, (z32, t_other), engine, np.float32, **kw)


@pytest.mark.parametrize(("name", "kw", "kind"), CASES, ids=IDS)
def test_what_it_does_not_cover_runs_the_generic_path(name, kw, kind):
    loss = getattr(lk, name)
    z, t = inputs(kind, (6, 4), np.float64, edges=False)
    before = sum(_fast.STATS.values())
    for args, extra in [((z[:0], t[:0]), {}),  # empty
                        ((z, t), {"sample_weight": np.linspace(0, 1, 6)}),
                        ((z.astype(np.float16), t), {}),
                        ((z, t.reshape(4, 6)), {"_raises": ValueError})]:
        extra = dict(extra)
        raises = extra.pop("_raises", None)
        if raises:
            with pytest.raises(raises):
                loss.value_and_grad(*args, **kw, **extra)
            continue
        got = loss.value_and_grad(*args, **kw, **extra)
        ref = generic(loss, *args, **kw, **extra)
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    assert sum(_fast.STATS.values()) == before


@pytest.mark.parametrize("engine_name", ["numba", "numpy"])
def test_invalid_inputs_raise_the_generic_errors(monkeypatch, engine_name):
    monkeypatch.setattr(_fast, "USE_NUMBA", engine_name == "numba" and HAVE_NUMBA)
    z = np.ones(5)
    with pytest.raises(ValueError, match="target"):
        lk.poisson_nll(z, -z)
    with pytest.raises(ValueError, match="prediction"):
        lk.poisson_nll(-z, z, log_input=False)
    with pytest.raises(ValueError, match="labels -1 or \\+1"):
        lk.hinge(z, np.zeros(5))
    with pytest.raises(ValueError, match="labels -1 or \\+1"):
        lk.squared_hinge(z, np.full(5, NAN))
    with pytest.raises(ValueError, match="delta"):
        lk.huber(z, z, delta=0.0)
    with pytest.raises(ValueError, match="beta"):
        lk.smooth_l1(z, z, beta=-1.0)
    with pytest.raises(ValueError, match="q"):
        lk.quantile(z, z, q=1.0)
    with pytest.raises(TypeError, match="log_input"):
        lk.poisson_nll(z, z, log_input=1)
    half = np.full(5, 0.5)
    with pytest.raises(ValueError, match="`prediction` must lie in \\[0, 1\\]"):
        lk.binary_cross_entropy(z + 1e-6, half)
    with pytest.raises(ValueError, match="`prediction` must lie in \\[0, 1\\]"):
        lk.binary_cross_entropy.grad(-half, half)
    with pytest.raises(ValueError, match="`target` must lie in \\[0, 1\\]"):
        lk.binary_cross_entropy.value_and_grad(half, z * 2.0)
    with pytest.raises(ValueError, match="`target` must lie in \\[0, 1\\]"):
        lk.binary_cross_entropy(half, -half, reduction="none")
    # options it does not take as plain numbers: the generic path answers
    before = sum(_fast.STATS.values())
    lk.hinge.value_and_grad(z, z, margin=INF)
    assert sum(_fast.STATS.values()) == before


def test_documented_edges(engine):
    # subgradient 0 at the kinks, NaN propagating, +0 (not -0) where inactive
    y = np.array([1.0, 2.0, NAN, 0.5])
    t = np.array([1.0, 1.0, 1.0, 1.0])
    v, g = fast(lk.quantile, y, t, engine=engine, q=0.3, reduction="none")
    assert g[0] == 0.0 and g[1] == pytest.approx(0.7) and np.isnan(g[2]) and g[3] == -0.3
    s = np.array([1.0, 2.0, NAN, 0.0])
    v, g = fast(lk.hinge, s, t, engine=engine, reduction="none")
    assert g[0] == 0.0 and not np.signbit(g[1]) and np.isnan(v[2]) and np.isnan(g[2])
    v, g = fast(lk.squared_hinge, s, -t, engine=engine, reduction="none")
    assert not np.signbit(g[~np.isnan(g)]).any()
    v, g = fast(lk.poisson_nll, np.array([-INF, 0.0]), np.array([0.0, 0.0]), engine=engine,
                reduction="none")
    assert v[0] == 0.0 and g[0] == 0.0  # a zero count at rate 0 costs nothing
    v, g = fast(lk.poisson_nll, np.array([0.0]), np.array([2.0]), engine=engine,
                log_input=False, eps=0.0, reduction="none")
    assert v[0] == INF and g[0] == -INF
    v, g = fast(lk.log_cosh, np.array([1e300, -1e300, 0.0]), np.zeros(3), engine=engine,
                reduction="none")
    assert v[0] == pytest.approx(1e300) and g[0] == 1.0 and g[1] == -1.0 and v[2] == 0.0
    v, g = fast(lk.smooth_l1, np.array([0.0, 3.0]), np.zeros(2), engine=engine, beta=0.0,
                reduction="none")
    assert g[0] == 0.0 and g[1] == 1.0 and v[1] == 3.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_binary_cross_entropy_clamps_at_the_input_dtype_eps(engine, dtype):
    """y and 1 - y clamp below at the machine epsilon of the input dtype (float16's for a
    float16 input, computed in float32), with gradient 0 below the clamp."""
    eps = float(np.finfo(dtype).eps)
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.5 * eps, 1.0, 0.5, 2.0 * eps, NAN, 0.5], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 1.0, 0.0, NAN], dtype=dtype)
    loss = lk.binary_cross_entropy
    if dtype == np.float16:  # not the driver's: the generic path, float32 arithmetic
        v, g = loss.value_and_grad(y, t, reduction="none")
        ref = generic(loss, y, t, reduction="none")
        for a, b in zip((v, g), ref):
            np.testing.assert_array_equal(a, b)
    else:
        v, g = fast(loss, y, t, engine=engine, reduction="none")
        assert_same(v, generic(loss, y, t, reduction="none")[0], dtype)
    assert v.dtype == g.dtype == dtype
    log_eps = np.float32(-np.log(np.float32(eps))) if dtype == np.float16 else -np.log(eps)
    np.testing.assert_allclose(v[:2].astype(np.float64), float(log_eps), rtol=1e-3)
    assert v[2] == 0.0 and v[3] == 0.0  # no 0 * log(0) NaN
    np.testing.assert_allclose(float(v[4]), float(log_eps), rtol=1e-3)
    assert list(g[:5]) == [0.0, 0.0, 1.0, -1.0, 0.0]  # 0 below the clamp, d/dy kept above
    assert g[5] == -0.5  # 1 - y clamped: only -t / y remains
    np.testing.assert_allclose(float(v[5]), 0.5 * float(log_eps), rtol=1e-3)
    assert g[6] == 0.0 and v[6] == pytest.approx(np.log(2.0), rel=1e-3)
    np.testing.assert_allclose(float(g[7]), -1.0 / (2.0 * eps), rtol=1e-3)  # at 2 eps: -t/y
    assert np.isnan(v[8]) and np.isnan(g[8]) and np.isnan(v[9]) and np.isnan(g[9])


# ------------------------------------------------------------------ gaussian_nll (3 inputs)
def gaussian_inputs(shape, dtype, edges=True):
    """Mean, target and a variance of the same shape, with clamp/inf/NaN edges."""
    mu = np.asarray(RNG.normal(size=shape) * 2.0, dtype=dtype)
    t = np.asarray(RNG.normal(size=shape) * 2.0, dtype=dtype)
    var = np.asarray(RNG.uniform(0.05, 3.0, size=shape), dtype=dtype)
    me = [0.0, 1.0, 1.0, NAN, INF, 2.0, 0.5, 0.0, 3.0]
    te = [0.0, 0.0, 2.0, 0.0, 0.0, NAN, 0.5, 0.0, -1.0]
    ve = [0.0, 1e-30, 1e-6, 1.0, 1.0, 1.0, NAN, INF, 2e-6]
    if edges and mu.size >= len(me):
        for a, e in ((mu, me), (t, te), (var, ve)):
            a.reshape(-1)[:len(e)] = e
    return mu, t, var


GAUSS_KW = [{}, {"full": True, "eps": 1e-3}]


@pytest.mark.parametrize("kw", GAUSS_KW, ids=["default", "full-eps"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_nll_same_shape_var_equals_generic(engine, dtype, kw):
    for shape in [(), (5,), (13, 7), (2, 3, 4), (5000,)]:
        arrays = gaussian_inputs(shape, dtype)
        for reduction in REDUCTIONS:
            check(lk.gaussian_nll, arrays, engine, dtype, reduction=reduction, **kw)


def test_gaussian_nll_parallel_build_equals_generic(engine, monkeypatch):
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 10_000)
    monkeypatch.setattr(gradient_cache, "PREFAULT_MIN", 10_000)
    arrays = gaussian_inputs((3, 9001), np.float32)
    for reduction in ("none", "mean"):
        check(lk.gaussian_nll, arrays, engine, np.float32, reduction=reduction)


def test_gaussian_nll_out_read_only_strided_and_cast_inputs(engine):
    loss = lk.gaussian_nll
    mu, t, var = gaussian_inputs((12, 10), np.float64)
    ref_v, ref_g = generic(loss, mu, t, var)
    out = np.full(mu.shape, 7.0)
    g = fast(loss, mu, t, var, engine=engine, want="grad", out=out)
    assert g is out
    assert_same(out, ref_g, np.float64)
    # out= is the variance (or the mean): the inputs are read intact
    for k in (0, 2):
        arrays = [mu.copy(), t.copy(), var.copy()]
        v, g = fast(loss, *arrays, engine=engine, out=arrays[k])
        assert g is arrays[k]
        assert_same(g, ref_g, np.float64)
        assert float(v) == pytest.approx(float(ref_v), rel=1e-12, nan_ok=True)
    # read-only and strided inputs
    ro = [a.copy() for a in (mu, t, var)]
    for a in ro:
        a.flags.writeable = False
    assert_same(fast(loss, *ro, engine=engine, want="grad"), ref_g, np.float64)
    wide = [np.zeros((12, 20)) for _ in range(3)]
    for w, a in zip(wide, (mu, t, var)):
        w[:, ::2] = a
    assert_same(fast(loss, *(w[:, ::2] for w in wide), engine=engine, want="grad"), ref_g,
                np.float64)
    # a float32 mean with float64 or integer target and variance: cast like the generic path
    mu32 = mu.astype(np.float32)
    check(loss, (mu32, t, var), engine, np.float32)
    check(loss, (mu32, np.nan_to_num(t).astype(np.int64),
                 np.nan_to_num(var, posinf=5.0).astype(np.int32)), engine, np.float32)


def test_gaussian_nll_what_it_does_not_cover_runs_the_generic_path():
    loss = lk.gaussian_nll
    mu, t, var = gaussian_inputs((6, 4), np.float64, edges=False)
    before = sum(_fast.STATS.values())
    for args, extra in [((mu, t, var[:, 0]), {}),  # one variance per row
                        ((mu, t, var[:, :1]), {}),  # an axis of size 1
                        ((mu, t, 0.7), {}),  # a float
                        ((mu, t, var), {"sample_weight": np.linspace(0, 1, 6)}),
                        ((mu, t, var.astype(np.float32)), {"wrt": "all"}),  # var's dtype
                        ((mu, t, var.astype(np.float32)), {"wrt": "var"}),
                        ((mu[:0], t[:0], var[:0]), {}),
                        ((mu.astype(np.float16), t, var), {})]:
        got = loss.grad(*args, **extra)
        ref = generic(loss, *args, want="grad", **extra)
        for a, b in zip(got if isinstance(got, tuple) else (got,),
                        ref if isinstance(ref, tuple) else (ref,)):
            np.testing.assert_array_equal(a, b)
    assert sum(_fast.STATS.values()) == before


@pytest.mark.parametrize("engine_name", ["numba", "numpy"])
def test_gaussian_nll_invalid_inputs_raise_the_generic_errors(monkeypatch, engine_name):
    monkeypatch.setattr(_fast, "USE_NUMBA", engine_name == "numba" and HAVE_NUMBA)
    z = np.ones(5)
    with pytest.raises(ValueError, match="`var` must lie in"):
        lk.gaussian_nll(z, z, -z)
    with pytest.raises(ValueError, match="`var` must lie in"):
        lk.gaussian_nll.grad(z, z, np.array([1.0, 1.0, -1e-300, 1.0, 1.0]))
    with pytest.raises(TypeError, match="real-valued"):
        lk.gaussian_nll(z, z, z > 0)
    with pytest.raises(ValueError, match="eps"):
        lk.gaussian_nll(z, z, z, eps=0.0)
    with pytest.raises(TypeError, match="full"):
        lk.gaussian_nll(z, z, z, full=1)
    with pytest.raises(ValueError):
        lk.gaussian_nll(z, z, np.ones(4))


def test_gaussian_nll_formula_matches_torch():
    """torch's F.gaussian_nll_loss and its autograd (away from the clamp)."""
    torch = pytest.importorskip("torch")
    mu, t = RNG.normal(size=200), RNG.normal(size=200)
    var = RNG.uniform(0.1, 3.0, 200)
    mt, vt = torch.from_numpy(mu).requires_grad_(True), torch.from_numpy(var).requires_grad_(True)
    for full in (False, True):
        rv = torch.nn.functional.gaussian_nll_loss(mt, torch.from_numpy(t), vt, full=full,
                                                   eps=1e-6, reduction="none")
        rg_mu, rg_var = torch.autograd.grad(rv.sum(), (mt, vt))
        v, g_mu, g_var = likelihood.GAUSSIAN_NLL.on(np)(mu, t, var, full, 1e-6)
        np.testing.assert_allclose(v, rv.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g_mu, rg_mu.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g_var, rg_var.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_concurrent_calls_equal_a_serial_call(monkeypatch):
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 10_000)
    monkeypatch.setattr(gradient_cache, "PREFAULT_MIN", 10_000)
    work = [inputs(kind, (40_000,), np.float32) for kind in ("count", "real", "sign", "real")]
    calls = [(lk.poisson_nll, {}), (lk.log_cosh, {}), (lk.hinge, {}), (lk.smooth_l1, {})]
    expected = [loss.value_and_grad(*a, reduction="none", **kw)
                for (loss, kw), a in zip(calls, work)]
    errors = []

    def run(i):
        loss, kw = calls[i]
        for _ in range(6):
            v, g = loss.value_and_grad(*work[i], reduction="none", **kw)
            if not (np.array_equal(v, expected[i][0], equal_nan=True)
                    and np.array_equal(g, expected[i][1], equal_nan=True)):
                errors.append(f"{loss.name}: a concurrent call differs")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


# ------------------------------------------------------------------ Formula
def _numpy_reference(formula, *args):
    with np.errstate(all="ignore"):
        return formula.on(np)(*args)


FORMULA_CASES = [
    (robust_regression.HUBER, "real", (0.5,)),
    (robust_regression.SMOOTH_L1, "real", (0.0,)),
    (robust_regression.LOG_COSH, "real", ()),
    (robust_regression.QUANTILE, "real", (0.3,)),
    (likelihood.POISSON_NLL, "rate", (False, True, 1e-8)),
    (likelihood.POISSON_NLL, "count", (True, False, 1e-8)),
    (margin.HINGE, "sign", (1.0,)),
    (margin.SQUARED_HINGE, "sign", (1.0,)),
    (cross_entropy.BINARY_CROSS_ENTROPY, "prob", (1e-7,)),
    (robust_regression.PSEUDO_HUBER, "real", (0.7,)),
    (relative_error.MSLE, "rate", (1e-7,)),
    (relative_error.MAPE, "real", (1e-7, True)),
    (deviance.TWEEDIE, "count", (1.5,)),
    (deviance.TWEEDIE, "count", (1.0,)),
    (deviance.TWEEDIE, "positive", (3.0,)),
    (deviance.GAMMA, "positive", ()),
]


def _backend(name):
    if name == "torch":
        torch = pytest.importorskip("torch")
        return (lambda a: torch.from_numpy(a)), (lambda a: a.numpy()), "array_api_compat.torch"
    if name == "jax":
        jnp = pytest.importorskip("jax.numpy")
        return (lambda a: jnp.asarray(a)), np.asarray, "jax.numpy"
    if name == "array_api_strict":
        xps = pytest.importorskip("array_api_strict")
        return (lambda a: xps.asarray(a)), (lambda a: np.asarray(a)), "array_api_strict"
    if name == "dask":
        da = pytest.importorskip("dask.array")
        return (lambda a: da.from_array(a, chunks=3)), (lambda a: np.asarray(a.compute())), \
            "array_api_compat.dask.array"
    return (lambda a: a), (lambda a: a), "array_api_compat.numpy"


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "array_api_strict", "dask"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_formula_on_every_namespace(backend, dtype):
    import array_api_compat

    to, back, _ = _backend(backend)
    if backend == "jax" and dtype == np.float64:
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX runs in float32 unless x64 is enabled")
    for formula, kind, params in FORMULA_CASES:
        z, t = inputs(kind, (11,), dtype)
        ref = _numpy_reference(formula, z, t, *params)
        xz, xt = to(z), to(t)
        xp = array_api_compat.array_namespace(xz)
        with np.errstate(all="ignore"):
            got = formula.on(xp)(xz, xt, *params)
        assert formula.on(xp) is formula.on(xp)  # cached per namespace
        for a, b in zip(got, ref):
            a = back(a)
            assert a.dtype == dtype, (formula, backend)
            rtol = 1e-6 if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, equal_nan=True)


def test_formula_on_matches_torch_autograd():
    """An independent reference: torch's autograd of the values the formula states."""
    torch = pytest.importorskip("torch")
    z, t = inputs("real", (200,), np.float64, edges=False)
    zt = torch.from_numpy(z).requires_grad_(True)
    tt = torch.from_numpy(t)
    for formula, params, ref in [
            (robust_regression.HUBER, (0.7,),
             lambda a: torch.nn.functional.huber_loss(a, tt, reduction="none", delta=0.7)),
            (robust_regression.SMOOTH_L1, (0.4,),
             lambda a: torch.nn.functional.smooth_l1_loss(a, tt, reduction="none", beta=0.4)),
            (robust_regression.LOG_COSH, (), lambda a: torch.log(torch.cosh(a - tt)))]:
        v, g = formula.on(np)(z, t, *params)
        rv = ref(zt)
        (rg,) = torch.autograd.grad(rv.sum(), zt)
        np.testing.assert_allclose(v, rv.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, rg.numpy(), rtol=1e-12, atol=1e-14)


def test_binary_cross_entropy_formula_matches_torch_autograd():
    """Away from the clamps: torch's F.binary_cross_entropy and its autograd."""
    torch = pytest.importorskip("torch")
    y = RNG.uniform(0.01, 0.99, 300)
    t = np.where(RNG.random(300) < 0.5, RNG.random(300), RNG.random(300) < 0.5)
    yt = torch.from_numpy(y).requires_grad_(True)
    rv = torch.nn.functional.binary_cross_entropy(yt, torch.from_numpy(t), reduction="none")
    (rg,) = torch.autograd.grad(rv.sum(), yt)
    v, g = cross_entropy.BINARY_CROSS_ENTROPY.on(np)(y, t, float(np.finfo(np.float64).eps))
    np.testing.assert_allclose(v, rv.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, rg.numpy(), rtol=1e-12, atol=1e-14)


def test_formula_where_takes_python_numbers_on_either_branch():
    import array_api_compat
    import array_api_strict as xps

    def _f(y, t):
        return where(y > t, 1.0, y), where(y > t, y, -1.0)

    f = Formula(_f)
    for xp, a in [(array_api_compat.array_namespace(np.zeros(1)), np.float32([0, 2])),
                  (xps, xps.asarray([0.0, 2.0], dtype=xps.float32))]:
        v, g = f.on(xp)(a, a * 0 + 1)
        assert v.dtype == a.dtype and g.dtype == a.dtype
        np.testing.assert_array_equal(np.asarray(v), [0.0, 1.0])
        np.testing.assert_array_equal(np.asarray(g), [-1.0, 2.0])
    with pytest.raises(TypeError, match="at least one branch"):
        Formula(lambda y, t: (where(y > t, 1.0, 0.0), y)).on(np)(np.ones(2), np.zeros(2))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_formula_scalar_keeps_the_float_type_and_matches_numpy():
    f = robust_regression.HUBER
    s32, s64 = f.scalar(np.float32), f.scalar(np.float64)
    assert f.scalar(np.float32) is s32
    v, g = s32(np.float32(3.0), np.float32(0.0), np.float32(0.5))
    assert type(v) is float or isinstance(v, (np.floating, float))
    assert (v, g) == (np.float32(1.375), np.float32(0.5))
    sig = s32.nopython_signatures[0]
    assert str(sig.return_type) == "UniTuple(float32 x 2)"
    z, t = inputs("real", (50,), np.float64)
    ref = _numpy_reference(f, z, t, 0.5)
    got = np.array([s64(a, b, 0.5) for a, b in zip(z, t)]).T
    np.testing.assert_allclose(got, np.array(ref), rtol=1e-15, equal_nan=True)


def test_import_does_not_load_numba():
    import subprocess
    import sys

    code = ("import sys, numpy as np, losskit as lk\n"
            "from losskit.core import formula\n"
            "from losskit.kernels import pointwise\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


# --------------------------------------------------------------------------- several gradients
# Losses whose formula returns the gradients of further inputs (``fast_path(grads=...)``):
# every ``wrt`` runs the fused kernel, "all" from one pass, equal to the generic path.
def _log_probabilities(n, dtype, edges=True):
    c = -RNG.uniform(0.0, 4.0, n)
    r = -RNG.uniform(0.0, 4.0, n)
    if edges:  # probability 1, probability 0, both; a tiny log-probability
        c[:4] = [0.0, -INF, -INF, -1e-12]
        r[:4] = [-0.5, -1.0, -INF, -1e-9]
    return c.astype(dtype), r.astype(dtype)


def _several_cases(n, dtype):
    """(loss, arrays, options, the wrt values to try) of every loss with several gradients."""
    c, r = _log_probabilities(n, dtype)
    mu, t, var = gaussian_inputs((n,), dtype)
    rc = (c + RNG.normal(size=n)).astype(dtype)
    rr = (r + RNG.normal(size=n)).astype(dtype)
    desirable = RNG.random(n) > 0.4
    paired = (None, "rejected_logps", "all")
    return [
        ("gaussian_nll", (mu, t, var), {}, (None, "var", "all")),
        ("gaussian_nll", (mu, t, var), {"full": True, "eps": 1e-3}, ("all",)),
        ("simpo_loss", (c, r), {}, paired),
        ("simpo_loss", (c, r), {"beta": 2.0, "gamma": 1.0, "label_smoothing": 0.2}, paired),
        ("simpo_loss", (c, r), {"label_smoothing": 1.0}, ("all",)),
        ("cpo_loss", (c, r), {"beta": 0.5, "label_smoothing": 0.1}, paired),
        ("orpo_loss", (c[3:], r[3:]), {"beta": 0.3}, paired),  # (no chosen = rejected = 0)
        ("kto_loss", (c, desirable, rc), {"beta": 0.2, "kl": 0.1}, (None, "all")),
        ("kto_loss", (c, desirable.astype(np.int8), None), {}, (None,)),
        ("dpo_loss", (c[4:], r[4:], rc[4:], rr[4:]), {"beta": 0.1}, paired),
        ("dpo_loss", (c[4:], r[4:]), {"beta": 0.5}, ("all",)),  # reference-free
        ("dpo_loss", (c[4:], r[4:], None, rr[4:].astype(np.float64)), {}, ("all",)),
    ]


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("dtype,n", [(np.float32, 37), (np.float64, 37),
                                     (np.float32, _fast.PARALLEL_MIN + 3)])
def test_several_gradients_from_one_pass_equal_the_generic_path(engine, dtype, n):
    big = n > 1000  # the parallel build: every loss, its widest wrt, one reduction
    for name, arrays, kw, wrts in _several_cases(n, dtype):
        loss = getattr(lk, name)
        for wrt in wrts[-1:] if big else wrts:
            for reduction in ("mean",) if big else REDUCTIONS[:3]:
                opts = dict(kw, reduction=reduction, **({} if wrt is None else {"wrt": wrt}))
                v0, g0 = generic(loss, *arrays, **opts)
                v1, g1 = fast(loss, *arrays, engine=engine, **opts)
                assert_same(v1, v0, dtype)
                assert isinstance(g1, tuple) == isinstance(g0, tuple), (name, wrt)
                assert len(_as_tuple(g1)) == len(_as_tuple(g0))
                for a, b in zip(_as_tuple(g1), _as_tuple(g0)):
                    assert_same(a, b, dtype)
                got = fast(loss, *arrays, engine=engine, want="grad", **opts)
                for a, b in zip(_as_tuple(got), _as_tuple(g1)):
                    np.testing.assert_array_equal(a, b)


def test_several_gradients_are_distinct_arrays_and_out_takes_one(engine):
    c, r = _log_probabilities(50, np.float64)
    gc, gr = fast(lk.simpo_loss, c, r, engine=engine, want="grad", wrt="all")
    assert not np.shares_memory(gc, gr)
    # d/dc = -d/dr for a margin of the two: an identity of the formula, not of the driver
    np.testing.assert_array_equal(gc, -gr)
    ref = generic(lk.simpo_loss, c, r, want="grad", wrt="rejected_logps")
    out = np.full(c.shape, 9.0)
    g = fast(lk.simpo_loss, c, r, engine=engine, want="grad", wrt="rejected_logps", out=out)
    assert g is out
    assert_same(out, ref, np.float64)
    # out= is the rejected log-probabilities themselves: read intact, then overwritten
    r2 = r.copy()
    g = fast(lk.simpo_loss, c, r2, engine=engine, want="grad", wrt="rejected_logps", out=r2)
    assert g is r2
    assert_same(r2, ref, np.float64)


def test_several_gradients_what_is_not_covered_runs_the_generic_path():
    c, r = _log_probabilities(20, np.float64)
    n = c.shape[0]
    mu, t, var = gaussian_inputs((n,), np.float64)
    calls = [
        # the gradient of an input of another dtype (it would be returned in that dtype)
        (lk.gaussian_nll, (mu, t, var.astype(np.float32)), {"wrt": "var"}),
        # DPO: the variants other than "sigmoid", another divergence, lengths
        (lk.dpo_loss, (c, r), {"variant": "hinge"}),
        (lk.dpo_loss, (c, r), {"f_divergence": "js_divergence"}),
        (lk.dpo_loss, (c, r, None, None, np.full(n, 5.0), np.full(n, 7.0)), {}),
        # sample weights (the generic path's rules for them stay in one place)
        (lk.kto_loss, (c, r < -1, r), {"sample_weight": np.linspace(0, 1, n)}),
    ]
    before = sum(_fast.STATS.values())
    for loss, arrays, kw in calls:
        got = loss.grad(*arrays, **kw)
        ref = generic(loss, *arrays, want="grad", **kw)
        for a, b in zip(_as_tuple(got), _as_tuple(ref)):
            np.testing.assert_array_equal(a, b)
    assert sum(_fast.STATS.values()) == before


@pytest.mark.parametrize("engine_name", ["numba", "numpy"])
def test_several_gradients_invalid_inputs_raise_the_generic_errors(monkeypatch, engine_name):
    monkeypatch.setattr(_fast, "USE_NUMBA", engine_name == "numba" and HAVE_NUMBA)
    c, r = _log_probabilities(8, np.float64, edges=False)
    for loss in (lk.simpo_loss, lk.cpo_loss, lk.orpo_loss, lk.dpo_loss):
        # rejected of another dtype: a TypeError even for the chosen gradient alone
        with pytest.raises(TypeError, match="rejected_logps"):
            loss.grad(c, r.astype(np.float32))
    with pytest.raises(ValueError, match="chosen_logps"):
        lk.orpo_loss.grad(np.abs(c), r)  # log-probabilities above 0
    with pytest.raises(ValueError, match="desirable"):
        lk.kto_loss.grad(c, np.full(8, 2.0))
    with pytest.raises(TypeError, match="ref_logps"):
        lk.kto_loss.grad(c, c < -1, np.ones(8, dtype=np.int64))
    with pytest.raises(ValueError, match="1-d"):
        lk.dpo_loss.grad(c.reshape(2, 4), r.reshape(2, 4), wrt="all")
    with pytest.raises(ValueError, match="f_alpha"):  # checked although sigmoid ignores it
        lk.dpo_loss.grad(c, r, f_alpha=math.inf)
    with pytest.raises(ValueError, match="beta"):
        lk.simpo_loss.grad(c, r, beta=0.0, wrt="all")
