"""The fused NumPy fast paths (``losskit.kernels.fast_paths``) against the generic Array-API kernels.

The generic kernels are the reference (their values are tested against PyTorch, JAX and
the mathematics elsewhere); here every fast path must give the generic path's value and
gradient, up to rounding, on ordinary and extreme inputs, on both engines (numba and the
NumPy fallback), and must really be the path that answered (``fast_paths.STATS``). No timing
is asserted: ``benchmarks/run.py`` measures speed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import fast_paths as _fast
from losskit.kernels import gradient_cache
from engines import (assert_same, check, call as _call, fused as fast, generic,
                     fast_paths_on)

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the test extra
    HAVE_NUMBA = False

ENGINES = ["numba", "numpy"]
REDUCTIONS = ("none", "sum", "mean", "batchmean")
INF, NAN = np.inf, np.nan


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    """Every test here starts with the fast paths on, whatever LOSSKIT_DISABLE_* say."""
    fast_paths_on(monkeypatch, HAVE_NUMBA)


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_fast, "USE_NUMBA", request.param == "numba")
    return request.param


RNG = np.random.default_rng(20261123)


# ------------------------------------------------------------------ softmax cross-entropy
def logits(shape, dtype, scale=3.0):
    return np.asarray(RNG.normal(size=shape) * scale, dtype=dtype)  # 0-d stays an array


def labels(shape, k, dtype=np.int64):
    return RNG.integers(0, k, size=shape).astype(dtype)


CE_SHAPES = [(1, 3), (32, 10), (7, 1), (5, 3, 4), (6,), (3, 4099), (40, 700)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_ce_equals_generic(engine, dtype, shape, reduction):
    z = logits(shape, dtype)
    y = labels(shape[:-1], shape[-1])
    check(lk.softmax_cross_entropy, (z, y), engine, dtype, reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ignore", [-100, 0, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_ce_ignore_index_equals_generic(engine, dtype, ignore, reduction):
    z = logits((24, 5), dtype)
    y = labels(24, 5)
    y[::3] = ignore
    check(lk.softmax_cross_entropy, (z, y), engine, dtype, reduction=reduction,
          ignore_index=ignore)


@pytest.mark.parametrize("label_dtype", [np.int8, np.int32, np.uint8, np.uint16])
def test_softmax_ce_label_dtypes(engine, label_dtype):
    z = logits((9, 4), np.float64)
    y = labels(9, 4, label_dtype)
    check(lk.softmax_cross_entropy, (z, y), engine, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_extreme_rows_equal_generic(engine, dtype):
    big = np.finfo(dtype).max
    rows = [
        [0.0, 1.0, 2.0, 3.0],  # ordinary
        [-INF, 0.0, 1.0, 2.0],  # -inf entry, not the label
        [-INF, 0.0, 1.0, 2.0],  # -inf entry at the label: loss +inf, grad -1
        [1e30, 0.0, -1e30, 5.0],  # huge logits: exact, no overflow
        [big, -big, 0.0, big],  # the largest finite numbers: z - max overflows to -inf
        [NAN, 0.0, 1.0, 2.0],  # NaN: NaN loss and gradient row
        [INF, 0.0, 1.0, 2.0],  # +inf: NaN softmax
        [INF, 0.0, 1.0, 2.0],  # +inf at the label
        [-INF, -INF, -INF, -INF],  # no finite logit: NaN
        [5.0, 5.0, 5.0, 5.0],  # uniform
        [-1e4, -1e4 + 1, -1e4, -1e4],  # large negative
    ]
    z = np.array(rows, dtype=dtype)
    y = np.array([0, 1, 0, 2, 1, 0, 2, 0, 3, 1, 1])
    for reduction in REDUCTIONS:
        check(lk.softmax_cross_entropy, (z, y), engine, dtype, reduction=reduction)
    v, g = fast(lk.softmax_cross_entropy, z, y, engine=engine, reduction="none")
    assert v[2] == INF and g[2, 0] == -1.0
    assert np.isnan(v[5]) and np.isnan(g[5]).all()
    assert np.isnan(g[8]).all()
    assert v[3] == pytest.approx(2 * float(dtype(1e30)), rel=1e-6)  # max - z_y, exactly
    assert v[9] == pytest.approx(np.log(4.0), rel=1e-6)


def test_softmax_ce_all_ignored_and_one_ignored_nan_row(engine):
    z = np.array([[NAN, 1.0], [INF, 0.0]])
    y = np.array([-1, -1])
    for reduction in REDUCTIONS:
        check(lk.softmax_cross_entropy, (z, y), engine, np.float64, reduction=reduction,
              ignore_index=-1)
    v, g = fast(lk.softmax_cross_entropy, z, y, engine=engine, ignore_index=-1)
    assert float(v) == 0.0 and not g.any()  # a mean over nothing is 0, gradient 0


def test_softmax_ce_options_it_does_not_cover_fall_back(engine):
    z, y = logits((6, 4), np.float64), labels(6, 4)
    soft = np.full((6, 4), 0.25)
    before = sum(_fast.STATS.values())
    for kw, arrays in [({"axis": 0}, (z.T.copy(), y)), ({}, (z, list(y))),
                       ({}, (z[:0], y[:0])), ({}, (z.astype(np.float16), y)),
                       ({}, (z, y.astype(np.uint64)))]:
        lk.softmax_cross_entropy.value_and_grad(*arrays, **kw)
    assert sum(_fast.STATS.values()) == before
    # the row family (losskit.kernels.rows) answers these (tests/kernels/test_rows.py)
    for kw, arrays in [({"label_smoothing": 0.1}, (z, y)), ({"class_weight": [1, 2, 3, 4]}, (z, y)),
                       ({"sample_weight": np.ones(6)}, (z, y)), ({}, (z, soft)),
                       ({}, (np.asfortranarray(z), y))]:
        v, g = lk.softmax_cross_entropy.value_and_grad(*arrays, **kw)
        v0, g0 = generic(lk.softmax_cross_entropy, *arrays, **kw)
        assert_same(v, v0, np.float64)
        assert_same(g, g0, np.float64)
    assert sum(_fast.STATS.values()) == before + 5


# ------------------------------------------------------------------ sigmoid BCE
BCE_SHAPES = [(), (1,), (10,), (32, 10), (3, 4, 5), (9000,), (70, 129)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BCE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_bce_equals_generic(engine, dtype, shape, reduction):
    z = logits(shape, dtype)
    t = np.asarray(RNG.random(size=shape), dtype=dtype)
    check(lk.sigmoid_binary_cross_entropy, (z, t), engine, dtype, reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_weight", [2.5, 3, 0.0, [0.5, 2.0, 1.0, 0.0, 4.0], "array",
                                        "array0d"], ids=str)
def test_sigmoid_bce_pos_weight_equals_generic(engine, dtype, pos_weight):
    if pos_weight == "array":
        pos_weight = np.array([0.5, 2.0, 1.0, 0.0, 4.0], dtype=np.float64)
    elif pos_weight == "array0d":
        pos_weight = np.array(1.5)
    z = logits((6, 5), dtype)
    t = (RNG.random(size=(6, 5)) > 0.5).astype(dtype)
    for reduction in ("none", "mean"):
        check(lk.sigmoid_binary_cross_entropy, (z, t), engine, dtype, reduction=reduction,
              pos_weight=pos_weight)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_bce_extreme_inputs_equal_generic(engine, dtype):
    z = np.array([0.0, -0.0, 1e-30, 20.0, -20.0, 100.0, -100.0, 1e30, -1e30, INF, -INF, INF,
                  -INF, NAN, 1.0, 17.0, -89.0, -750.0], dtype=dtype)
    t = np.array([0.5, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, NAN,
                  0.3, 0.0, 1.0], dtype=dtype)
    for reduction in REDUCTIONS:
        for pw in (None, 2.0):
            check(lk.sigmoid_binary_cross_entropy, (z, t), engine, dtype, reduction=reduction,
                  pos_weight=pw)
    v, g = fast(lk.sigmoid_binary_cross_entropy, z, t, engine=engine, reduction="none")
    assert v[9] == 0.0 and v[10] == 0.0  # a perfect prediction at an infinite logit
    assert v[11] == INF and g[11] == 1.0
    assert np.isnan(v[13]) and np.isnan(v[14])
    assert v[6] == pytest.approx(100.0, rel=1e-6)  # exact for huge logits
    assert v[4] == pytest.approx(np.log1p(np.exp(-20.0)), rel=1e-5)  # tiny, relative-exact


def test_sigmoid_bce_target_dtypes(engine):
    z = logits((4, 3), np.float32)
    for t in [(RNG.random((4, 3))),  # float64 target, float32 logits: cast like the generic
              (RNG.random((4, 3)) > 0.5),  # bool
              (RNG.random((4, 3)) > 0.5).astype(np.int8)]:
        check(lk.sigmoid_binary_cross_entropy, (z, t), engine, np.float32)


# ------------------------------------------------------------------ regression
@pytest.mark.parametrize("name", ["mse", "l2_loss", "mae"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (5,), (32, 10), (2, 3, 4), (10000,)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_equals_generic(engine, name, dtype, shape, reduction):
    loss = getattr(lk, name)
    z = logits(shape, dtype)
    t = logits(shape, dtype)
    check(loss, (z, t), engine, dtype, reduction=reduction)


@pytest.mark.parametrize("name", ["mse", "l2_loss", "mae"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regression_extreme_inputs_equal_generic(engine, name, dtype):
    z = np.array([0.0, 1.0, INF, -INF, NAN, 1e30, -3.0, 2.0, INF], dtype=dtype)
    t = np.array([0.0, 1.0, 0.0, 0.0, 1.0, -1e30, NAN, 2.0, INF], dtype=dtype)
    for reduction in REDUCTIONS:
        check(getattr(lk, name), (z, t), engine, dtype, reduction=reduction)
    v, g = fast(getattr(lk, name), z, t, engine=engine, reduction="none")
    assert g[0] == 0.0 and g[7] == 0.0  # no residual: gradient 0 (mae: subgradient 0)
    assert np.isnan(v[8]) and np.isnan(g[8])  # inf - inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("delta", [1.0, 0.25, 3, 1e-30])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_equals_generic(engine, dtype, delta, reduction):
    z = logits((7, 9), dtype)
    t = logits((7, 9), dtype)
    z[0, :5] = [INF, -INF, NAN, 1e30, 0.0]
    t[0, :5] = [0.0, 0.0, 0.0, -1e30, delta]  # also a residual exactly at the kink
    check(lk.huber, (z, t), engine, dtype, reduction=reduction, delta=delta)


def test_huber_options_it_does_not_cover_fall_back():
    z = logits((4,), np.float64)
    t = logits((4,), np.float64) * 3
    # a NumPy scalar option is made a Python number before dispatch: the fast path takes it
    before = sum(_fast.STATS.values())
    got = lk.huber.value_and_grad(z, t, delta=np.float64(2.0))
    assert sum(_fast.STATS.values()) == before + 1
    want = generic(lk.huber, z, t, delta=2.0)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    before = sum(_fast.STATS.values())
    with pytest.raises(ValueError, match="delta"):
        lk.huber(z, z, delta=0.0)  # the generic error
    with pytest.raises(ValueError, match="delta"):
        lk.huber(z, z, delta=INF)
    assert sum(_fast.STATS.values()) == before


FOCAL_OPTIONS = [{}, {"gamma": 0.0}, {"gamma": 0.5, "alpha": None}, {"gamma": 1.0, "alpha": 0.9},
                 {"gamma": 3, "alpha": -1.0}, {"gamma": 2.0, "alpha": 0.0},
                 {"gamma": 2.0, "alpha": 1}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", FOCAL_OPTIONS, ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_sigmoid_focal_equals_generic(engine, dtype, options, reduction):
    z = logits((6, 11), dtype)
    t = np.asarray(RNG.random((6, 11)), dtype=dtype)
    t[0] = (t[0] > 0.5)  # hard labels too
    z[1, :8] = [INF, -INF, NAN, 40.0, -40.0, 1e30, -1e30, 0.0]
    t[1, :8] = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.5]
    z[2, :4] = [INF, -INF, 100.0, -100.0]
    t[2, :4] = [0.0, 1.0, 0.0, 0.0]
    check(lk.sigmoid_focal_loss, (z, t), engine, dtype, reduction=reduction, **options)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4, 5), (9000,)], ids=str)
def test_sigmoid_focal_shapes_equal_generic(engine, shape):
    z = logits(shape, np.float32)
    t = np.asarray(RNG.random(size=shape), dtype=np.float32)
    for reduction in REDUCTIONS:
        check(lk.sigmoid_focal_loss, (z, t), engine, np.float32, reduction=reduction)


def test_sigmoid_focal_invalid_input_raises_the_generic_errors(engine):
    z = logits((4, 3), np.float64)
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        lk.sigmoid_focal_loss(z, np.full((4, 3), -0.5))
    with pytest.raises(ValueError, match="gamma"):
        lk.sigmoid_focal_loss(z, np.ones((4, 3)), gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        lk.sigmoid_focal_loss(z, np.ones((4, 3)), alpha=1.5)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]),
       name=st.sampled_from(["mse", "mae", "huber", "sigmoid_binary_cross_entropy",
                          "sigmoid_focal_loss"]),
       reduction=st.sampled_from(REDUCTIONS))
def test_property_fast_equals_generic(data, dtype, name, reduction):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=6))
    elements = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)
    z = data.draw(hnp.arrays(dtype, shape, elements=elements))
    if name.startswith("sigmoid"):
        t = data.draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1, width=32)))
    else:
        t = data.draw(hnp.arrays(dtype, shape, elements=elements))
    loss = getattr(lk, name)
    v0, g0 = generic(loss, z, t, reduction=reduction)
    v1, g1 = loss.value_and_grad(z, t, reduction=reduction)
    assert_same(v1, v0, dtype)
    assert_same(g1, g0, dtype)


# ------------------------------------------------------------------ numba == numpy, parallel
@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_engine_equals_numpy_engine_serial_and_parallel(monkeypatch, dtype):
    z, y = logits((50, 33), dtype), labels(50, 33)
    y[::7] = -1
    x, t = logits((40, 31), dtype), RNG.random((40, 31)).astype(dtype)
    calls = [(lk.softmax_cross_entropy, (z, y), {"ignore_index": -1}),
             (lk.sigmoid_binary_cross_entropy, (x, t), {"pos_weight": np.arange(31.0)}),
             (lk.mse, (x, t), {}), (lk.l2_loss, (x, t), {}), (lk.mae, (x, t), {}),
             (lk.huber, (x, t), {"delta": 0.5}),
             (lk.sigmoid_focal_loss, (x, t), {"gamma": 1.5, "alpha": 0.3})]
    for parallel_min in (1 << 40, 1):  # serial kernels, then the parallel ones
        monkeypatch.setattr(_fast, "PARALLEL_MIN", parallel_min)
        monkeypatch.setattr(gradient_cache, "PREFAULT_MIN", parallel_min)  # touched fresh gradients
        for loss, arrays, kw in calls:
            for reduction in ("none", "mean"):
                monkeypatch.setattr(_fast, "USE_NUMBA", False)
                ref = fast(loss, *arrays, engine="numpy", reduction=reduction, **kw)
                monkeypatch.setattr(_fast, "USE_NUMBA", True)
                got = fast(loss, *arrays, engine="numba", reduction=reduction, **kw)
                for a, b in zip(got, ref):
                    assert_same(a, b, dtype)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_a_kernel_numba_cannot_compile_falls_back_to_the_numpy_engine(monkeypatch):
    from losskit.kernels import numba_kernels as _fast_numba

    monkeypatch.setattr(_fast, "USE_NUMBA", True)
    monkeypatch.setattr(_fast, "_numba_module", _fast_numba)  # restored afterwards
    monkeypatch.setattr(_fast, "_numba_error", None)

    def broken(*args):
        raise _fast_numba.NumbaError("no LLVM for this CPU")

    monkeypatch.setattr(_fast_numba, "regression_serial", broken)
    z, t = logits((4, 3), np.float64), logits((4, 3), np.float64)
    ref = generic(lk.mse, z, t)
    got = fast(lk.mse, z, t, engine="numpy")
    for a, b in zip(got, ref):
        assert_same(a, b, np.float64)
    assert _fast.engine() == "numpy" and "no LLVM for this CPU" in _fast.numba_error()


def test_engine_reports_the_engine(monkeypatch):
    monkeypatch.setattr(_fast, "USE_NUMBA", False)
    assert _fast.engine() == "numpy"
    monkeypatch.setattr(dispatch, "ENABLED", False)
    assert _fast.engine() == "off"


def test_environment_switches_and_lazy_numba_import():
    code = ("import sys, numpy as np, losskit as lk\n"
            "from losskit.core import dispatch\n"
            "from losskit.kernels import fast_paths as _fast\n"
            "lazy = 'numba' not in sys.modules\n"
            "lk.mse(np.ones(3), np.zeros(3))\n"
            "print(lazy, dispatch.ENABLED, _fast.USE_NUMBA, _fast.engine(), dict(_fast.STATS))\n")
    env_cases = [({"LOSSKIT_DISABLE_NUMBA": "1"}, "True True False numpy {('mse', 'numpy'): 1}"),
                 ({"LOSSKIT_DISABLE_FAST": "1"}, "True False True off {}")]
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOSSKIT_DISABLE_")}
    for env, expected in env_cases:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**base, **env}, check=True).stdout.strip()
        assert out == expected


# ------------------------------------------------------------------ out=
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mse",
                                  "l2_loss", "mae", "huber", "sigmoid_focal_loss"])
def test_out_is_written_in_place_and_returned(engine, name):
    loss = getattr(lk, name)
    if name == "softmax_cross_entropy":
        arrays = (logits((8, 5), np.float32), labels(8, 5))
    else:
        arrays = (logits((8, 5), np.float32), RNG.random((8, 5)).astype(np.float32))
    ref_v, ref_g = generic(loss, *arrays)
    out = np.full((8, 5), 7.0, dtype=np.float32)
    g = fast(loss, *arrays, engine=engine, want="grad", out=out)
    assert g is out
    assert_same(out, ref_g, np.float32)
    out[...] = 7.0
    v, g = fast(loss, *arrays, engine=engine, out=out)
    assert g is out
    assert_same(v, ref_v, np.float32)
    assert_same(out, ref_g, np.float32)


def test_out_may_be_an_input_or_non_contiguous(engine):
    z, y = logits((6, 4), np.float64), labels(6, 4)
    ref = generic(lk.softmax_cross_entropy, z, y, want="grad")
    zz = z.copy()
    assert fast(lk.softmax_cross_entropy, zz, y, engine=engine, want="grad", out=zz) is zz
    assert_same(zz, ref, np.float64)  # overwritten once read
    fortran = np.zeros((6, 4), order="F")
    fast(lk.softmax_cross_entropy, z, y, engine=engine, want="grad", out=fortran)
    assert_same(np.ascontiguousarray(fortran), ref, np.float64)
    x, t = logits((5, 3), np.float32), RNG.random((5, 3)).astype(np.float32)
    ref = generic(lk.mse, x, t, want="grad")
    tt = t.copy()
    fast(lk.mse, x, tt, engine=engine, want="grad", out=tt)
    assert_same(tt, ref, np.float32)
    strided = np.zeros((5, 6), dtype=np.float32)[:, ::2]
    fast(lk.mse, x, t, engine=engine, want="grad", out=strided)
    assert_same(np.ascontiguousarray(strided), ref, np.float32)


@pytest.mark.parametrize("fast_on", [True, False])
def test_out_errors(monkeypatch, fast_on):
    monkeypatch.setattr(dispatch, "ENABLED", fast_on)
    z, y = logits((4, 3), np.float32), labels(4, 3)
    with pytest.raises(ValueError, match=r"`out` must have the gradient's shape \(4, 3\); "
                                         r"got \(3, 4\)"):
        lk.softmax_cross_entropy.grad(z, y, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="`out` must have the gradient's dtype float32; got "
                                        "float64"):
        lk.softmax_cross_entropy.value_and_grad(z, y, out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="`out` must be a numpy array like `prediction`.*list"):
        lk.mse.grad(z, z, out=[[0.0] * 3] * 4)
    readonly = np.empty((4, 3), np.float32)
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="`out` is read-only"):
        lk.mae.grad(z, z, out=readonly)
    with pytest.raises(TypeError, match="`out` takes one gradient"):
        lk.mse.grad(z, z, wrt=("prediction",), out=np.empty((4, 3), np.float32))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="`out` must be a numpy array.*torch.Tensor"):
        lk.mse.grad(z, z, out=torch.zeros(4, 3))


def test_out_errors_take_their_turn_after_the_input_errors():
    # an invalid label is reported as it is without out=, whatever out is
    z = logits((4, 3), np.float32)
    with pytest.raises(ValueError, match="class indices"):
        lk.softmax_cross_entropy.grad(z, np.array([0, 1, 2, 3]), out=np.empty((4, 3), np.float32))


def test_out_on_the_generic_path_is_a_copy():
    z, y = logits((6, 4), np.float64), labels(4, 6)
    ref = generic(lk.softmax_cross_entropy, z, y, want="grad", axis=0)
    out = np.zeros((6, 4))
    before = sum(_fast.STATS.values())
    g = lk.softmax_cross_entropy.grad(z, y, axis=0, out=out)  # not covered: class axis 0
    assert sum(_fast.STATS.values()) == before
    assert g is out
    np.testing.assert_array_equal(out, ref)
    # a loss without a fast path, and wrt= another input
    p = RNG.uniform(0.1, 0.9, size=(3, 2))
    out = np.zeros((3, 2))
    assert lk.binary_cross_entropy.grad(p, p, out=out) is out
    np.testing.assert_array_equal(out, lk.binary_cross_entropy.grad(p, p))


def test_out_on_other_array_libraries():
    torch = pytest.importorskip("torch")
    z = torch.tensor(logits((4, 3), np.float64))
    y = torch.tensor(labels(4, 3))
    out = torch.zeros(4, 3, dtype=torch.float64)
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, out=out)
    assert g is out
    torch.testing.assert_close(out, lk.softmax_cross_entropy.grad(z, y), rtol=0, atol=0)
    with pytest.raises(TypeError, match="`out` must be a torch array.*numpy.ndarray"):
        lk.softmax_cross_entropy.grad(z, y, out=np.zeros((4, 3)))
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="`out` cannot be a JAX array: JAX arrays are immutable"):
        lk.mse.grad(jnp.ones(3), jnp.zeros(3), out=jnp.zeros(3))
    xps = pytest.importorskip("array_api_strict")
    out = xps.zeros(3, dtype=xps.float64)
    assert lk.mae.grad(xps.asarray([1.0, -2.0, 0.0]), xps.zeros(3), reduction="sum",
                       out=out) is out
    np.testing.assert_array_equal(np.asarray(out), [1.0, -1.0, 0.0])


# ------------------------------------------------------------------ the hook itself
def test_invalid_inputs_raise_the_generic_errors(engine):
    z = logits((4, 3), np.float64)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\].*got 3"):
        lk.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="ignore_index=-1"):
        lk.softmax_cross_entropy(z, np.array([0, 1, 2, -1]))
    # the most negative label, with an ignore_index that other labels use
    with pytest.raises(ValueError, match="class indices"):
        lk.softmax_cross_entropy(z, np.array([-100, np.iinfo(np.int64).min, 1, 2]),
                                 ignore_index=-100)
    with pytest.raises(ValueError, match="class indices"):
        lk.softmax_cross_entropy(z, np.array([-100, 3, 1, 2]), ignore_index=-100)
    with pytest.raises(TypeError, match="got bool"):
        lk.softmax_cross_entropy(z, np.array([True, False, True, True]))
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\].*max 1.5"):
        lk.sigmoid_binary_cross_entropy(z, np.full((4, 3), 1.5))
    with pytest.raises(ValueError, match=r"`pos_weight` must lie in \[0, inf\]"):
        lk.sigmoid_binary_cross_entropy(z, np.ones((4, 3)), pos_weight=-1.0)
    with pytest.raises(ValueError, match=r"same shape as `prediction` \(4, 3\); got \(4,\)"):
        lk.mse(z, np.ones(4))
    with pytest.raises(TypeError, match="floating dtype"):
        lk.mae(np.ones(3, dtype=np.int64), np.ones(3))


def test_a_subclass_with_its_own_kernel_does_not_inherit_the_fast_path():
    class Doubled(type(lk.mse)):
        name = "doubled_mse_test_only"

        def _compute(self, ctx, prediction, target, *, need_grad):
            terms = super()._compute(ctx, prediction, target, need_grad=need_grad)
            return type(terms)(2 * terms.value, 2 * terms.grad if need_grad else None)

    z, t = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    assert dispatch.fast_path_for(Doubled) is None
    assert dispatch.fast_path_for(type(lk.mse)) is not None
    assert float(Doubled()(z, t, reduction="sum")) == 10.0


def test_wrt_all_of_a_single_input_loss_uses_the_fast_path(engine):
    z, t = logits((3, 2), np.float64), logits((3, 2), np.float64)
    v, (g,) = fast(lk.mse, z, t, engine=engine, wrt="all")
    (g2,) = fast(lk.mse, z, t, engine=engine, want="grad", wrt=("prediction",))
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(v, lk.mse(z, t))


def test_option_defaults_are_cached_but_returned_as_copies():
    opts = lk.softmax_cross_entropy.option_defaults()
    opts["axis"] = 5
    assert lk.softmax_cross_entropy.option_defaults()["axis"] == -1
    assert lk.softmax_cross_entropy.option_defaults() is not \
        lk.softmax_cross_entropy.option_defaults()


# ------------------------------------------------------------------ the gradient cache
BIG = 1 << 21  # float32 elements: 8 MiB, above gradient_cache.CACHE_MIN


@pytest.fixture
def cache(monkeypatch):
    """A private gradient cache of 64 MiB for the test."""
    c = gradient_cache.GradientCache(64 << 20)
    monkeypatch.setattr(gradient_cache, "GRADIENT_CACHE", c)
    return c


def _big_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(BIG, dtype=np.float32), rng.standard_normal(BIG, dtype=np.float32)


def _mse_grad(z, t):  # the mathematics: d/dz mean((z - t)^2)
    return (2.0 * (z.astype(np.float64) - t) / z.size).astype(np.float32)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy",
                                  "mse", "huber", "sigmoid_focal_loss"])
def test_a_dropped_gradient_buffer_is_reused(engine, cache, name):
    loss = getattr(lk, name)
    rng = np.random.default_rng(1)
    if name == "softmax_cross_entropy":
        arrays = (rng.standard_normal((BIG // 64, 64), dtype=np.float32),
                  rng.integers(0, 64, BIG // 64))
    else:
        arrays = (rng.standard_normal(BIG, dtype=np.float32),
                  (rng.random(BIG) < 0.5).astype(np.float32))
    g = loss.grad(*arrays)
    address = g.ctypes.data
    g[...] = np.nan  # whatever the caller left in it must not leak into the next result
    del g
    g = fast(loss, *arrays, engine=engine, want="grad")
    assert g.ctypes.data == address
    assert g.flags.owndata and g.flags.c_contiguous and g.flags.writeable
    np.testing.assert_allclose(g, generic(loss, *arrays, want="grad"), rtol=1e-5, atol=1e-12)
    assert cache.nbytes == g.nbytes


def test_a_gradient_still_referenced_is_never_overwritten(engine, cache):
    torch = pytest.importorskip("torch")
    z, t = _big_inputs()
    def snapshot(h):
        return h.numpy().copy() if isinstance(h, torch.Tensor) else np.array(h, copy=True)

    kept = []
    for hold in (lambda g: g, lambda g: g[10:20], lambda g: torch.from_numpy(g),
                 lambda g: memoryview(g)):
        g = lk.mse.grad(z, t)
        held = hold(g)
        kept.append((held, snapshot(held), g.ctypes.data))
        del g, held
    # every slot of this shape is taken: the next gradients are new memory
    for seed in range(3):
        z2, t2 = _big_inputs(seed + 10)
        g2 = fast(lk.mse, z2, t2, engine=engine, want="grad")
        assert all(g2.ctypes.data != address for _, _, address in kept)
        np.testing.assert_allclose(g2, _mse_grad(z2, t2), rtol=1e-6)
    for held, expected, _ in kept:
        np.testing.assert_array_equal(snapshot(held), expected)


def test_the_cache_keeps_to_its_limits(cache, monkeypatch):
    z, t = _big_inputs()
    held = [lk.mse.grad(z, t) for _ in range(4)]  # 2 slots per shape: 2 cached, 2 not
    assert cache.nbytes == 2 * z.nbytes
    del held
    # another shape: the idle buffers of the first are dropped when the limit needs room
    monkeypatch.setattr(cache, "limit", 3 * z.nbytes)
    z3, t3 = (a.reshape(2, -1) for a in _big_inputs(3))
    a, b = lk.mse.grad(z3, t3), lk.mse.grad(z3, t3)
    assert cache.nbytes <= cache.limit
    np.testing.assert_allclose(a, _mse_grad(z3, t3), rtol=1e-6)
    np.testing.assert_array_equal(a, b)
    del a, b
    gradient_cache.clear_gradient_cache()
    assert cache.nbytes == 0
    # a limit of 0 (LOSSKIT_GRADIENT_CACHE_MIB=0) keeps nothing
    monkeypatch.setattr(cache, "limit", 0)
    g = lk.mse.grad(z, t)
    assert cache.nbytes == 0
    np.testing.assert_allclose(g, _mse_grad(z, t), rtol=1e-6)
    # small gradients never go through it
    monkeypatch.setattr(cache, "limit", 1 << 30)
    lk.mse.grad(z[:1000], t[:1000])
    assert cache.nbytes == 0


def test_concurrent_calls_never_share_a_buffer(cache):
    import threading

    inputs = [_big_inputs(seed) for seed in range(4)]
    errors = []

    def work(z, t):
        expected = _mse_grad(z, t)
        for _ in range(8):
            g = lk.mse.grad(z, t)
            if not np.allclose(g, expected, rtol=1e-6):
                errors.append("a gradient was overwritten by another thread")
            del g

    threads = [threading.Thread(target=work, args=pair) for pair in inputs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert cache.nbytes <= 2 * inputs[0][0].nbytes


@pytest.mark.parametrize("raw, expected", [("", 1024 << 20), ("0", 0), ("16", 16 << 20),
                                           ("0.5", 1 << 19), ("nonsense", 1024 << 20)])
def test_cache_limit_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("LOSSKIT_GRADIENT_CACHE_MIB", raw)
    assert gradient_cache._cache_limit() == expected


# ------------------------------------------------------------------ numba kernels: internals
@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_parallel_build_is_not_the_cached_serial_one(tmp_path):
    # numba's cache key ignores parallel=: a kernel's parallel build once loaded the serial
    # build's machine code whenever that one had been cached first, and ran on one thread
    code = ("import numpy as np, numba, losskit as lk\n"
            "from losskit.kernels import fast_paths as _fast\n"
            "_fast.PARALLEL_MIN = {}\n"
            "lk.mse.value_and_grad(np.ones(10), np.zeros(10))\n"
            "try:\n    print(numba.threading_layer())\n"
            "except ValueError:\n    print('no threads')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSKIT_DISABLE_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    outs = [subprocess.run([sys.executable, "-c", code.format(parallel_min)], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
            for parallel_min in (1 << 40, 1)]  # the serial build first, then the parallel
    assert outs[0] == "no threads" and outs[1] != "no threads"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_exp_and_log1p_accuracy(dtype):
    # within 2 ulp of the exact values; float64's log1p (the artanh series of u / (2 + u)): 3
    if dtype == np.float64 and np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("no extended precision for the float64 reference")
    from numba import njit

    from losskit.kernels.numba_kernels import _exp_neg, _log1p_unit

    @njit
    def both(x, u, ex, lu):
        for i in range(x.shape[0]):
            ex[i] = _exp_neg(x[i])
            lu[i] = _log1p_unit(u[i])

    if dtype == np.float32:  # a sample of every bit pattern: x in [-104, 0], u in [0, 1]
        x = np.arange(0x80000000, 0xC2D00000, 997, dtype=np.uint64).astype(np.uint32)
        x = x.view(np.float32)
        u = np.arange(0, 0x3F800001, 997, dtype=np.uint32).view(np.float32)
        n = min(x.size, u.size)
        x, u = x[:n], u[:n]
    else:
        x = -RNG.uniform(0.0, 746.0, 1 << 20) * RNG.random(1 << 20) ** 4
        u = RNG.random(1 << 20) ** 8
    specials_x = np.array([0.0, -0.0, -1e-30, -103.0, -104.5, -1e30, -INF, NAN], dtype)
    specials_u = np.array([0.0, 1e-30, 1e-40, 1.0, 0.5, 2.0 ** -24, 1e-3, NAN], dtype)
    x = np.concatenate([x, specials_x]).astype(dtype)
    u = np.concatenate([u, specials_u]).astype(dtype)
    ex, lu = np.empty_like(x), np.empty_like(u)
    both(x, u, ex, lu)
    l1p_ulp = 2.0 if dtype == np.float32 else 3.0
    for got, ref, bound in ((ex, np.exp(x.astype(np.longdouble)), 2.0),
                            (lu, np.log1p(u.astype(np.longdouble)), l1p_ulp)):
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isnan(got), ~finite)
        ulp = np.maximum(np.spacing(np.abs(ref[finite].astype(dtype))),
                         np.finfo(dtype).smallest_subnormal).astype(np.longdouble)
        err = np.abs(got[finite].astype(np.longdouble) - ref[finite]) / ulp
        assert float(err.max()) <= bound
    assert ex[-2] == 0.0 and ex[-3] == 0.0 and ex[-7] == 1.0 and ex[-8] == 1.0  # -inf, -1e30, +-0
    assert lu[-8] == 0.0 and lu[-6] == u[-6]  # log1p(0) = 0; log1p(1e-40) = 1e-40


SPECIAL_Z = [0.0, -0.0, 1e-30, 0.5, -3.0, 15.0, -40.0, 88.0, -95.0, 104.0, -120.0, 745.0,
             -800.0, 1e30, -1e30, INF, -INF, NAN]
SPECIAL_T = [0.0, 1.0, 0.5, 1e-30, 1e-40, 1.0 - 2.0 ** -24, 0.3, 1e-7, NAN]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4])
@pytest.mark.parametrize("alpha", [0.25, None, 0.0, 1.0])
def test_sigmoid_focal_special_value_grid_equals_generic(engine, dtype, gamma, alpha):
    # every logit against every target: the integer-gamma kernels (products) and the
    # log-space one agree with the generic kernel at infinities, NaN, huge logits,
    # subnormal results and targets, and zero weights
    z, t = np.meshgrid(np.array(SPECIAL_Z, dtype), np.array(SPECIAL_T, dtype))
    z, t = z.ravel(), t.ravel()
    with np.errstate(all="ignore"):
        check(lk.sigmoid_focal_loss, (z, t), engine, dtype, reduction="none", gamma=gamma,
              alpha=alpha)
        if gamma == 2.0 and alpha is None:
            check(lk.sigmoid_binary_cross_entropy, (z, t), engine, dtype, reduction="none")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba")
def test_borrowed_views_share_the_data_and_take_no_reference():
    """``numba_kernels._borrowed``: a view of the caller's array without a reference count
    reads and writes the same memory (strided views included), and a kernel that uses
    it (the row driver, the softmax CE kernel) leaves the reference counts of its
    arguments as they were, over many rows (a count taken and not given back would grow
    by one per row, one given back and not taken would free the caller's array)."""
    from numba import njit

    from losskit.kernels.numba_kernels import _borrowed

    @njit
    def touch(a):
        b = _borrowed(a)
        s = 0.0
        for i in range(b.shape[0]):
            row = b[i]
            s += row[0]
            row[-1] = 7.0
        return s, b.shape[0], b.shape[1], b.strides[0]

    base = np.arange(24.0).reshape(6, 4)
    view = base[::2]  # strided rows
    before = sys.getrefcount(view), sys.getrefcount(base)
    s, n, k, stride = touch(view)
    assert (s, n, k, stride) == (0.0 + 8.0 + 16.0, 3, 4, 64)
    assert base[1::2, -1].tolist() == [7.0, 15.0, 23.0]  # untouched rows
    assert base[::2, -1].tolist() == [7.0, 7.0, 7.0]
    assert (sys.getrefcount(view), sys.getrefcount(base)) == before

    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 10)).astype(np.float32)
    y = rng.integers(0, 10, 5000)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    counts = [sys.getrefcount(a) for a in (z, y, lp)]
    for _ in range(3):
        v, g = fast(lk.softmax_cross_entropy, z, y)
        v2, g2 = fast(lk.nll_loss, lp, y)
        np.testing.assert_allclose(g2, -np.eye(10, dtype=np.float32)[y] / 5000, atol=1e-12)
    assert [sys.getrefcount(a) for a in (z, y, lp)] == counts
    p = np.exp(lp)
    np.testing.assert_allclose(g, (p - np.eye(10)[y]) / 5000, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(v, -lp[np.arange(5000), y].mean(), rtol=1e-5)
