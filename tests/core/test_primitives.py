"""The primitives: softmax, log_softmax, logsumexp, sigmoid, log_sigmoid, softplus.

Every expected value comes from an independent implementation (SciPy's ``scipy.special``,
PyTorch's ``torch``/``torch.nn.functional``, NumPy's ``logaddexp``) or from the definition
worked by hand (comments give the derivation); none comes from losskit.
"""

from __future__ import annotations

import re

import math
import warnings

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import losskit as lk

from conftest import BACKENDS

torch = pytest.importorskip("torch")
F = torch.nn.functional

INF, NAN = np.inf, np.nan
AXES = [0, 1, -1]
ROW_FUNCS = ["softmax", "log_softmax", "logsumexp"]
ELEMENTWISE = ["sigmoid", "log_sigmoid", "softplus"]


@pytest.fixture(autouse=True)
def _no_warnings_at_all():
    """Every RuntimeWarning (from any module: Dask computes outside losskit) is a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _softplus_ref(x):
    return sc.softplus(x) if hasattr(sc, "softplus") else np.logaddexp(0.0, x)


SCIPY = {
    "softmax": lambda x, axis: sc.softmax(x, axis=axis),
    "log_softmax": lambda x, axis: sc.log_softmax(x, axis=axis),
    "logsumexp": lambda x, axis: sc.logsumexp(x, axis=axis),
    "sigmoid": lambda x, axis=None: sc.expit(x),
    "log_sigmoid": lambda x, axis=None: sc.log_expit(x),
    "softplus": lambda x, axis=None: _softplus_ref(x),
}

TORCH = {
    "softmax": lambda t, axis: torch.softmax(t, dim=axis),
    "log_softmax": lambda t, axis: torch.log_softmax(t, dim=axis),
    "logsumexp": lambda t, axis: torch.logsumexp(t, dim=axis),
    "sigmoid": lambda t, axis=None: torch.sigmoid(t),
    "log_sigmoid": lambda t, axis=None: F.logsigmoid(t),
    "softplus": lambda t, axis=None: F.softplus(t),
}


def call(name, x, axis=None):
    fn = getattr(lk, name)
    return fn(x) if name in ELEMENTWISE else fn(x, axis=axis)


def ref(name, x, axis=None):
    with np.errstate(all="ignore"):
        return SCIPY[name](np.asarray(x, dtype=np.float64), axis)


def _data(seed=0, shape=(4, 5), scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


# ------------------------------------------------------------------ values vs SciPy / torch
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ROW_FUNCS)
def test_row_functions_match_scipy_float64(name, axis):
    x = _data()
    out = call(name, x, axis)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref(name, x, axis), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_functions_match_scipy_float64_over_the_whole_range(name):
    # -700, not -745: exp(-745) is subnormal and has no relative precision to compare
    x = np.array([-INF, -1e30, -1e4, -700.0, -40.0, -1.0, -1e-300, 0.0, 1e-300, 1.0, 40.0,
                  700.0, 1e4, 1e30, INF])
    out = call(name, x)
    assert out.dtype == np.float64 and out.shape == x.shape
    np.testing.assert_allclose(out, ref(name, x), rtol=1e-12, atol=0)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
def test_values_match_scipy_float32(name, axis):
    x = _data(1).astype(np.float32)
    out = call(name, x, axis)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref(name, x, axis), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-12, 1e-14), ("float32", 1e-5, 1e-6)])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
def test_values_match_torch(name, axis, dtype, rtol, atol):
    t = torch.as_tensor(_data(2)).to(getattr(torch, dtype))
    out = call(name, t, axis)
    expected = TORCH[name](t, axis)
    assert isinstance(out, torch.Tensor) and out.dtype == expected.dtype
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)


def test_logsumexp_keepdims_matches_scipy():
    x = _data(3)
    for axis in AXES:
        out = lk.logsumexp(x, axis=axis, keepdims=True)
        expected = sc.logsumexp(x, axis=axis, keepdims=True)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=1e-12)


# ------------------------------------------------------------------ stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("big", [1e4, 1e30])
def test_huge_logits_are_exact(big, dtype):
    x = np.array([[big, -big, 0.0], [big, big, -big]], dtype=dtype)
    b = float(dtype(big))
    # row 0: exp(-big) and exp(-2 big) vanish next to 1 -> softmax is exactly one-hot
    # row 1: two equal maxima share the mass
    np.testing.assert_allclose(lk.softmax(x), [[1, 0, 0], [0.5, 0.5, 0]], atol=0)
    # log_softmax = x - logsumexp; logsumexp(row 0) = big, logsumexp(row 1) = big + ln 2
    lse = np.array([b, b + math.log(2.0)])
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(lk.logsumexp(x), lse, rtol=rtol)
    np.testing.assert_allclose(lk.log_softmax(x), np.array(x, dtype=np.float64) - lse[:, None],
                               rtol=rtol, atol=rtol * b)
    assert np.all(np.isfinite(lk.log_softmax(x)))


@pytest.mark.parametrize("big", [1e8, -1e8, 1e15])
def test_log_softmax_keeps_full_precision_at_large_offsets(big):
    # log_softmax is invariant to the common offset: (0, 0, -1) - log(2 + e^-1), whatever
    # big is. Forming x - logsumexp(x) would round big + log(...) at the scale of big and
    # lose ~ulp(big) (1.5e-8 at 1e8, 0.125 at 1e15).
    x = np.array([big, big, big - 1.0])
    expected = np.array([0.0, 0.0, -1.0]) - np.log(2.0 + np.exp(-1.0))
    np.testing.assert_allclose(lk.log_softmax(x), expected, rtol=1e-14)


def test_log_softmax_is_finite_where_naive_log_of_softmax_is_not():
    # SciPy's teaching contrast: log(softmax([1000, 1])) underflows to -inf at the second entry
    out = lk.log_softmax(np.array([1000.0, 1.0]))
    np.testing.assert_allclose(out, [0.0, -999.0], atol=1e-12)


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_elementwise_at_huge_arguments(big):
    x = np.array([-big, big])
    np.testing.assert_array_equal(lk.sigmoid(x), [0.0, 1.0])
    # log sigma(-big) = -softplus(big) = -big; log sigma(big) = -log1p(e^-big) = -0
    np.testing.assert_array_equal(lk.log_sigmoid(x), [-big, 0.0])
    np.testing.assert_array_equal(lk.softplus(x), [0.0, big])


def test_minus_inf_entries_get_probability_zero():
    x = np.array([[0.0, -INF, 0.0], [-INF, 3.0, -INF]])
    np.testing.assert_array_equal(lk.softmax(x), [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    ln2 = math.log(2.0)
    np.testing.assert_allclose(lk.log_softmax(x), [[-ln2, -INF, -ln2], [-INF, 0.0, -INF]],
                               rtol=1e-15)
    np.testing.assert_allclose(lk.logsumexp(x), [ln2, 3.0], rtol=1e-15)
    # and along the other axis: column 1 is (-inf, 3)
    np.testing.assert_array_equal(lk.softmax(x, axis=0)[:, 1], [0.0, 1.0])


def test_all_minus_inf_row():
    x = np.array([[-INF, -INF, -INF], [0.0, 0.0, 0.0]])
    lse = lk.logsumexp(x)
    assert lse[0] == -INF  # the log of an empty sum, as scipy.special.logsumexp
    np.testing.assert_array_equal(lse, sc.logsumexp(x, axis=-1))
    p = lk.softmax(x)
    expected = torch.softmax(torch.as_tensor(x), dim=-1).numpy()  # NaN row, as PyTorch
    assert np.isnan(p[0]).all() and np.isnan(expected[0]).all()
    np.testing.assert_allclose(p[1], expected[1], rtol=1e-15)
    logp = lk.log_softmax(x)
    assert np.isnan(logp[0]).all()
    np.testing.assert_allclose(logp[1], -math.log(3.0), rtol=1e-15)


def test_plus_inf_entry():
    x = np.array([[1.0, -INF, INF], [0.0, 1.0, 2.0]])
    lse = lk.logsumexp(x)
    assert lse[0] == INF
    np.testing.assert_array_equal(lse[0], sc.logsumexp(x[0]))
    # the softmax of a row with +inf is undefined: NaN, as SciPy and PyTorch
    p = lk.softmax(x)
    assert np.isnan(p[0]).all()
    assert torch.softmax(torch.as_tensor(x), dim=-1)[0].isnan().all()
    np.testing.assert_allclose(p[1], sc.softmax(x[1]), rtol=1e-15)
    # log_softmax as SciPy: x - inf = -inf for every other entry, NaN at the +inf entry
    with np.errstate(all="ignore"):
        expected = sc.log_softmax(x, axis=-1)
    np.testing.assert_allclose(lk.log_softmax(x), expected, rtol=1e-15, equal_nan=True)
    np.testing.assert_array_equal(lk.log_softmax(x)[0], [-INF, -INF, NAN])


@pytest.mark.parametrize("name", ROW_FUNCS)
def test_nan_poisons_its_row_only(name):
    x = np.array([[NAN, 0.0, 1.0], [0.0, 1.0, 2.0]])
    out = call(name, x, -1)
    assert np.isnan(out[0]).all()
    assert not np.isnan(out[1]).any()
    np.testing.assert_allclose(out[1], ref(name, x[1], -1), rtol=1e-14)


def test_nan_propagates_elementwise():
    x = np.array([NAN, 0.0])
    for name in ELEMENTWISE:
        out = call(name, x)
        assert np.isnan(out[0]), name
        np.testing.assert_allclose(out[1], ref(name, x[1:])[0], rtol=1e-15)


@pytest.mark.parametrize("name,expected", [
    ("sigmoid", [0.0, 1.0]),
    ("log_sigmoid", [-INF, 0.0]),
    ("softplus", [0.0, INF]),
])
def test_elementwise_at_infinity(name, expected):
    np.testing.assert_array_equal(call(name, np.array([-INF, INF])), expected)


def test_empty_axis():
    x = np.zeros((2, 0))
    lse = lk.logsumexp(x)
    assert lse.shape == (2,)
    np.testing.assert_array_equal(lse, [-INF, -INF])  # empty sum; scipy agrees
    np.testing.assert_array_equal(lse, sc.logsumexp(x, axis=-1))
    assert lk.softmax(x).shape == (2, 0)
    assert lk.log_softmax(x).shape == (2, 0)
    # empty along the other axis: each column is an empty sum
    np.testing.assert_array_equal(lk.logsumexp(np.zeros((0, 3)), axis=0), [-INF] * 3)
    assert lk.logsumexp(np.zeros((0, 3)), axis=-1).shape == (0,)
    assert lk.sigmoid(np.zeros((0,))).shape == (0,)


def test_torch_empty_axis_agrees_with_torch():
    t = torch.zeros((2, 0), dtype=torch.float64)
    torch.testing.assert_close(lk.logsumexp(t), torch.logsumexp(t, dim=-1))


# ------------------------------------------------------------------ backends and dtypes
# the edge matrix: one row per edge case; expected values are SciPy's (softmax: NaN rows
# as in PyTorch and SciPy); +-1e30 stays far from overflow of x - max
EDGE = np.array([
    [1e30, -1e30, 0.0, 1.0],
    [1e4, -1e4, 1e4, 0.0],
    [0.0, -INF, 1.0, -INF],
    [-INF, -INF, -INF, -INF],
    [1.0, -INF, INF, 0.0],
    [NAN, 0.0, 1.0, 2.0],
])


def _edge_expected(name):
    if name == "softmax":
        return torch.softmax(torch.as_tensor(EDGE), dim=-1).numpy()
    return ref(name, EDGE, -1)


@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
@pytest.mark.parametrize("backend", BACKENDS, ids=[b.name for b in BACKENDS])
def test_edge_matrix_on_every_backend_without_warnings(backend, name):
    x = backend.asarray(EDGE)
    out = call(name, x, -1)
    assert backend.is_native(out), type(out)
    got = backend.to_numpy(out)  # Dask computes here, still under the warnings filter
    np.testing.assert_allclose(got, _edge_expected(name), rtol=1e-13, atol=0, equal_nan=True)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ROW_FUNCS)
@pytest.mark.parametrize("backend", BACKENDS, ids=[b.name for b in BACKENDS])
def test_library_is_preserved_with_axis(backend, name, axis):
    x = _data(4)
    out = call(name, backend.asarray(x), axis)
    assert backend.is_native(out), type(out)
    np.testing.assert_allclose(backend.to_numpy(out), ref(name, x, axis), rtol=1e-12,
                               atol=1e-14)


def _to_backend(lib, x, dtype):
    if lib == "numpy":
        return np.asarray(x, dtype=dtype)
    if lib == "torch":
        return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(getattr(torch, dtype))
    if lib == "jax":
        import jax.numpy as jnp

        return jnp.asarray(x, dtype=getattr(jnp, dtype))
    if lib == "array_api_strict":
        xps = pytest.importorskip("array_api_strict")
        return xps.asarray(np.asarray(x, dtype=dtype))
    if lib == "dask":
        da = pytest.importorskip("dask.array")
        return da.from_array(np.asarray(x, dtype=dtype), chunks=2)
    raise AssertionError(lib)


def _back(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).numpy()
    if hasattr(x, "compute"):
        x = x.compute()
    return np.asarray(x).astype(np.float64)


def _dtype_name(x):
    return str(x.dtype).replace("torch.", "").replace("array_api_strict.", "")


TOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5, "float64": 1e-12}
DTYPE_CASES = [
    ("numpy", "float16"), ("numpy", "float32"), ("numpy", "float64"),
    ("torch", "bfloat16"), ("torch", "float16"), ("torch", "float32"), ("torch", "float64"),
    ("jax", "float16"), ("jax", "float32"),
    ("array_api_strict", "float32"), ("dask", "float32"),
]


@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
@pytest.mark.parametrize("lib,dtype", DTYPE_CASES, ids=[f"{a}-{b}" for a, b in DTYPE_CASES])
def test_dtype_is_preserved(lib, dtype, name):
    x = _to_backend(lib, _data(5, scale=2.0), dtype)
    out = call(name, x, 0)
    assert _dtype_name(out) == dtype
    # the reference sees exactly the rounded low-precision inputs
    xin = _back(x)
    tol = TOL[dtype]
    np.testing.assert_allclose(_back(out), ref(name, xin, 0), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
def test_half_precision_is_computed_in_float32(name):
    # computed in float32 and rounded once, the float16 result is within 1 ulp of the float64
    # reference rounded to float16; a softmax formed natively in float16 is up to 7 ulp off
    # on this very input
    x = np.random.default_rng(0).normal(scale=3.0, size=(20, 30)).astype(np.float16)
    expected = ref(name, x, -1).astype(np.float16)
    np.testing.assert_array_max_ulp(call(name, x, -1), expected, maxulp=1)


# ------------------------------------------------------------------ input errors
INTEGER_INPUTS = [
    ("numpy-int64", lambda: np.array([[1, 2], [3, 4]], dtype=np.int64), "int64"),
    ("numpy-int32", lambda: np.array([[1, 2], [3, 4]], dtype=np.int32), "int32"),
    ("numpy-uint8", lambda: np.array([[1, 2], [3, 4]], dtype=np.uint8), "uint8"),
    ("numpy-bool", lambda: np.array([[True, False]]), "bool"),
    ("torch-int64", lambda: torch.tensor([[1, 2], [3, 4]]), "int64"),
]


@pytest.mark.parametrize("name", ROW_FUNCS + ELEMENTWISE)
@pytest.mark.parametrize("label,make,dtype", INTEGER_INPUTS, ids=[c[0] for c in INTEGER_INPUTS])
def test_integer_arrays_are_a_type_error(name, label, make, dtype):
    with pytest.raises(TypeError, match=rf"`x` must have a floating dtype .*; got {dtype}\b"):
        call(name, make(), -1)


def test_integer_arrays_of_other_libraries_are_a_type_error():
    import jax.numpy as jnp

    xps = pytest.importorskip("array_api_strict")
    for x in (jnp.asarray([1, 2], dtype=jnp.int32), xps.asarray([1, 2])):
        with pytest.raises(TypeError, match=r"`x` must have a floating dtype.*got int"):
            lk.softmax(x)


def test_python_lists_are_accepted():
    out = lk.softmax([1, 2, 3])  # a list of ints is data, not an integer array
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, sc.softmax([1.0, 2.0, 3.0]), rtol=1e-15)
    np.testing.assert_allclose(lk.logsumexp([[0.0, 0.0], [1.0, 1.0]], axis=0),
                               sc.logsumexp([[0.0, 0.0], [1.0, 1.0]], axis=0), rtol=1e-15)
    np.testing.assert_allclose(lk.log_softmax((0.0, 0.0)), [-math.log(2)] * 2, rtol=1e-15)
    np.testing.assert_allclose(lk.sigmoid([0, 1]), sc.expit([0.0, 1.0]), rtol=1e-15)
    np.testing.assert_allclose(lk.log_sigmoid([0.0]), [-math.log(2)], rtol=1e-15)
    np.testing.assert_allclose(lk.softplus([0.0]), [math.log(2)], rtol=1e-15)


@pytest.mark.parametrize("name", ROW_FUNCS)
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range_is_a_value_error(name, axis):
    with pytest.raises(ValueError,
                       match=rf"`axis` must lie in \[-2, 1\] for an input of shape \(2, 3\); "
                             rf"got {axis}$"):
        call(name, np.zeros((2, 3)), axis)


@pytest.mark.parametrize("name", ROW_FUNCS)
def test_axis_of_a_0d_input_is_a_value_error(name):
    with pytest.raises(ValueError, match=r"`axis`=-1 needs .*at least one dimension.*0-d"):
        call(name, np.array(1.0), -1)


@pytest.mark.parametrize("name", ROW_FUNCS)
@pytest.mark.parametrize("axis,kind", [(1.5, "float"), ("1", "str"), (True, "bool")])
def test_axis_of_the_wrong_type_is_a_type_error(name, axis, kind):
    with pytest.raises(TypeError, match=rf"`axis` must be an int; got {re.escape(repr(axis))}$"):
        call(name, np.zeros((2, 3)), axis)


# ------------------------------------------------------------------ properties
_finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_subnormal=False)
_matrix = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                     elements=_finite)
_with_minus_inf = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.one_of(_finite, st.just(-INF)))
_vector = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=20),
                     elements=st.floats(min_value=-1e300, max_value=1e300, allow_nan=False,
                                        allow_subnormal=False))
_settings = settings(max_examples=60, deadline=None)


@_settings
@given(_with_minus_inf, st.sampled_from(AXES))
def test_softmax_sums_to_one(x, axis):
    rows_ok = np.any(np.isfinite(x), axis=axis)  # an all -inf slice has no softmax
    p = lk.softmax(x, axis=axis)
    assert np.all(p[np.broadcast_to(np.expand_dims(rows_ok, axis), p.shape)] >= 0)
    np.testing.assert_allclose(np.sum(p, axis=axis)[rows_ok], 1.0, rtol=1e-12)


@_settings
@given(_matrix, st.floats(min_value=-1e3, max_value=1e3, allow_nan=False))
def test_softmax_is_shift_invariant(x, c):
    np.testing.assert_allclose(lk.softmax(x + c), lk.softmax(x), rtol=1e-9, atol=1e-12)
    # and logsumexp shifts with it (absolute error: a few ulps of the largest magnitude)
    scale = max(1.0, float(np.max(np.abs(x))) + abs(c))
    np.testing.assert_allclose(lk.logsumexp(x + c), lk.logsumexp(x) + c, rtol=0,
                               atol=16 * np.finfo(float).eps * scale)


@_settings
@given(_with_minus_inf)
def test_log_softmax_is_log_of_softmax_where_finite(x):
    p = lk.softmax(x)
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    where = np.isfinite(logp) & (p > 1e-300)  # deep underflow has no relative precision
    np.testing.assert_allclose(lk.log_softmax(x)[where], logp[where], rtol=1e-12, atol=1e-12)
    # -inf logits have log-probability exactly -inf where the row has a finite entry
    rows_ok = np.any(np.isfinite(x), axis=-1, keepdims=True)
    assert np.all(lk.log_softmax(x)[(x == -INF) & rows_ok] == -INF)


@_settings
@given(_vector)
def test_logsumexp_is_at_least_the_max(x):
    lse, m = float(lk.logsumexp(x)), float(np.max(x))
    assert lse >= m
    # and at most max + ln n (every term at most e^max), up to rounding of the sum
    assert lse <= m + math.log(x.size) + 1e-12 + abs(m) * 4e-16


@_settings
@given(hnp.arrays(np.float64, st.integers(1, 20),
                  elements=st.floats(allow_nan=False, allow_subnormal=False)))
def test_sigmoid_symmetry(x):
    np.testing.assert_allclose(lk.sigmoid(-x), 1.0 - lk.sigmoid(x), rtol=0, atol=4e-16)


@_settings
@given(hnp.arrays(np.float64, st.integers(1, 20),
                  elements=st.floats(min_value=-1e300, max_value=1e300, allow_nan=False,
                                     allow_subnormal=False)))
def test_log_sigmoid_odd_part_is_the_identity(x):
    # log sigma(x) - log sigma(-x) = log(e^x) = x
    np.testing.assert_allclose(lk.log_sigmoid(x) - lk.log_sigmoid(-x), x, rtol=1e-14,
                               atol=1e-14)
