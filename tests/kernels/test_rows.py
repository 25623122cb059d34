"""The row family of fused kernels (``losskit.kernels.rows``) against the generic path.

Every routed loss, on both engines (numba, NumPy), must give the generic Array-API
path's value and gradient up to rounding: with class weights, ignored labels, label
smoothing, probability targets, sample weights, every reduction, float32 and float64,
``out=``, read-only and non-contiguous inputs, ``-inf`` and NaN entries, sizes on both
sides of the parallel threshold and from several threads at once. The expected values
come from the generic path (or PyTorch), never from the kernels themselves.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import fast_paths as _fast
from losskit.kernels import rows as _rows
from engines import call as _call, fused, generic, fast_paths_on

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the test extra
    HAVE_NUMBA = False

REDUCTIONS = ("none", "sum", "mean", "batchmean")
INF, NAN = np.inf, np.nan
NUMPY_ONLY: set = set()  # losses without a numba row function (none now)


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch, HAVE_NUMBA)
    # small inputs take the serial build (the parallel one is tested on its own)
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 1 << 17)


@pytest.fixture(params=["numba", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_fast, "USE_NUMBA", request.param == "numba")
    return request.param


def fast(loss, *arrays, engine, want="both", **kw):
    """The row family's answer, asserting that it (and the wanted engine) answered."""
    engine = "numpy" if loss.name in NUMPY_ONLY else engine
    return fused(loss, *arrays, engine=engine, want=want, **kw)


def close(a, b, dt):
    tol = 2e-5 if np.dtype(dt) == np.float32 else 1e-11
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=tol, atol=tol, equal_nan=True)


def same(fast_result, generic_result, dt):
    v, g = fast_result
    v0, g0 = generic_result
    assert np.asarray(v).dtype == np.dtype(dt) and g.dtype == np.dtype(dt)
    assert g.shape == g0.shape and np.shape(v) == np.shape(v0)
    close(v, v0, dt)
    close(g, g0, dt)


# --------------------------------------------------------------------------- inputs
def _logits(rng, n, k, dt):
    z = rng.normal(scale=3.0, size=(n, k)).astype(dt)
    if n > 3 and k > 2:
        z[1, 0] = -INF  # a masked class
        z[2, :] = -INF  # a row of only -inf
    return z


def _probs(rng, n, k, dt):
    return rng.dirichlet(np.ones(k) * 0.5, n).astype(dt)


def _labels(rng, n, k, ignored=True):
    y = rng.integers(0, k, n)
    if ignored and n > 4:
        y[3] = -100
    return y


def _case(name, rng, n, k, dt):
    """(loss, prediction, target, options) of a case with every option it takes."""
    cw = rng.uniform(0.2, 2.0, k)
    if name == "ce_labels":
        return lk.softmax_cross_entropy, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, label_smoothing=0.1)
    if name == "ce_smoothed":  # no class weights: the smoothed hard-label row
        return lk.softmax_cross_entropy, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(ignore_index=-100, label_smoothing=0.1)
    if name == "ce_plain_weighted":
        return lk.softmax_cross_entropy, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100)
    if name == "ce_probs":
        return lk.softmax_cross_entropy, _logits(rng, n, k, dt), _probs(rng, n, k, dt), \
            dict(class_weight=cw, label_smoothing=0.05)
    if name == "nll":
        return lk.nll_loss, np.log(_probs(rng, n, k, dt)), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100)
    if name == "nll_smooth_probs":
        return lk.nll_loss, np.log(_probs(rng, n, k, dt)), _probs(rng, n, k, dt), \
            dict(label_smoothing=0.2)
    if name == "cross_entropy":
        y = _probs(rng, n, k, dt)
        y[0, 0] = 0.0  # below the clamp
        return lk.cross_entropy, y, _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, label_smoothing=0.1)
    if name == "cross_entropy_probs":
        return lk.cross_entropy, _probs(rng, n, k, dt), _probs(rng, n, k, dt), {}
    if name == "brier":
        return lk.brier_score, _probs(rng, n, k, dt), _labels(rng, n, k), \
            dict(ignore_index=-100)
    if name == "brier_probs":
        return lk.brier_score, _probs(rng, n, k, dt), _probs(rng, n, k, dt), {}
    if name == "hinge":
        return lk.multiclass_hinge, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, margin=0.7)
    if name == "kl":
        t = _probs(rng, n, k, dt)
        t[0, 0] = 0.0  # 0 log 0 = 0
        return lk.kl_divergence, np.log(_probs(rng, n, k, dt)), t, {}
    if name == "kl_probs_logtarget":
        return lk.kl_divergence, _probs(rng, n, k, dt), np.log(_probs(rng, n, k, dt)), \
            dict(log_prediction=False, log_target=True)
    if name == "softmax_kl":
        return lk.softmax_kl_divergence, _logits(rng, n, k, dt), \
            rng.normal(size=(n, k)).astype(dt), dict(temperature=2.0)
    if name == "softmax_kl_probs":
        return lk.softmax_kl_divergence, rng.normal(size=(n, k)).astype(dt), \
            _probs(rng, n, k, dt), dict(temperature=0.5, target_is_logits=False,
                                       scale_by_temperature_squared=False)
    if name == "js":
        q = _probs(rng, n, k, dt)
        q[0, 0] = 0.0
        return lk.js_divergence, q, _probs(rng, n, k, dt), {}
    if name == "focal":
        return lk.softmax_focal_loss, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, gamma=1.5)
    if name == "focal_alpha_vec":  # gamma < 1, per-class alpha
        return lk.softmax_focal_loss, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(alpha=rng.uniform(0.1, 1.0, k), ignore_index=-100, gamma=0.5)
    if name == "focal_probs":
        return lk.softmax_focal_loss, _logits(rng, n, k, dt), _probs(rng, n, k, dt), \
            dict(class_weight=cw, alpha=0.25, gamma=2.0)
    if name == "focal_gamma0":  # softmax cross-entropy times alpha
        return lk.softmax_focal_loss, _logits(rng, n, k, dt), _labels(rng, n, k, False), \
            dict(alpha=0.7, gamma=0.0)
    if name == "poly":
        return lk.poly_loss, _logits(rng, n, k, dt), _probs(rng, n, k, dt), \
            dict(epsilon=2.0, label_smoothing=0.1)
    if name == "poly_labels":  # the hard-label row
        return lk.poly_loss, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, epsilon=1.0)
    if name == "poly_labels_smooth":
        return lk.poly_loss, _logits(rng, n, k, dt), _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100, epsilon=-1.0, label_smoothing=0.1)
    if name == "poly_eps0":  # softmax cross-entropy
        return lk.poly_loss, _logits(rng, n, k, dt), _labels(rng, n, k, False), \
            dict(epsilon=0.0)
    if name == "gce":  # a label whose probability is 0: value 1/q, gradient -inf
        p = _probs(rng, n, k, dt)
        p[0, 0] = 0.0
        y = _labels(rng, n, k)
        y[0] = 0
        return lk.generalized_cross_entropy, p, y, \
            dict(class_weight=cw, ignore_index=-100, q=0.7)
    if name == "gce_probs":
        return lk.generalized_cross_entropy, _probs(rng, n, k, dt), _probs(rng, n, k, dt), \
            dict(q=0.3, class_weight=cw)
    if name == "gce_mae":  # q = 1: the mean absolute error of p_y
        return lk.generalized_cross_entropy, _probs(rng, n, k, dt), _labels(rng, n, k), \
            dict(q=1.0, ignore_index=-100)
    if name == "perceptron":  # ties for the best class, a winning label, a NaN row
        z = np.round(rng.normal(size=(n, k)), 0).astype(dt)
        if n > 5:
            z[4, 2] = NAN
            z[5, :] = -INF
        return lk.multiclass_perceptron, z, _labels(rng, n, k), \
            dict(class_weight=cw, ignore_index=-100)
    if name == "multilabel_margin":  # listed classes (a repeat, an empty row), -1 padding
        z = rng.normal(size=(n, k)).astype(dt)
        t = np.full((n, k), -1)
        for r in range(n):
            listed = rng.choice(k, size=r % k, replace=False)
            t[r, :len(listed)] = listed
            t[r, len(listed) + 1:] = rng.integers(-1, k, k - len(listed) - 1)  # not read
        t[1, :3] = [2, 2, -1]
        if n > 5:
            z[4, 1] = NAN
            z[5, 0], z[5, 1] = INF, -INF
            t[5, :2] = [1, -1]
        return lk.multilabel_margin, z, t, dict(margin=0.7)
    if name == "multilabel_soft_margin":  # n-hot and soft targets, infinite logits
        z = _logits(rng, n, k, dt)
        t = np.where(rng.random((n, k)) < 0.3, rng.random((n, k)), rng.random((n, k)) < 0.5)
        if n > 4:
            z[3, :2] = [INF, -INF]
            t[3, :2] = [1.0, 0.0]
            z[4, 0] = NAN
        return lk.multilabel_soft_margin, z, t.astype(dt), dict(class_weight=cw)
    raise KeyError(name)


CASES = ["ce_labels", "ce_smoothed", "ce_plain_weighted", "ce_probs", "nll", "nll_smooth_probs",
         "cross_entropy", "cross_entropy_probs", "brier", "brier_probs", "hinge", "kl",
         "kl_probs_logtarget", "softmax_kl", "softmax_kl_probs", "js", "focal",
         "focal_alpha_vec", "focal_probs", "focal_gamma0", "poly", "poly_labels",
         "poly_labels_smooth", "poly_eps0", "gce", "gce_probs", "gce_mae", "perceptron",
         "multilabel_margin", "multilabel_soft_margin"]
FOCAL_POLY = [c for c in CASES if c.startswith(("focal", "poly"))]


# --------------------------------------------------------------------------- the options
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_every_reduction_equals_generic(case, dt, engine):
    rng = np.random.default_rng(7)
    loss, z, t, kw = _case(case, rng, 12, 7, dt)
    for reduction in REDUCTIONS:
        same(fast(loss, z, t, engine=engine, reduction=reduction, **kw),
             generic(loss, z, t, reduction=reduction, **kw), dt)
    # value alone and gradient alone take the same path
    close(fast(loss, z, t, engine=engine, want="value", **kw),
          generic(loss, z, t, want="value", **kw), dt)
    close(fast(loss, z, t, engine=engine, want="grad", reduction="sum", **kw),
          generic(loss, z, t, want="grad", reduction="sum", **kw), dt)


@pytest.mark.parametrize("case", ["ce_labels", "ce_probs", "nll", "hinge", "softmax_kl",
                                  "kl", "brier", "focal", "focal_probs", "poly",
                                  "poly_labels", "gce", "gce_probs", "perceptron",
                                  "multilabel_margin", "multilabel_soft_margin"])
def test_sample_weight(case, engine):
    rng = np.random.default_rng(3)
    loss, z, t, kw = _case(case, rng, 10, 5, np.float64)
    sw = rng.uniform(0.0, 2.0, 10)
    sw[1] = 0.0  # removes its row, -inf entry included
    sw[2] = 0.0  # the all -inf row: NaN removed
    for reduction in REDUCTIONS:
        same(fast(loss, z, t, engine=engine, reduction=reduction, sample_weight=sw, **kw),
             generic(loss, z, t, reduction=reduction, sample_weight=sw, **kw), np.float64)


def test_sample_weight_per_example_of_a_3d_prediction(engine):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(3, 4, 6))
    y = rng.integers(0, 6, (3, 4))
    sw = np.array([1.0, 0.0, 2.5])
    for kw in ({}, {"sample_weight": sw}, {"sample_weight": rng.uniform(size=(3, 4))}):
        for reduction in REDUCTIONS:
            same(fast(lk.multiclass_hinge, z, y, engine=engine, reduction=reduction, **kw),
                 generic(lk.multiclass_hinge, z, y, reduction=reduction, **kw), np.float64)
            same(fast(lk.softmax_cross_entropy, z, y, engine=engine, reduction=reduction,
                      label_smoothing=0.3, **kw),
                 generic(lk.softmax_cross_entropy, z, y, reduction=reduction,
                         label_smoothing=0.3, **kw), np.float64)


def test_single_example_1d(engine):
    z = np.array([0.3, -1.0, 2.0])
    for loss, t in ((lk.nll_loss, np.array(1)), (lk.multiclass_hinge, np.array(2)),
                    (lk.softmax_kl_divergence, np.array([1.0, 0.0, -1.0]))):
        zz = np.log(lk.softmax(z)) if loss is lk.nll_loss else z
        for reduction in REDUCTIONS:
            same(fast(loss, zz, t, engine=engine, reduction=reduction),
                 generic(loss, zz, t, reduction=reduction), np.float64)


# --------------------------------------------------------------------------- edge cases
def test_mean_over_nothing_is_zero(engine):
    z = np.array([[1.0, -INF, 2.0], [NAN, 0.0, 1.0]])
    y = np.array([-1, -1])
    for loss in (lk.softmax_cross_entropy, lk.multiclass_hinge):
        v, g = fast(loss, z, y, engine=engine, ignore_index=-1)
        assert v == 0.0 and not g.any()
        v, g = fast(loss, z, np.array([0, 2]), engine=engine, class_weight=[0.0, 1.0, 0.0])
        same((v, g), generic(loss, z, np.array([0, 2]), class_weight=[0.0, 1.0, 0.0]), np.float64)
        assert v == 0.0 and not g.any()
    v, g = fast(lk.kl_divergence, np.log(np.full((2, 2), 0.5)), np.full((2, 2), 0.5),
                engine=engine, sample_weight=np.zeros(2))
    assert v == 0.0 and not g.any()


def test_infinite_and_nan_entries(engine):
    z = np.array([[0.0, -INF, 1.0, 2.0],
                  [-INF, -INF, -INF, -INF],
                  [1e30, 0.0, -INF, 1.0],
                  [INF, 0.0, 1.0, 2.0],
                  [NAN, 0.0, 1.0, 2.0],
                  [-INF, 0.0, 3.0, 1.0]])
    y = np.array([0, 1, 0, 0, 2, 0])
    t = np.full(z.shape, 0.25)
    t[0] = [0.0, 0.0, 0.5, 0.5]
    for loss, target, kw in ((lk.softmax_cross_entropy, y, {"label_smoothing": 0.1}),
                             (lk.softmax_cross_entropy, t, {}),
                             (lk.multiclass_hinge, y, {}),
                             (lk.softmax_kl_divergence, z[::-1].copy(), {}),
                             (lk.softmax_kl_divergence, t, {"target_is_logits": False})):
        for reduction in ("none", "sum"):
            same(fast(loss, z, target, engine=engine, reduction=reduction, **kw),
                 generic(loss, z, target, reduction=reduction, **kw), np.float64)
    logp = np.array([[0.0, -INF, -1.0], [-INF, -INF, -INF], [NAN, -1.0, -2.0]])
    kl_target = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, NAN, 0.5]])
    for loss, target in ((lk.nll_loss, np.array([1, 0, 1])), (lk.kl_divergence, kl_target),
                         (lk.kl_divergence, kl_target[::-1].copy())):
        same(fast(loss, logp, target, engine=engine, reduction="none"),
             generic(loss, logp, target, reduction="none"), np.float64)


FOCAL_POLY_EDGE = (
    (lk.softmax_focal_loss, {"gamma": 2.0}),
    (lk.softmax_focal_loss, {"gamma": 0.5, "alpha": [0.5, 1.0, 0.25, 2.0]}),
    (lk.softmax_focal_loss, {"gamma": 0.0, "alpha": 0.3}),
    (lk.softmax_focal_loss, {"gamma": 1.0, "class_weight": [0.0, 1.0, 2.0, 0.5]}),
    (lk.poly_loss, {"epsilon": 1.0}),
    (lk.poly_loss, {"epsilon": -1.0, "label_smoothing": 0.2}),
    (lk.poly_loss, {"epsilon": 2.0, "class_weight": [0.0, 1.0, 2.0, 0.5]}),
)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_focal_poly_infinite_nan_and_confident_entries(dt, engine):
    """-inf logits (masked classes, on the label: an infinite loss), rows of only -inf, +inf
    and NaN entries, and confident rows where p_y rounds to 1 (the precise log-softmax)."""
    z = np.array([[0.0, -INF, 1.0, 2.0],
                  [-INF, -INF, -INF, -INF],
                  [1e30, 0.0, -INF, 1.0],
                  [INF, 0.0, 1.0, 2.0],
                  [NAN, 0.0, 1.0, 2.0],
                  [-INF, 0.0, 3.0, 1.0],
                  [60.0, 0.0, -5.0, 1.0],
                  [0.0, 0.0, 0.0, 0.0]], dtype=dt)
    y = np.array([0, 1, 0, 0, 2, 0, 0, 3])
    t = np.full(z.shape, 0.25, dtype=dt)
    t[0] = [0.0, 0.0, 0.5, 0.5]
    t[6] = [1.0, 0.0, 0.0, 0.0]
    for loss, kw in FOCAL_POLY_EDGE:
        for target in (y, t):
            for reduction in ("none", "sum"):
                same(fast(loss, z, target, engine=engine, reduction=reduction, **kw),
                     generic(loss, z, target, reduction=reduction, **kw), dt)
        if dt == np.float64:  # row 6: p_y = 1 - 1e-26, kept to full relative precision
            v, g = fast(loss, z[6:7], y[6:7], engine=engine, reduction="none", **kw)
            v0, g0 = generic(loss, z[6:7], y[6:7], reduction="none", **kw)
            np.testing.assert_allclose(v, v0, rtol=1e-10, atol=0)
            np.testing.assert_allclose(g, g0, rtol=1e-10, atol=0)
            assert v[0] > 0 or kw.get("class_weight") is not None
        yi = y.copy()
        yi[[1, 3, 4]] = -7  # the non-finite rows ignored: a finite mean
        for reduction in REDUCTIONS:
            v, g = fast(loss, z, yi, engine=engine, reduction=reduction, ignore_index=-7, **kw)
            same((v, g), generic(loss, z, yi, reduction=reduction, ignore_index=-7, **kw), dt)
            if reduction == "mean":
                assert np.isfinite(v) == (yi[5] != 0) or kw.get("class_weight") is not None
                assert not g[[1, 3, 4]].any()


def test_focal_poly_mean_over_nothing_is_zero(engine):
    z = np.array([[1.0, -INF, 2.0], [NAN, 0.0, 1.0]])
    for loss, kw in ((lk.softmax_focal_loss, {"gamma": 0.5}),
                     (lk.poly_loss, {"label_smoothing": 0.2})):
        v, g = fast(loss, z, np.array([-1, -1]), engine=engine, ignore_index=-1, **kw)
        assert v == 0.0 and not g.any()
        args = (z, np.array([0, 2]))
        v, g = fast(loss, *args, engine=engine, class_weight=[0.0, 1.0, 0.0], **kw)
        same((v, g), generic(loss, *args, class_weight=[0.0, 1.0, 0.0], **kw), np.float64)
        assert not g.any()


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
def test_focal_poly_options_the_row_does_not_take(monkeypatch):
    """NumPy scalars and arrays as options take the numba row; what it declines goes to the
    generic path, which accepts it or raises its own error."""
    monkeypatch.setattr(_fast, "USE_NUMBA", True)
    rng = np.random.default_rng(6)
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, 6)
    for loss, kw in ((lk.softmax_focal_loss, {"gamma": np.float64(1.5)}),
                     (lk.softmax_focal_loss, {"alpha": np.float64(0.5)}),
                     (lk.softmax_focal_loss, {"alpha": np.array(0.5)}),
                     (lk.softmax_focal_loss, {"alpha": np.float32([0.5, 1, 2, 0])}),
                     (lk.softmax_focal_loss, {"alpha": (1, 2, 3, 4)}),
                     (lk.poly_loss, {"epsilon": np.float32(0.5)})):
        same(fast(loss, z, y, engine="numba", **kw), generic(loss, z, y, **kw), np.float64)
    before = _fast.STATS["softmax_focal_loss", "numba"]
    with pytest.raises(ValueError, match="alpha"):
        lk.softmax_focal_loss(z, y, alpha=np.ones((1, 4)))
    assert _fast.STATS["softmax_focal_loss", "numba"] == before
    with pytest.raises(ValueError, match="gamma"):
        lk.softmax_focal_loss(z, y, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        lk.softmax_focal_loss(z, y, alpha=[1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        lk.softmax_focal_loss(z, y, alpha=[1.0, 1.0])
    with pytest.raises(ValueError, match="epsilon"):
        lk.poly_loss(z, y, epsilon=-2.0)
    with pytest.raises(ValueError, match="target"):
        lk.poly_loss(z, np.full((6, 4), 1.5))
    with pytest.raises(ValueError, match="ignore_index"):
        lk.softmax_focal_loss(z, np.full((6, 4), 0.25), ignore_index=0)


def test_invalid_input_falls_back_to_the_generic_error(engine):
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="target"):
        lk.softmax_cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target"):
        lk.nll_loss(z, np.full((3, 4), 1.5))
    with pytest.raises(ValueError, match="target"):
        lk.softmax_cross_entropy(z, np.full((3, 4), 1.5))
    with pytest.raises(ValueError, match="class_weight"):
        lk.multiclass_hinge(z, np.array([0, 1, 1]), class_weight=[1.0, -1.0, 1.0, 1.0])
    # validate=False: the generic path computes what the kernels decline
    args = (np.zeros((2, 3)), np.array([[0.5, 1.5, 0.0], [1.0, 0.0, 0.0]]))
    same(lk.nll_loss.value_and_grad(*args, validate=False),
         generic(lk.nll_loss, *args, validate=False), np.float64)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "nll_loss", "cross_entropy",
                                  "brier_score", "multiclass_hinge", "softmax_focal_loss",
                                  "poly_loss", "generalized_cross_entropy",
                                  "multiclass_perceptron"])
def test_label_outside_the_classes_leaves_out_untouched(name, engine):
    """The driver checks every label before writing: the last label out of range (others
    ignored) raises the generic error and ``out`` keeps its contents."""
    loss = getattr(lk, name)
    z = np.full((5, 4), 0.25)
    if name == "nll_loss":
        z = np.log(z)
    y = np.array([0, -100, 3, 1, 4])
    out = np.full(z.shape, 7.0)
    with pytest.raises(ValueError, match="target"):
        loss.value_and_grad(z, y, ignore_index=-100, out=out)
    assert (out == 7.0).all()
    # an ignore_index inside [0, K) ignores that class
    y = np.array([0, 2, 3, 2, 1])
    v, g = fast(loss, z, y, engine=engine, ignore_index=2, want="both")
    same((v, g), generic(loss, z, y, ignore_index=2), np.float64)
    assert not g[[1, 3]].any()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint32])
def test_labels_of_any_integer_dtype_and_layout(dtype, engine):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((7, 5))
    y = rng.integers(0, 5, 14).astype(dtype)[::2]  # strided
    w = np.array([1.0, 2.0, 0.5, 0.0, 3.0])
    for loss in (lk.softmax_cross_entropy, lk.multiclass_hinge, lk.poly_loss):
        expected = generic(loss, z, y.astype(np.int64), class_weight=w)
        same(fast(loss, z, y, engine=engine, class_weight=w), expected, np.float64)
        ro = y.copy()
        ro.flags.writeable = False
        same(fast(loss, z, ro, engine=engine, class_weight=w), expected, np.float64)


# --------------------------------------------------------------------------- memory layouts
@pytest.mark.parametrize("case", ["ce_probs", "nll", "hinge", "softmax_kl", "focal"])
def test_out_readonly_noncontiguous(case, engine):
    rng = np.random.default_rng(11)
    loss, z, t, kw = _case(case, rng, 9, 6, np.float32)
    v0, g0 = generic(loss, z, t, **kw)
    out = np.full(z.shape, 7.0, dtype=np.float32)
    v, g = fast(loss, z, t, engine=engine, out=out, **kw)
    assert g is out
    same((v, g), (v0, g0), np.float32)
    ro_z, ro_t = z.copy(), t.copy()
    ro_z.flags.writeable = False
    ro_t.flags.writeable = False
    same(fast(loss, ro_z, ro_t, engine=engine, **kw), (v0, g0), np.float32)
    # a non-contiguous prediction and target, and a non-contiguous out
    big_z = np.zeros((9, 12), dtype=np.float32)
    big_z[:, ::2] = z
    zt = big_z[:, ::2]
    tt = t
    if t.ndim == 2:
        big_t = np.zeros((9, 12), dtype=t.dtype)
        big_t[:, ::2] = t
        tt = big_t[:, ::2]
    big_out = np.zeros((9, 12), dtype=np.float32)
    v, g = fast(loss, zt, tt, engine=engine, out=big_out[:, 1::2], **kw)
    same((v, big_out[:, 1::2]), (v0, g0), np.float32)
    assert not big_out[:, ::2].any()
    # out may be the prediction itself: overwritten once it has been read
    zc = z.copy()
    v, g = fast(loss, zc, t, engine=engine, out=zc, **kw)
    assert g is zc
    same((v, g), (v0, g0), np.float32)


def test_empty_batch_equals_generic(engine):
    z = np.zeros((0, 5))
    for loss, t in ((lk.softmax_cross_entropy, np.zeros(0, dtype=np.int64)),
                    (lk.kl_divergence, np.zeros((0, 5)))):
        for reduction in REDUCTIONS:
            v, g = loss.value_and_grad(z, t, reduction=reduction)
            same((v, g), generic(loss, z, t, reduction=reduction), np.float64)


# --------------------------------------------------------------------------- parallel, threads
@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("case", CASES)
def test_parallel_build(case, monkeypatch):
    """Every row function in the parallel build (inlined into the prange body, where numba's
    analysis of the sums is stricter: generalized_cross_entropy's and the multi-class
    perceptron's rows failed to compile there, only above the size that selects it)."""
    monkeypatch.setattr(_fast, "USE_NUMBA", True)
    rng = np.random.default_rng(5)
    loss, z, t, kw = _case(case, rng, 300, 40, np.float32)
    monkeypatch.setattr(_fast, "PARALLEL_MIN", 1000)  # 12000 elements: the parallel build
    for reduction in ("none", "mean"):
        same(fast(loss, z, t, engine="numba", reduction=reduction, **kw),
             generic(loss, z, t, reduction=reduction, **kw), np.float32)


@pytest.mark.parametrize("case", ["ce_labels", "kl"])
def test_concurrent_calls(case, engine):
    rng = np.random.default_rng(9)
    inputs = [_case(case, rng, 40, 16, np.float64) for _ in range(4)]
    expected = [generic(loss, z, t, **kw) for loss, z, t, kw in inputs]
    results = [None] * len(inputs)
    errors = []

    def work(i):
        try:
            loss, z, t, kw = inputs[i]
            for _ in range(20):
                results[i] = loss.value_and_grad(z, t, **kw)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for got, want in zip(results, expected):
        same(got, want, np.float64)


# --------------------------------------------------------------------------- against PyTorch
def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    z = rng.normal(size=(20, 8))
    y = rng.integers(0, 8, 20)
    y[4] = -100
    cw = rng.uniform(0.5, 2.0, 8)
    zt, yt = torch.from_numpy(z).requires_grad_(True), torch.from_numpy(y)
    ref = F.cross_entropy(zt, yt, weight=torch.from_numpy(cw), ignore_index=-100,
                          label_smoothing=0.2)
    ref.backward()
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, class_weight=cw, ignore_index=-100,
                                                   label_smoothing=0.2)
    close(v, ref.item(), np.float64)
    close(g, zt.grad.numpy(), np.float64)
    t = rng.normal(size=(20, 8))
    zt.grad = None
    ref = F.kl_div(F.log_softmax(zt / 2, -1), F.softmax(torch.from_numpy(t) / 2, -1),
                   reduction="batchmean") * 4
    ref.backward()
    v, g = lk.softmax_kl_divergence.value_and_grad(z, t, temperature=2.0)
    close(v, ref.item(), np.float64)
    close(g, zt.grad.numpy(), np.float64)


def test_focal_poly_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(12)
    z = rng.normal(scale=3.0, size=(30, 9)).astype(np.float32)
    y = rng.integers(0, 9, 30)
    for gamma in (2.0, 0.5):
        zt = torch.from_numpy(z).requires_grad_(True)
        ce = F.cross_entropy(zt, torch.from_numpy(y), reduction="none")
        ref = ((1.0 - torch.exp(-ce)) ** gamma * ce).mean()  # torchvision-style
        ref.backward()
        v, g = lk.softmax_focal_loss.value_and_grad(z, y, gamma=gamma)
        close(v, ref.item(), np.float32)
        close(g, zt.grad.numpy(), np.float32)
    zt = torch.from_numpy(z).requires_grad_(True)
    ce = F.cross_entropy(zt, torch.from_numpy(y), reduction="none")
    ref = (ce + 2.0 * (1.0 - torch.exp(-ce))).mean()  # Poly-1
    ref.backward()
    v, g = lk.poly_loss.value_and_grad(z, y, epsilon=2.0)
    close(v, ref.item(), np.float32)
    close(g, zt.grad.numpy(), np.float32)


def test_spec_table_covers_every_routed_loss():
    from losskit.core.dispatch import fast_path_for

    for name in ("nll_loss", "cross_entropy", "brier_score", "multiclass_hinge",
                 "kl_divergence", "softmax_kl_divergence", "js_divergence",
                 "softmax_focal_loss", "poly_loss"):
        loss = getattr(lk, name)
        assert fast_path_for(type(loss)) is getattr(_rows, name)
        row = _rows._SPECS[name].row
        assert row is not None  # every routed loss has a numba row function
        if HAVE_NUMBA:
            from losskit.kernels import rows_numba

            assert row in rows_numba.ROWS
    # (with its fused second-order kernel: the wrapper of losskit.core.dispatch)
    routed = fast_path_for(type(lk.softmax_cross_entropy))
    while hasattr(routed, "__wrapped__"):  # unless_set (z_loss), with_second_order
        routed = routed.__wrapped__
    assert routed is _rows.softmax_cross_entropy


# --------------------------------------------------------------- second order (boosting)
@pytest.mark.skipif(not HAVE_NUMBA, reason="the second-order row kernel is numba's")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ignore", [None, -100])
def test_softmax_cross_entropy_second_order_kernel_equals_generic(dtype, ignore):
    """grad_and_hessian / hessian of integer labels: the fused row kernel (blocks of rows,
    prange) equals the generic path for every reduction, with +inf, NaN, all -inf and
    masked rows, ignored labels and more rows than one block."""
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(4100, 5)) * 3).astype(dtype)
    y = rng.integers(0, 5, size=4100)
    z[3, 1], z[5, 2], z[6, 0], z[7, 1] = np.inf, -np.inf, np.nan, 1e30
    z[4] = -np.inf
    kw = {}
    if ignore is not None:
        y[::4] = ignore
        kw["ignore_index"] = ignore
    for reduction in ("none", "sum", "mean", "batchmean"):
        g0, h0 = generic(lk.softmax_cross_entropy, z, y, want="grad_and_hessian",
                         reduction=reduction, **kw)
        g1, h1 = fused(lk.softmax_cross_entropy, z, y, want="grad_and_hessian",
                       reduction=reduction, **kw)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12,
                                                                          atol=1e-14)
        assert g1.dtype == h1.dtype == dtype
        np.testing.assert_allclose(g1, g0, **tol)
        np.testing.assert_allclose(h1, h0, **tol)
        h2 = fused(lk.softmax_cross_entropy, z, y, want="hessian", reduction=reduction, **kw)
        np.testing.assert_array_equal(h2, h1)
    # column-major scores (LightGBM's layout): the same numbers, the results column-major
    zf = np.asfortranarray(z)
    g3, h3 = fused(lk.softmax_cross_entropy, zf, y, want="grad_and_hessian", **kw)
    assert h3.flags.f_contiguous and g3.flags.f_contiguous
    g0, h0 = generic(lk.softmax_cross_entropy, z, y, want="grad_and_hessian", **kw)
    np.testing.assert_allclose(g3, g0, **tol)
    np.testing.assert_allclose(h3, h0, **tol)
    # what it does not cover runs the generic path: class weights, smoothing, soft targets
    for extra in ({"class_weight": np.ones(5)}, {"label_smoothing": 0.1}):
        fused(lk.softmax_cross_entropy, z, y, want="hessian", answered=False, **kw, **extra)
    p = np.full((4100, 5), 0.2, dtype=dtype)
    fused(lk.softmax_cross_entropy, z, p, want="hessian", answered=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_binary_cross_entropy_second_order_kernel_equals_generic(dtype):
    rng = np.random.default_rng(12)
    z = (rng.normal(size=3000) * 4).astype(dtype)
    t = (rng.uniform(size=3000) < 0.4).astype(dtype)
    t[:200] = rng.uniform(size=200)  # soft targets
    z[:8] = [np.inf, -np.inf, np.inf, -np.inf, np.nan, 1e30, -40.0, 40.0]
    t[:8] = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    t[9] = np.nan
    engine = "numba" if HAVE_NUMBA else "numpy"
    for reduction in ("none", "mean"):
        g0, h0 = generic(lk.sigmoid_binary_cross_entropy, z, t, want="grad_and_hessian",
                         reduction=reduction)
        g1, h1 = fused(lk.sigmoid_binary_cross_entropy, z, t, engine=engine,
                       want="grad_and_hessian", reduction=reduction)
        tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-12,
                                                                          atol=1e-15)
        np.testing.assert_allclose(g1, g0, equal_nan=True, **tol)
        np.testing.assert_allclose(h1, h0, equal_nan=True, **tol)
    # pos_weight, smoothing and ignored targets take the generic path (their Hessians)
    for extra in ({"pos_weight": 2.0}, {"label_smoothing": 0.1}, {"ignore_index": -1}):
        fused(lk.sigmoid_binary_cross_entropy, z, t, engine=engine, want="hessian",
              answered=False, **extra)


def test_multilabel_margin_reads_int64_class_indices_without_a_copy():
    """The class-index target of multilabel_margin goes to the kernel as it is (int64,
    C-contiguous): with ``out=`` a call allocates next to nothing (a float copy of the
    target would be the scores' size), and the result equals PyTorch's
    ``F.multilabel_margin_loss`` and its autograd gradient."""
    import tracemalloc

    torch = pytest.importorskip("torch")
    from losskit.kernels import clear_gradient_cache

    if not HAVE_NUMBA:
        pytest.skip("the fused kernel needs numba")
    rng = np.random.default_rng(21)
    n, k = 2048, 64  # 512 KiB of float32 scores, parallel build
    z = rng.standard_normal((n, k)).astype(np.float32)
    y = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        m = rng.integers(1, 5)
        y[i, :m] = rng.choice(k, size=m, replace=False)
    out = np.empty_like(z)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.multilabel_margin_loss(zt, torch.tensor(y))
    ref.backward()
    lk.multilabel_margin.value_and_grad(z, y, out=out)  # compiled
    clear_gradient_cache()
    before = _fast.STATS["multilabel_margin", "numba"]
    tracemalloc.start()
    try:
        v, g = lk.multilabel_margin.value_and_grad(z, y, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _fast.STATS["multilabel_margin", "numba"] == before + 1  # the fused kernel ran
    assert g is out
    assert peak <= z.nbytes // 8, peak
    np.testing.assert_allclose(float(v), ref.item(), rtol=1e-5)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ten_classes_allocate_the_gradient_only(reduction):
    """With ten classes the per-row values (float64) would be a fifth of the gradient:
    the kernel sums blocks of rows instead and keeps per-row values for "none" only. One
    call allocates the gradient (and, for "none", the values it returns), nothing with
    ``out=`` but the values of "none"; the result equals ``F.cross_entropy``'s and its
    autograd gradient (serial and parallel builds: 4096 and 16384 rows)."""
    import tracemalloc

    torch = pytest.importorskip("torch")
    from losskit.kernels import clear_gradient_cache

    if not HAVE_NUMBA:
        pytest.skip("the fused kernel needs numba")
    from losskit.kernels.numba_kernels import sum_rows

    rng = np.random.default_rng(5)
    for n in (4096, 16384):  # 16384 x 10 >= PARALLEL_MIN: the parallel build
        z = rng.standard_normal((n, 10)).astype(np.float32)
        y = rng.integers(0, 10, n)
        zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(zt, torch.tensor(y), reduction=reduction)
        ref.sum().backward()
        out = np.empty_like(z)
        returned = n * 4 if reduction == "none" else 0  # the float32 values of "none"
        # the kernel's float64 partial sum per block of rows (numba's allocations are
        # traced too): n / 64 of them at ten classes, 1/320 of the gradient
        partials = 8 * -(-n // sum_rows(10))
        for target, allowed in ((None, z.nbytes + returned), (out, returned)):
            kw = {} if target is None else {"out": target}
            lk.poly_loss.value_and_grad(z, y, epsilon=0.0, reduction=reduction, **kw)
            clear_gradient_cache()
            before = _fast.STATS["poly_loss", "numba"]
            tracemalloc.start()
            try:
                v, g = lk.poly_loss.value_and_grad(z, y, epsilon=0.0, reduction=reduction,
                                                   **kw)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert _fast.STATS["poly_loss", "numba"] == before + 1
            # the values of "none" pass through float64 (8 bytes a row) before their cast
            slack = 4096 + partials + (n * 8 if reduction == "none" else 0)
            assert peak <= allowed + slack, (n, reduction, target is None, peak, allowed)
            np.testing.assert_allclose(np.asarray(v, np.float64), ref.detach().numpy(),
                                       rtol=2e-5, atol=1e-7)
            np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-4, atol=1e-7)
        # the value alone: one scratch row per block of rows, nothing per row
        for loss, kw in ((lk.poly_loss, {"epsilon": 0.0}), (lk.softmax_cross_entropy, {})):
            loss(z, y, reduction=reduction, **kw)
            tracemalloc.start()
            try:
                v = loss(z, y, reduction=reduction, **kw)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            allowed = (z.nbytes // 64 + 4096 + partials
                       + (n * 12 if reduction == "none" else 0))
            assert peak <= allowed, (loss.name, n, reduction, peak, allowed)
            np.testing.assert_allclose(np.asarray(v, np.float64), ref.detach().numpy(),
                                       rtol=2e-5, atol=1e-7)
