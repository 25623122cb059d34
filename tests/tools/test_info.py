"""losskit.info: self-information, entropy, cross-entropy, KL and JS divergences.

Expected numbers come from the sources (the digest, section 4), from mathematics, or from
independent implementations: scipy.stats.entropy, scipy.special.rel_entr / xlogy,
scipy.spatial.distance.jensenshannon (which returns the *square root* of JS),
torch.nn.functional.kl_div, and mpmath at 50 digits. Never from losskit itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losskit import info

scipy_special = pytest.importorskip("scipy.special")
scipy_stats = pytest.importorskip("scipy.stats")
mpmath = pytest.importorskip("mpmath")

BASES = [math.e, 2.0, 10.0]
SETTINGS = settings(max_examples=50, deadline=None)
PAIR_FUNCS = [info.cross_entropy, info.kl_divergence, info.js_divergence]
ONE_FUNCS = [info.self_information, info.entropy, info.binary_entropy]


# --------------------------------------------------------------------------- references
def ref_entropy(p, base):
    return scipy_stats.entropy(p, base=base, axis=-1)


def ref_kl(p, q, base):
    return scipy_special.rel_entr(p, q).sum(axis=-1) / math.log(base)


def ref_ce(p, q, base):
    return -scipy_special.xlogy(p, q).sum(axis=-1) / math.log(base)


def ref_js(p, q, base):
    # scipy's jensenshannon returns sqrt(JS) (the Jensen-Shannon *distance*), and for
    # p == q its rounding can give sqrt of a tiny negative number (NaN with a warning):
    # the divergence itself from scipy's rel_entr, JS = (KL(p||m) + KL(q||m)) / 2
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = (p + q) / 2
    js = (scipy_special.rel_entr(p, m).sum(-1) + scipy_special.rel_entr(q, m).sum(-1)) / 2
    return js / np.log(base) if base is not None else js


def mp_log(x, base):
    return mpmath.log(x) / mpmath.log(base)


def _rows(seed, shape, zeros=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 1.0, size=shape)
    if zeros:
        x[..., 0] = 0.0
    return x / x.sum(axis=-1, keepdims=True)


@pytest.fixture(autouse=True)
def _no_warnings():
    # RuntimeWarnings from losskit are errors in the pytest config; here every warning is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- the sources
@pytest.mark.parametrize("q, base, printed", [
    ((0.1, 0.9), 10.0, "0.763"),
    ((0.5, 0.5), 10.0, "0.160"),
    ((0.1, 0.9), math.e, "1.7578"),
    ((0.5, 0.5), math.e, "0.3681"),
])
def test_digest_kl_numbers_to_their_printed_precision(q, base, printed):
    # digest section 4: P = (0.9, 0.1); base-10 numbers 0.763, 0.160; natural log 1.7578, 0.3681
    value = float(info.kl_divergence([0.9, 0.1], list(q), base=base))
    decimals = len(printed.split(".")[1])
    assert f"{value:.{decimals}f}" == printed


def test_digest_kl_is_zero_iff_the_distributions_match():
    assert float(info.kl_divergence([0.9, 0.1], [0.9, 0.1])) == 0.0
    assert float(info.kl_divergence([0.9, 0.1], [0.89, 0.11])) > 0.0


def test_digest_one_hot_cross_entropy_only_counts_the_true_class():
    # digest section 4: output 0.6 on the true class gives 0.51, output 0.1 gives 2.30
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    right = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    wrong = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]
    assert f"{float(info.cross_entropy(t, right)):.2f}" == "0.51"
    assert f"{float(info.cross_entropy(t, wrong)):.2f}" == "2.30"


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize("base", BASES)
def test_values_match_scipy_in_float64(base):
    p, q = _rows(0, (4, 5)), _rows(1, (4, 5), zeros=True)
    kw = dict(rtol=1e-6, atol=0)
    np.testing.assert_allclose(info.entropy(p, base=base), ref_entropy(p, base), **kw)
    np.testing.assert_allclose(info.entropy(q, base=base), ref_entropy(q, base), **kw)
    np.testing.assert_allclose(info.cross_entropy(p, q, base=base), ref_ce(p, q, base), **kw)
    np.testing.assert_allclose(info.kl_divergence(p, q, base=base), ref_kl(p, q, base), **kw)
    np.testing.assert_allclose(info.kl_divergence(q, p, base=base), ref_kl(q, p, base), **kw)
    np.testing.assert_allclose(info.js_divergence(p, q, base=base), ref_js(p, q, base), **kw)
    # scipy.stats.entropy(p, q) is the KL divergence
    np.testing.assert_allclose(info.kl_divergence(p, q, base=base),
                               scipy_stats.entropy(p, q, base=base, axis=-1), **kw)


@pytest.mark.parametrize("base", BASES)
def test_values_match_scipy_in_float32(base):
    p, q = _rows(2, (3, 6)).astype(np.float32), _rows(3, (3, 6)).astype(np.float32)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    for ours, ref in ((info.entropy(p, base=base), ref_entropy(p64, base)),
                      (info.cross_entropy(p, q, base=base), ref_ce(p64, q64, base)),
                      (info.kl_divergence(p, q, base=base), ref_kl(p64, q64, base)),
                      (info.js_divergence(p, q, base=base), ref_js(p64, q64, base))):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("base", BASES)
def test_self_and_binary_information_match_mpmath(base):
    with mpmath.workdps(400):  # enough digits to hold 1 - 1e-300 exactly
        _check_self_and_binary_information(base)


def _check_self_and_binary_information(base):
    p = np.array([1e-300, 1e-12, 0.01, 0.25, 0.5, 0.9, 1 - 1e-9, 1.0])
    expected_i = [float(-mp_log(mpmath.mpf(v), base)) for v in p]
    np.testing.assert_allclose(info.self_information(p, base=base), expected_i, rtol=1e-13)

    def h(v):
        v = mpmath.mpf(v)  # the exact binary value of the float
        terms = [-x * mp_log(x, base) for x in (v, 1 - v) if x > 0]
        return float(sum(terms))

    # tight: catches log(1 - p) in place of log1p(-p) at p = 1e-12
    np.testing.assert_allclose(info.binary_entropy(p, base=base), [h(v) for v in p],
                               rtol=1e-12, atol=0)


def test_binary_entropy_equals_two_outcome_entropy_from_scipy():
    p = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(info.binary_entropy(p, base=2),
                               scipy_stats.entropy(np.stack([p, 1 - p]), base=2, axis=0),
                               rtol=1e-12, atol=1e-15)


def test_kl_matches_torch_kl_div():
    torch = pytest.importorskip("torch")
    p, q = _rows(4, (5, 7), zeros=True), _rows(5, (5, 7))
    # torch's convention: kl_div(input=log q, target=p) = sum p (log p - log q)
    ref = torch.nn.functional.kl_div(torch.log(torch.as_tensor(q)), torch.as_tensor(p),
                                     reduction="none").sum(dim=-1).numpy()
    np.testing.assert_allclose(info.kl_divergence(p, q), ref, rtol=1e-10)


def test_kl_with_a_subnormal_q_matches_mpmath_without_overflow():
    # p / q would overflow float64 (0.5 / 1e-310 = 5e309): the log must be split
    p, q = np.array([0.5, 0.5]), np.array([1.0, 1e-310])
    with mpmath.workdps(50):
        expected = sum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                       for a, b in zip(p, q))
    value = float(info.kl_divergence(p, q))
    assert math.isfinite(value)
    np.testing.assert_allclose(value, float(expected), rtol=1e-13)


def test_axis_selects_the_outcome_axis():
    p, q = _rows(6, (3, 4)), _rows(7, (3, 4))
    np.testing.assert_allclose(info.entropy(p.T, axis=0), ref_entropy(p, math.e), rtol=1e-12)
    np.testing.assert_allclose(info.kl_divergence(p.T, q.T, axis=0), ref_kl(p, q, math.e),
                               rtol=1e-12)
    p3 = np.stack([p, p])  # (2, 3, 4) -> outcomes on axis 1 after moving
    out = info.js_divergence(np.moveaxis(p3, -1, 1), np.moveaxis(np.stack([q, q]), -1, 1),
                             axis=1)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out, np.stack([ref_js(p, q, math.e)] * 2), rtol=1e-12)


def test_a_single_distribution_gives_a_0d_array():
    h = info.entropy(np.array([0.25, 0.75]))
    assert isinstance(h, np.ndarray) and h.shape == ()
    kl = info.kl_divergence(np.array([0.25, 0.75]), np.array([0.5, 0.5]))
    assert isinstance(kl, np.ndarray) and kl.shape == ()


# --------------------------------------------------------------------------- edge cases
def test_zero_log_zero_is_zero():
    assert float(info.entropy([1.0, 0.0, 0.0])) == 0.0
    assert float(info.cross_entropy([1.0, 0.0], [1.0, 0.0])) == 0.0
    assert float(info.kl_divergence([0.5, 0.5, 0.0], [0.5, 0.5, 0.0])) == 0.0
    assert float(info.kl_divergence([0.0, 1.0], [0.3, 0.7])) == pytest.approx(-math.log(0.7))
    assert float(info.binary_entropy(0.0)) == 0.0 and float(info.binary_entropy(1.0)) == 0.0
    assert float(info.js_divergence([1.0, 0.0], [1.0, 0.0])) == 0.0


def test_certain_outcome_has_zero_information_and_impossible_infinite():
    np.testing.assert_array_equal(info.self_information([1.0, 0.0]), [0.0, np.inf])


def test_p_positive_where_q_is_zero_gives_inf_not_nan():
    p, q = [0.5, 0.5], [1.0, 0.0]
    assert float(info.kl_divergence(p, q)) == np.inf
    assert float(info.cross_entropy(p, q)) == np.inf
    # the reverse direction is finite: q's zero is weighted by 0
    assert float(info.kl_divergence(q, p)) == pytest.approx(math.log(2.0))
    # JS stays finite and reaches ln 2 for disjoint supports
    assert float(info.js_divergence([1.0, 0.0], [0.0, 1.0])) == pytest.approx(math.log(2.0))
    batch = info.kl_divergence(np.array([[0.5, 0.5], [0.5, 0.5]]),
                               np.array([[1.0, 0.0], [0.5, 0.5]]))
    np.testing.assert_array_equal(batch, [np.inf, 0.0])


@pytest.mark.parametrize("func", ONE_FUNCS + PAIR_FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("base, match", [
    (1, "not 1"), (1.0, "not 1"), (0, r"\(0, inf\]; got 0"), (-2, "got -2"),
    (float("inf"), "finite"), (float("nan"), "got nan"),
])
def test_bad_base_is_an_error(func, base, match):
    args = ([0.5, 0.5],) if func in ONE_FUNCS else ([0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match=match) as exc:
        func(*args, base=base)
    assert "`base`" in str(exc.value)


def test_base_must_be_a_number():
    with pytest.raises(TypeError, match="`base`"):
        info.entropy([0.5, 0.5], base="2")


@pytest.mark.parametrize("func", ONE_FUNCS, ids=lambda f: f.__name__)
def test_p_outside_unit_interval_names_argument_and_extreme(func):
    with pytest.raises(ValueError) as exc:
        func(np.array([1.5, -0.5]))
    msg = str(exc.value)
    assert "`p`" in msg and "[0, 1]" in msg and "min -0.5" in msg
    with pytest.raises(ValueError, match=r"`p`.*above 1 \(max 1\.5\)"):
        func(np.array([1.5, 0.0]))


@pytest.mark.parametrize("func", PAIR_FUNCS, ids=lambda f: f.__name__)
def test_pair_range_errors_name_the_right_argument(func):
    with pytest.raises(ValueError, match=r"`p`.*above 1 \(max 1\.2\)"):
        func([1.2, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"`p` must lie in \[0, 1\].*min -0\.2"):
        func([1.2, -0.2], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"`q`.*below 0 \(min -0\.1\)"):
        func([0.5, 0.5], [1.1, -0.1])


@pytest.mark.parametrize("func", [info.entropy] + PAIR_FUNCS, ids=lambda f: f.__name__)
def test_rows_that_do_not_sum_to_one_are_an_error_not_renormalised(func):
    bad = np.array([[0.5, 0.5], [0.3, 0.3]])
    good = np.full((2, 2), 0.5)
    args = (bad,) if func is info.entropy else (bad, good)
    with pytest.raises(ValueError) as exc:
        func(*args)
    msg = str(exc.value)
    assert "`p`" in msg and "sum to 1" in msg and "0.6" in msg and "1 of 2" in msg
    assert "Normalise it explicitly" in msg
    if func is not info.entropy:
        with pytest.raises(ValueError, match=r"`q`.*sum to 1"):
            func(good, bad)


def test_rounding_in_the_row_sums_is_tolerated():
    # float32 softmax rows sum to 1 only within rounding; float64 within ~1e-16
    rng = np.random.default_rng(8)
    z = rng.normal(size=(50, 1000)).astype(np.float32)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    assert np.abs(p.sum(axis=-1) - 1).max() > 0  # really inexact
    assert np.all(np.isfinite(info.entropy(p)))
    info.kl_divergence([0.1, 0.2, 0.7], [0.7, 0.2, 0.1])  # 0.1 + 0.2 != 0.3 in binary
    with pytest.raises(ValueError, match="sum to 1"):
        info.entropy([0.5, 0.5 + 1e-4])  # beyond 2e-6 in float64


def test_shape_mismatch_is_an_error_quoting_both_shapes():
    with pytest.raises(ValueError) as exc:
        info.kl_divergence(np.full((2, 3), 1 / 3), np.full((3, 2), 0.5))
    assert str(exc.value).startswith("`q` must have the same shape as `p` (2, 3); got (3, 2)")
    with pytest.raises(ValueError, match=r"\(2, 1\).*squeeze"):
        info.js_divergence(np.ones((2, 1)), np.ones(2) / 2, axis=0)


def test_bad_axis_is_an_error():
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-2, 1\].*got 2"):
        info.entropy(np.full((2, 2), 0.5), axis=2)
    with pytest.raises(TypeError, match="`axis` must be an int"):
        info.kl_divergence([0.5, 0.5], [0.5, 0.5], axis=None)
    with pytest.raises(ValueError, match="0-d"):
        info.entropy(np.array(1.0))


def test_integer_arrays_are_an_error_but_integer_lists_are_read_as_float():
    with pytest.raises(TypeError, match="`p` must have a floating dtype.*int64"):
        info.entropy(np.array([1, 0]))
    with pytest.raises(TypeError, match="`q` must have a floating dtype"):
        info.kl_divergence(np.array([1.0, 0.0]), np.array([1, 0]))
    h = info.entropy([1, 0])
    assert h.dtype == np.float64 and float(h) == 0.0
    assert float(info.cross_entropy([0, 1], np.array([0.25, 0.75]))) == pytest.approx(
        -math.log(0.75))


def test_arrays_of_two_libraries_are_an_error():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="one array library"):
        info.kl_divergence(torch.tensor([0.5, 0.5]), jnp.asarray([0.5, 0.5]))


@pytest.mark.parametrize("func", PAIR_FUNCS, ids=lambda f: f.__name__)
def test_nan_propagates_from_either_argument(func):
    # NaN also where the 0 log 0 rule would otherwise hide it
    nan = float("nan")
    assert math.isnan(float(func([nan, 0.5], [0.5, 0.5])))
    assert math.isnan(float(func([0.0, 1.0], [nan, 1.0])))
    assert math.isnan(float(func([1.0, 0.0], [1.0, nan])))
    out = func(np.array([[0.5, 0.5], [nan, 1.0]]), np.full((2, 2), 0.5))
    assert not math.isnan(float(out[0])) and math.isnan(float(out[1]))


@pytest.mark.parametrize("func", ONE_FUNCS, ids=lambda f: f.__name__)
def test_nan_propagates_single_argument(func):
    out = func(np.array([float("nan"), 0.0]))
    assert np.isnan(out).any()


# --------------------------------------------------------------------------- properties
@st.composite
def distributions(draw, max_k=6, zeros=True, n=1):
    k = draw(st.integers(1, max_k))
    lo = 0.0 if zeros else 0.01
    out = []
    for _ in range(n):
        w = draw(arrays(np.float64, (k,), elements=st.floats(lo, 10.0, allow_subnormal=False)))
        if w.sum() == 0:
            w[draw(st.integers(0, k - 1))] = 1.0
        out.append(w / w.sum())
    return out


@SETTINGS
@given(distributions(), st.sampled_from(BASES))
def test_entropy_lies_between_zero_and_log_k(ps, base):
    (p,) = ps
    h = float(info.entropy(p, base=base))
    assert -1e-15 <= h <= math.log(len(p), base) * (1 + 1e-12) + 1e-15


@SETTINGS
@given(distributions(n=2, zeros=False))
def test_kl_is_non_negative_and_zero_only_against_itself(pq):
    p, q = pq
    assert float(info.kl_divergence(p, q)) >= -1e-15
    assert float(info.kl_divergence(p, p)) == 0.0
    assert float(info.kl_divergence(q, q)) == 0.0


@SETTINGS
@given(distributions(n=2), st.sampled_from(BASES))
def test_cross_entropy_is_entropy_plus_kl_in_any_base(pq, base):
    p, q = pq
    ce = float(info.cross_entropy(p, q, base=base))
    hk = float(info.entropy(p, base=base)) + float(info.kl_divergence(p, q, base=base))
    if math.isinf(ce):
        assert hk == ce  # q = 0 where p > 0: both sides +inf
    else:
        np.testing.assert_allclose(ce, hk, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(distributions())
def test_entropy_in_bits_is_nats_over_ln_2(ps):
    (p,) = ps
    np.testing.assert_allclose(float(info.entropy(p, base=2)),
                               float(info.entropy(p)) / math.log(2), rtol=1e-12, atol=1e-15)


@SETTINGS
@given(distributions(n=2))
def test_js_is_symmetric_and_between_zero_and_ln_2(pq):
    p, q = pq
    a, b = float(info.js_divergence(p, q)), float(info.js_divergence(q, p))
    assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
    assert -1e-15 <= a <= math.log(2) * (1 + 1e-12)
    assert float(info.js_divergence(p, q, base=2)) <= 1 + 1e-12


@SETTINGS
@given(distributions(n=2), st.sampled_from(BASES))
def test_js_matches_scipy_on_random_distributions(pq, base):
    p, q = pq
    np.testing.assert_allclose(float(info.js_divergence(p, q, base=base)),
                               float(ref_js(p, q, base)), rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- backends
def _pair(seed):
    return _rows(seed, (3, 4), zeros=True), _rows(seed + 1, (3, 4))


@pytest.mark.parametrize("func", PAIR_FUNCS, ids=lambda f: f.__name__)
def test_pair_functions_on_every_backend(func, backend):
    p, q = _pair(10)
    ref = {info.cross_entropy: ref_ce, info.kl_divergence: ref_kl,
           info.js_divergence: ref_js}[func](p, q, 2.0)
    out = func(backend.asarray(p), backend.asarray(q), base=2)
    assert backend.is_native(out)
    assert str(out.dtype).endswith("float64") and tuple(out.shape) == (3,)
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-6)


@pytest.mark.parametrize("func", ONE_FUNCS, ids=lambda f: f.__name__)
def test_single_functions_on_every_backend(func, backend):
    p = _rows(12, (3, 4), zeros=True)
    ref = {info.self_information: lambda x: -np.log(x, where=x > 0, out=np.full_like(x, -np.inf)),
           info.entropy: lambda x: ref_entropy(x, math.e),
           info.binary_entropy: lambda x: scipy_stats.entropy(np.stack([x, 1 - x]), axis=0),
           }[func](p)
    out = func(backend.asarray(p))
    assert backend.is_native(out) and str(out.dtype).endswith("float64")
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-6)


def test_float32_stays_float32_on_every_backend(backend):
    p, q = (a.astype(np.float32) for a in _pair(14))
    for out, ref in ((info.kl_divergence(backend.asarray(p), backend.asarray(q)),
                      ref_kl(p.astype(float), q.astype(float), math.e)),
                     (info.entropy(backend.asarray(p)), ref_entropy(p.astype(float), math.e))):
        assert backend.is_native(out) and str(out.dtype).endswith("float32")
        np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_as_is(dtype_name):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    p, q = (torch.as_tensor(a).to(dtype) for a in _pair(16))
    p64, q64 = p.double().numpy(), q.double().numpy()  # the rounded inputs
    for out, ref in ((info.kl_divergence(p, q), ref_kl(p64, q64, math.e)),
                     (info.js_divergence(p, q), ref_js(p64, q64, math.e)),
                     (info.entropy(p), ref_entropy(p64, math.e))):
        assert out.dtype == dtype
        tol = 1e-2 if dtype_name == "bfloat16" else 2e-3
        np.testing.assert_allclose(out.double().numpy(), ref, rtol=tol, atol=tol / 10)


def test_numpy_float16_is_returned_as_float16():
    p = np.array([0.25, 0.75], dtype=np.float16)
    out = info.entropy(p, base=2)
    assert out.dtype == np.float16
    np.testing.assert_allclose(float(out), scipy_stats.entropy([0.25, 0.75], base=2), rtol=1e-3)


def test_a_list_takes_the_array_arguments_library_and_dtype():
    torch = pytest.importorskip("torch")
    q = torch.tensor([0.5, 0.5], dtype=torch.float32)
    out = info.kl_divergence([0.9, 0.1], q, base=10)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert f"{float(out):.3f}" == "0.160"


def test_dask_stays_lazy_and_skips_data_checks():
    da = pytest.importorskip("dask.array")
    p, q = _pair(18)
    out = info.kl_divergence(da.from_array(p, chunks=2), da.from_array(q, chunks=2))
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), ref_kl(p, q, math.e), rtol=1e-12)
    # values are not read for validation: an unnormalised row is not computed eagerly
    lazy = info.entropy(da.from_array(np.array([0.5, 0.4])))
    assert isinstance(lazy, da.Array)


def test_jax_jit_traces_the_divergences():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    p, q = _pair(20)
    for func, ref in ((info.kl_divergence, ref_kl), (info.js_divergence, ref_js),
                      (info.cross_entropy, ref_ce)):
        out = jax.jit(lambda a, b, f=func: f(a, b, base=2))(jnp.asarray(p), jnp.asarray(q))
        np.testing.assert_allclose(np.asarray(out), ref(p, q, 2.0), rtol=1e-10)
