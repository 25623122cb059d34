"""The fused box-family kernel (``losskit.kernels.boxes``) against the generic Array-API path.

The generic kernels of ``losskit.losses.boxes`` are the reference (tested against
torchvision's formulas, the papers and autodiff elsewhere); here the fused driver must
give their value and gradient, up to rounding, for every box loss and its main options,
every reduction, float32 and float64, ``out=``, sample weights, odd layouts, degenerate,
tiny and huge boxes, small and large (parallel) batches and concurrent calls, and must
really be the path that answered (``fast_paths.STATS``). Anything it does not cover must
fall back to the generic path, whose errors are raised unchanged.

Compilation: 10 losses x 2 float types (serial build) and 5 parallel builds, cached on
disk by numba (``cache=True``) after the first run.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import boxes as kboxes
from losskit.kernels import fast_paths as _fast
from engines import call as _call, fused as fast, generic

numba = pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)

# every loss with its main option configurations (tests/cases/cases_boxes.py), and the
# default (stopped) gradients
CONFIGS = [
    ("iou_loss", {}),
    ("giou_loss", {}),
    ("giou_loss", {"inner_ratio": 0.8}),
    ("diou_loss", {}),
    ("diou_loss", {"inner_ratio": 1.25}),
    ("ciou_loss", {}),
    ("ciou_loss", {"stop_gradient": False}),
    ("ciou_loss", {"stop_gradient": False, "inner_ratio": 0.7}),
    ("eiou_loss", {}),
    ("eiou_loss", {"inner_ratio": 0.75}),
    ("focal_eiou_loss", {}),
    ("focal_eiou_loss", {"stop_gradient": False}),
    ("focal_eiou_loss", {"stop_gradient": False, "gamma": 2.0}),
    ("siou_loss", {}),
    ("siou_loss", {"theta": 2.0, "inner_ratio": 1.1}),
    ("wiou_loss", {}),
    ("wiou_loss", {"stop_gradient": False}),
    ("wiou_loss", {"version": 2, "iou_mean": 0.6}),
    ("wiou_loss", {"version": 2, "iou_mean": 0.6, "stop_gradient": False}),
    ("wiou_loss", {"version": 3, "iou_mean": 0.6}),
    ("wiou_loss", {"version": 3, "iou_mean": 0.6, "stop_gradient": False}),
    ("mpdiou_loss", {"image_size": (16.0, 12.0)}),
    ("mpdiou_loss", {"image_size": (20.0, 10.0), "inner_ratio": 0.9}),
    ("inner_iou_loss", {}),
    ("inner_iou_loss", {"ratio": 1.3}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o in CONFIGS]

# pairs where the piecewise terms meet: identical boxes, zero-size and point boxes, flat
# pairs (an axis where all four coordinates are equal), touching edges, containment, equal
# coordinates (ties), far apart
SPECIAL = np.array([
    [[1, 2, 4, 6], [1, 2, 4, 6]],
    [[2, 1, 2, 5], [1, 1, 4, 4]],
    [[3, 3, 3, 3], [1, 1, 4, 4]],
    [[3, 3, 3, 3], [3, 3, 3, 3]],
    [[2, 1, 2, 5], [2, 0, 2, 3]],
    [[0, 0, 1, 1], [1, 0, 2, 1]],
    [[1, 1, 2, 2], [0, 0, 4, 4]],
    [[0, 0, 2, 3], [0, 1, 2, 4]],
    [[0, 0, 1, 1], [50, 60, 52, 63]],
    [[1, 1, 3, 3], [0, 0, 4, 4]],
], dtype=np.float64)


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    """Every test here starts with the fast paths on, whatever LOSSKIT_DISABLE_* say."""
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(_fast, "USE_NUMBA", True)


def boxes(n, seed=0, special=True):
    """(prediction, target) of shape (n, 4) in float64: general position (as
    cases_boxes.box_pairs), the first ones overlapping, then the special pairs."""
    rng = np.random.default_rng(seed)
    tc = rng.uniform(0.0, 10.0, size=(n, 2))
    ts = rng.uniform(1.0, 4.0, size=(n, 2))
    pc = tc + rng.uniform(-0.9, 0.9, size=(n, 2)) * ts
    ps = ts * rng.uniform(0.6, 1.7, size=(n, 2))
    p = np.concatenate([pc - ps / 2, pc + ps / 2], axis=-1)
    t = np.concatenate([tc - ts / 2, tc + ts / 2], axis=-1)
    if special:
        k = min(n, len(SPECIAL))
        p[-k:], t[-k:] = SPECIAL[:k, 0], SPECIAL[:k, 1]
    return p, t


def close(actual, expected, dtype):
    """Equal up to rounding, relative to the largest expected magnitude (gradients of
    tiny boxes are huge, and cancellations make single components small)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    big = float(np.abs(expected[finite]).max()) if finite.any() else 0.0
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * big, equal_nan=True)


def same(actual, expected, dtype):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            close(a, e, dtype)
    else:
        close(actual, expected, dtype)


# ------------------------------------------------------------------ every loss and option
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name, opts", CONFIGS, ids=IDS)
def test_equals_the_generic_path(name, opts, dtype):
    loss = getattr(lk, name)
    p, t = boxes(40)
    p, t = p.astype(dtype).reshape(4, 10, 4), t.astype(dtype).reshape(4, 10, 4)
    for reduction in REDUCTIONS:
        same(fast(loss, p, t, reduction=reduction, **opts),
             generic(loss, p, t, reduction=reduction, **opts), dtype)
    for want in ("value", "grad"):
        same(fast(loss, p, t, want=want, **opts), generic(loss, p, t, want=want, **opts), dtype)
    # one box: a 0-d loss
    same(fast(loss, p[0, 0], t[0, 0], reduction="batchmean", **opts),
         generic(loss, p[0, 0], t[0, 0], reduction="batchmean", **opts), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-30, 1e12], ids=["tiny", "huge"])
@pytest.mark.parametrize("name, opts", CONFIGS, ids=IDS)
def test_tiny_and_huge_coordinates(name, opts, scale, dtype):
    loss = getattr(lk, name)
    if name == "mpdiou_loss":  # the image scales with the boxes
        opts = dict(opts, image_size=tuple(s * scale for s in opts["image_size"]))
    p, t = boxes(24)
    p, t = (p * scale).astype(dtype), (t * scale).astype(dtype)
    for reduction in ("none", "sum"):
        got = fast(loss, p, t, reduction=reduction, **opts)
        if dtype == np.float32:
            # the fused kernel computes in float64: the generic float64 path on the same
            # float32 values, rounded to float32 (ulps apart)
            ref = generic(loss, p.astype(np.float64), t.astype(np.float64),
                          reduction=reduction, **opts)
            same(got, tuple(np.asarray(r, np.float32) for r in ref), dtype)
            if name == "focal_eiou_loss" and scale < 1:
                continue  # float32 arithmetic underflows IoU^gamma (1e-53) to 0: see below
        same(got, generic(loss, p, t, reduction=reduction, **opts), dtype)


def test_tiny_focal_weight_does_not_underflow():
    # at 1e-30 with eps = 1e-7, IoU = I / (U + eps) is about 1e-53: 0 in float32 arithmetic
    # (the generic float32 path), kept by the fused kernel's float64 arithmetic
    p, t = boxes(24, special=False)
    p32, t32 = (p * 1e-30).astype(np.float32), (t * 1e-30).astype(np.float32)
    v = fast(lk.focal_eiou_loss, p32, t32, want="value", reduction="none")
    v64 = generic(lk.focal_eiou_loss, p32.astype(np.float64), t32.astype(np.float64),
                  want="value", reduction="none")
    overlap = v64 > 0  # (disjoint pairs have weight 0)
    assert overlap.sum() >= 12
    np.testing.assert_allclose(v, v64.astype(np.float32), rtol=1e-5)
    assert np.all(v[overlap] > 0)
    assert np.all(generic(lk.focal_eiou_loss, p32, t32, want="value", reduction="none") == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_far_from_the_origin(dtype):
    # small boxes at 1e12 (and a flat pair there): the scale follows the enclosing box
    p, t = boxes(24)
    p, t = (p + 1e12).astype(dtype), (t + 1e12).astype(dtype)
    for name in ("giou_loss", "ciou_loss", "siou_loss"):
        loss = getattr(lk, name)
        same(fast(loss, p, t, reduction="none"), generic(loss, p, t, reduction="none"), dtype)


@pytest.mark.parametrize("name", ["giou_loss", "diou_loss", "eiou_loss"])
def test_eps_zero(name):
    # the papers' formulas: NaN where a denominator vanishes (degenerate pairs), as generic
    loss = getattr(lk, name)
    p, t = boxes(20)
    same(fast(loss, p, t, reduction="none", eps=0.0), generic(loss, p, t, reduction="none",
                                                              eps=0.0), np.float64)
    same(fast(loss, p, t, reduction="none", eps=0.5), generic(loss, p, t, reduction="none",
                                                              eps=0.5), np.float64)


# ------------------------------------------------------------------ arrays and out=
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_out_readonly_noncontiguous_and_target_dtypes(dtype):
    loss = lk.giou_loss
    p, t = boxes(30)
    p, t = p.astype(dtype), t.astype(dtype)
    expected = generic(loss, p, t)
    # out=: C-contiguous (written in place), strided, aliasing the prediction
    out = np.full_like(p, 7.0)
    v, g = fast(loss, p, t, out=out)
    assert g is out
    same((v, g), expected, dtype)
    big = np.full((30, 8), 7.0, dtype=dtype)
    v, g = fast(loss, p, t, out=big[:, ::2])
    assert g.base is big and np.all(big[:, 1::2] == 7.0)
    same((v, np.ascontiguousarray(g)), expected, dtype)
    pc = p.copy()
    v, g = fast(loss, pc, t, out=pc)
    assert g is pc
    same((v, g), expected, dtype)
    # read-only inputs
    pr, tr = p.copy(), t.copy()
    pr.setflags(write=False)
    tr.setflags(write=False)
    same(fast(loss, pr, tr), expected, dtype)
    # non-contiguous prediction and target (every other box, transposed storage)
    p2, t2 = np.repeat(p, 2, axis=0)[::2], np.asfortranarray(t)
    assert not p2.flags.c_contiguous and not t2.flags.c_contiguous
    same(fast(loss, p2, t2), expected, dtype)
    # targets of another dtype are cast to the prediction's, as the generic path does
    ti = np.round(t * 3).astype(np.int64)
    pi = np.round(p * 3).astype(dtype)
    same(fast(loss, pi, ti), generic(loss, pi, ti), dtype)
    other = t.astype(np.float64 if dtype == np.float32 else np.float32)
    same(fast(loss, p, other), generic(loss, p, other), dtype)


def test_wrt_all_returns_a_tuple():
    p, t = boxes(12)
    v, (g,) = fast(lk.diou_loss, p, t, wrt="all")
    same((v, g), generic(lk.diou_loss, p, t), np.float64)


@pytest.mark.parametrize("shape", [(0, 4), (3, 0, 4)])
def test_empty_batches(shape):
    p = np.zeros(shape)
    for reduction in REDUCTIONS:
        got = fast(lk.ciou_loss, p, p, reduction=reduction, answered=False)
        same(got, generic(lk.ciou_loss, p, p, reduction=reduction), np.float64)


# ------------------------------------------------------------------ NaN, weights, fallbacks
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_nan_coordinates(dtype):
    p, t = boxes(12)
    p, t = p.astype(dtype), t.astype(dtype)
    p[1, 2] = np.nan
    t[4, 0] = np.nan
    for name, opts in (("giou_loss", {}), ("siou_loss", {}), ("mpdiou_loss", {"image_size": (9, 9)})):
        loss = getattr(lk, name)
        v, g = fast(loss, p, t, reduction="none", **opts)
        assert np.isnan(v[[1, 4]]).all() and np.isnan(g[[1, 4]]).all()
        same((v, g), generic(loss, p, t, reduction="none", **opts), dtype)
        same(fast(loss, p, t, **opts), generic(loss, p, t, **opts), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sample_weight(dtype, reduction):
    p, t = boxes(24)
    p, t = p.astype(dtype).reshape(4, 6, 4), t.astype(dtype).reshape(4, 6, 4)
    p[2, 3, 0] = np.nan  # removed by its zero weight
    rng = np.random.default_rng(1)
    w = rng.uniform(0.0, 2.0, size=(4, 6))
    w[2, 3] = 0.0
    w[0, :2] = 0.0
    for loss, opts in ((lk.ciou_loss, {}), (lk.wiou_loss, {"version": 3, "iou_mean": 0.5})):
        for sw in (w, w.astype(np.float32), w[:, 0], np.zeros((4, 6))):
            if sw.ndim == 1:
                sw = np.where(np.arange(4) == 2, 0.0, sw)  # the NaN box's row
            same(fast(loss, p, t, reduction=reduction, sample_weight=sw, **opts),
                 generic(loss, p, t, reduction=reduction, sample_weight=sw, **opts), dtype)


def test_invalid_weights_and_options_raise_the_generic_errors():
    p, t = boxes(6)
    for kw in ({"sample_weight": -np.ones(6)}, {"sample_weight": np.ones(5)},
               {"inner_ratio": -1.0}, {"eps": -1.0}, {"inner_ratio": float("inf")}):
        with pytest.raises((ValueError, TypeError)) as fast_err:
            fast(lk.giou_loss, p, t, answered=False, **kw)
        with pytest.raises(type(fast_err.value)) as generic_err:
            generic(lk.giou_loss, p, t, **kw)
        assert str(fast_err.value) == str(generic_err.value)
    for kw in ({"version": 2}, {"version": 4, "iou_mean": 0.5}, {"gamma": -1.0},
               {"stop_gradient": 1}):
        with pytest.raises((ValueError, TypeError), match=r".") as fast_err:
            fast(lk.wiou_loss, p, t, answered=False, **kw)
        with pytest.raises(type(fast_err.value)) as generic_err:
            generic(lk.wiou_loss, p, t, **kw)
        assert str(fast_err.value) == str(generic_err.value)


@pytest.mark.parametrize("which", ["prediction", "target"])
def test_unordered_boxes_raise_the_generic_error(which):
    p, t = boxes(2000)  # the parallel build's checks too
    bad = p if which == "prediction" else t
    bad[1500, [1, 3]] = bad[1500, [3, 1]] + [0.5, 0]  # y2 < y1
    with pytest.raises(ValueError, match=f"`{which}` of siou_loss must hold boxes") as err:
        fast(lk.siou_loss, p, t, answered=False)
    with pytest.raises(ValueError) as generic_err:
        generic(lk.siou_loss, p, t)
    assert str(err.value) == str(generic_err.value)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_uncovered_pairs_fall_back(dtype):
    # infinite coordinates and enclosing boxes beyond the scale's range: the generic path
    p, t = boxes(6)
    p, t = p.astype(dtype), t.astype(dtype)
    pi = p.copy()
    pi[2, 2] = np.inf
    same(fast(lk.diou_loss, pi, t, reduction="none", answered=False),
         generic(lk.diou_loss, pi, t, reduction="none"), dtype)
    big = dtype(1e30 if dtype == np.float32 else 1e200)  # above 2**hi of exponent_range
    ph, th = p * big, t * big
    same(fast(lk.giou_loss, ph, th, reduction="none", answered=False),
         generic(lk.giou_loss, ph, th, reduction="none"), dtype)


def test_numpy_engine_runs_the_generic_path(monkeypatch):
    monkeypatch.setattr(_fast, "USE_NUMBA", False)
    p, t = boxes(12)
    same(fast(lk.eiou_loss, p, t, answered=False), generic(lk.eiou_loss, p, t), np.float64)


# ------------------------------------------------------------------ parallel build, threads
PARALLEL = [("giou_loss", {}, np.float32), ("giou_loss", {}, np.float64),
            ("ciou_loss", {}, np.float32), ("siou_loss", {}, np.float32),
            ("wiou_loss", {"version": 3, "iou_mean": 0.6}, np.float32)]


@pytest.mark.parametrize("name, opts, dtype", PARALLEL,
                         ids=[f"{n}-{np.dtype(d).name}" for n, _, d in PARALLEL])
def test_parallel_build(name, opts, dtype):
    n = kboxes.parallel_min_boxes() * 2 + 77  # above the threshold, a partial last block
    loss = getattr(lk, name)
    p, t = boxes(n, seed=3)
    p, t = p.astype(dtype), t.astype(dtype)
    for reduction in ("none", "mean"):
        same(fast(loss, p, t, reduction=reduction, **opts),
             generic(loss, p, t, reduction=reduction, **opts), dtype)
    w = np.random.default_rng(2).uniform(0, 1, n)
    same(fast(loss, p, t, sample_weight=w, **opts),
         generic(loss, p, t, sample_weight=w, **opts), dtype)


def test_concurrent_calls():
    n = kboxes.parallel_min_boxes() + 500
    inputs = [tuple(a.astype(np.float32) for a in boxes(n if k % 2 else 300, seed=k))
              for k in range(4)]
    expected = [generic(lk.giou_loss, p, t) for p, t in inputs]
    lk.giou_loss.value_and_grad(*inputs[0])  # compiled before the threads start
    errors = []

    def work(k):
        p, t = inputs[k]
        for _ in range(6):
            try:
                same(lk.giou_loss.value_and_grad(p, t), expected[k], np.float32)
            except AssertionError as exc:  # pragma: no cover - reported below
                errors.append(f"thread {k}: {exc}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


# ------------------------------------------------------------------ polynomial routines
# The driver's loop vectorises only without calls into the C library: atan, exp and
# expm1 are polynomials there (losskit.kernels.boxes_numba). References: the C library's
# math.atan and numpy.expm1 (correctly rounded to within 1 ulp), never losskit itself.
def _apply(fn):
    """``fn`` over a float64 array, in a loop that numba compiles (as the driver does)."""
    @numba.njit(error_model="numpy")  # as the kernels: x / 0 is inf, not an error
    def run(xs):
        out = np.empty_like(xs)
        for i in range(xs.size):
            out[i] = fn(xs[i])
        return out
    return run


def _ulps(actual, expected):
    return np.abs(actual - expected) / np.spacing(np.abs(expected))


def test_polynomial_atan_within_one_ulp():
    from losskit.kernels import boxes_numba as bn
    rng = np.random.default_rng(0)
    finite = rng.integers(0, 0x7FF0000000000000, 400_000, dtype=np.int64).view(np.float64)
    x = np.concatenate([
        finite,                                  # every binade, subnormals included
        rng.uniform(0.0, 4.0, 400_000),           # the three ranges of the reduction
        np.linspace(0.65, 0.67, 20_001),          # around the switch at 0.66
        np.linspace(2.40, 2.43, 20_001),          # around tan(3 pi / 8)
        [0.66, np.nextafter(0.66, 1), 2.414213562373095, 2.4142135623730954, 1.0,
         5e-324, 1e-300, 1e300, np.finfo(np.float64).max],
    ])
    x = np.concatenate([x, -x])
    got = _apply(bn._atan)(x)
    expected = np.array([math.atan(v) for v in x])
    assert _ulps(got, expected).max() <= 1.0
    special = _apply(bn._atan)(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    assert special[0] == 0.0 and not np.signbit(special[0])
    assert special[1] == 0.0 and np.signbit(special[1])
    assert special[2] == math.pi / 2 and special[3] == -math.pi / 2
    assert np.isnan(special[4])
    # float32 boxes: the routine runs on their float64 values; rounded once to float32 it
    # is within 1 ulp of float32(atan)
    x32 = rng.integers(0, 0x7F800000, 400_000, dtype=np.int32).view(np.float32)
    got32 = _apply(bn._atan)(x32.astype(np.float64)).astype(np.float32)
    exp32 = np.array([math.atan(v) for v in x32.astype(np.float64)]).astype(np.float32)
    assert _ulps(got32.astype(np.float64), exp32.astype(np.float64)).max() <= 1.0


def test_atan2_of_box_sides():
    from losskit.kernels import boxes_numba as bn

    @numba.njit(error_model="numpy")  # as the kernels: x / 0 is inf, not an error
    def run(ys, xs):
        out = np.empty_like(ys)
        for i in range(ys.size):
            out[i] = bn._atan2_pos(ys[i], xs[i])
        return out

    rng = np.random.default_rng(1)
    y = np.concatenate([rng.uniform(0, 10, 10_000), [0.0, 0.0, 3.0, np.inf, 5e-324, 1.0]])
    x = np.concatenate([rng.uniform(0, 10, 10_000), [0.0, 2.0, 0.0, 1.0, 1.0, 5e-324]])
    expected = np.array([math.atan2(a, b) for a, b in zip(y, x)])
    got = run(y, x)
    # one rounding of y / x (half an ulp of the quotient: at most one of atan) + 1 ulp
    assert _ulps(got, expected).max() <= 2.0
    assert got[-6] == 0.0 and got[-4] == math.pi / 2


def test_polynomial_one_minus_exp_neg_within_two_ulp():
    from losskit.kernels import boxes_numba as bn
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0.0, 1.0, 400_000), np.logspace(-320, 0, 20_000),
                        [0.0, 5e-324, 1e-17, 0.5, np.nextafter(1.0, 0), 1.0]])
    got = _apply(bn._one_minus_exp_neg)(x)
    expected = -np.expm1(-x)
    assert _ulps(got, expected).max() <= 2.0
    assert got[-6] == 0.0 and np.isnan(_apply(bn._one_minus_exp_neg)(np.array([np.nan])))[0]


@pytest.mark.parametrize("name, opts", [
    ("siou_loss", {"theta": 2.5}), ("siou_loss", {"theta": 1.0}),
    ("focal_eiou_loss", {"gamma": 0.75, "stop_gradient": False}),
    ("focal_eiou_loss", {"gamma": 0.0}),
    ("wiou_loss", {"version": 2, "iou_mean": 0.6, "gamma": 1.3, "stop_gradient": False}),
    ("wiou_loss", {"version": 2, "iou_mean": 0.6, "gamma": 3.0}),
])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_exponent_builds(name, opts, dtype):
    # the builds by exponent (products for 0.5 and 0 to 6, pow otherwise), against generic
    loss = getattr(lk, name)
    p, t = boxes(40)
    p, t = p.astype(dtype), t.astype(dtype)
    same(fast(loss, p, t, reduction="none", **opts),
         generic(loss, p, t, reduction="none", **opts), dtype)
