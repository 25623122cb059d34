"""Every row of ``docs/conventions.md``, proved: how to get PyTorch's, Keras's and Optax's
number from losskit.

Each test calls the *other* library (``torch.nn.functional``, ``keras.losses`` on the JAX
backend, ``optax.losses``) and compares it with the losskit recipe the table states, in
float64, at ``rtol=1e-10`` where the two formulas coincide exactly. Where a table cell
says "differs only where ...", the test checks one point where they agree and one where
they differ. Where it says "not reproducible", the test shows the difference and checks
the other library against the formula the table gives for it. The expected numbers
always come from the other library (or, for torchvision, from an independent torch
implementation of its documented formula); never from losskit.

``test_table_covers_catalog`` keeps the document honest: every loss of ``lk.catalog()``
that losskit exports has a row, and every cell that names a recipe has a test here
named ``test_<loss>_<library>...``.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

import numpy as np
import pytest

import loss_cases  # noqa: F401  (import first: it loads cases_classification itself)
import losskit as lk
from cases_classification import torchvision_sigmoid_focal

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-10  # where the formulas coincide exactly (float64 rounding only)
EPS64 = float(np.finfo(np.float64).eps)
KERAS_EPS = 1e-7  # keras.config.epsilon()
DOC = Path(__file__).resolve().parents[2] / "docs" / "conventions.md"
LIBRARIES = ("torch", "keras", "optax")


# ----------------------------------------------------------------------------- helpers
def same(actual, expected, rtol=RTOL, atol=0.0):
    """``actual`` (the losskit recipe) equals ``expected`` (the other library)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def differ(actual, expected, rtol=1e-3):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert not np.allclose(a, e, rtol=rtol, atol=0.0), (a, e)


def T(*arrays):
    """NumPy arrays as torch tensors (float64 stays float64, int64 labels stay int64)."""
    out = tuple(torch.as_tensor(np.asarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


def rng(seed=0):
    return np.random.default_rng(seed)


def simplex(r, shape, scale=1.0):
    """Rows on the probability simplex (last axis), every entry well above 1e-7."""
    z = r.normal(scale=scale, size=shape)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def onehot(labels, k):
    return np.eye(k)[labels]


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def pm1(r, shape):
    return r.choice([-1.0, 1.0], size=shape)


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"the Keras rows are checked on the JAX backend; KERAS_BACKEND is "
                    f"{keras.backend.backend()!r}")
    import jax

    if not jax.config.jax_enable_x64:
        pytest.skip("float64 JAX is needed for the rtol=1e-10 checks")
    assert keras.config.epsilon() == KERAS_EPS
    return keras


def K(loss, y_true, y_pred, **kwargs):
    """Call a Keras loss object (Keras's argument order is (y_true, y_pred))."""
    return np.asarray(loss(np.asarray(y_true), np.asarray(y_pred), **kwargs))


#: Keras's ``ops.mean`` computes a float64 array in float32 on the JAX (and PyTorch)
#: backend: ``keras.backend.result_type`` maps float64 to float32 on every backend but
#: TensorFlow. Losses that Keras averages over the last axis therefore carry float32
#: rounding even in float64.
KERAS_MEAN_RTOL = 1e-6


@contextlib.contextmanager
def keras_mean_in_float64():
    """Swap Keras's float32-accumulating ``ops.mean`` for a float64 one (only that)."""
    import jax.numpy as jnp

    try:
        from keras.src import ops
    except ImportError:  # pragma: no cover - a Keras that moved its internals
        pytest.skip("keras.src.ops is gone: cannot take Keras's mean in float64")
    original = ops.mean
    calls = []

    def mean(x, axis=None, keepdims=False):
        calls.append(axis)
        return jnp.mean(jnp.asarray(x), axis=axis, keepdims=keepdims)

    ops.mean = mean
    try:
        yield calls
    finally:
        ops.mean = original


def keras_same(recipe, loss, y_true, y_pred, **kwargs):
    """``recipe`` equals a Keras loss that averages over the last axis: to Keras's own
    float32 mean as shipped, and to rtol 1e-10 once that mean runs in float64."""
    same(recipe, K(loss, y_true, y_pred, **kwargs), rtol=KERAS_MEAN_RTOL)
    with keras_mean_in_float64() as calls:
        value = K(loss, y_true, y_pred, **kwargs)
    assert calls, "this Keras loss takes no ops.mean: compare it with same()"
    same(recipe, value)


@pytest.fixture(scope="module")
def optax():
    optax = pytest.importorskip("optax")
    import jax

    if not jax.config.jax_enable_x64:
        pytest.skip("float64 JAX is needed for the rtol=1e-10 checks")
    return optax


def J(*arrays):
    import jax.numpy as jnp

    out = tuple(jnp.asarray(np.asarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


# ============================================================================ the table
def _table_rows():
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|(.*)\|\s*$", line)
        if m:
            cells = [c.strip() for c in m.group(2).split(" | ")]
            rows[m.group(1)] = cells
    return rows


def test_table_covers_catalog():
    """A row per exported loss, three cells per row, and a test for every recipe cell."""
    rows = _table_rows()
    exported = set(lk.__all__)
    names = [loss.name for loss in lk.catalog() if loss.name in exported]
    missing = [n for n in names if n not in rows]
    assert not missing, f"docs/conventions.md has no row for {missing}"
    tests = {name for name in globals() if name.startswith("test_")}
    for name, cells in rows.items():
        assert len(cells) == len(LIBRARIES), (name, cells)
        for lib, cell in zip(LIBRARIES, cells):
            if cell.startswith("—"):  # no counterpart in that library
                continue
            prefix = f"test_{name}_{lib}"
            assert any(t.startswith(prefix) for t in tests), f"no {prefix}* for {cell!r}"


# ============================================================================ general
def test_general_keras_reductions(keras):
    """Keras: mean over the last axis per sample, then its reduction over samples."""
    r = rng(1)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    w = r.uniform(0.2, 2.0, size=5)
    mse = keras.losses.MeanSquaredError
    # sum_over_batch_size (default) of per-sample means is the grand mean
    keras_same(lk.mse(y, t), mse(dtype="float64"), t, y)
    # "sum" sums the per-sample means: losskit's sum over the D = 3 columns
    keras_same(lk.mse(y, t, reduction="sum") / 3, mse(reduction="sum", dtype="float64"), t, y)
    # None / "none": one value per sample, the mean over the last axis
    keras_same(lk.mse(y, t, reduction="none").mean(axis=-1),
               mse(reduction=None, dtype="float64"), t, y)
    # sample weights: sum_over_batch_size divides the weighted sum by the count...
    keras_same(lk.mse(y, t, sample_weight=w, reduction="sum") / y.size,
               mse(dtype="float64"), t, y, sample_weight=w)
    # ... mean_with_sample_weight by the sum of the weights: losskit's weighted mean
    keras_same(lk.mse(y, t, sample_weight=w),
               mse(reduction="mean_with_sample_weight", dtype="float64"), t, y,
               sample_weight=w)
    # a scalar sample weight: Keras scales its mean; losskit's weighted mean divides it out
    keras_same(2.5 * lk.mse(y, t), mse(dtype="float64"), t, y, sample_weight=2.5)
    keras_same(lk.mse(y, t, sample_weight=2.5), mse(dtype="float64"), t, y)
    keras_same(lk.mse(y, t, sample_weight=2.5, reduction="sum") / 3,
               mse(reduction="sum", dtype="float64"), t, y, sample_weight=2.5)
    # footnote 1: Keras's own mean is float32 even here (off by float32 rounding)
    assert not np.allclose(lk.mse(y, t), K(mse(dtype="float64"), t, y), rtol=1e-12,
                           atol=0), ("Keras now averages float64 in float64: drop "
                                     "footnote 1 of docs/conventions.md")


def test_general_empty_mean():
    """A mean over nothing: losskit 0, PyTorch NaN."""
    z = np.zeros((3, 4))
    y = np.full(3, -100)
    assert float(lk.softmax_cross_entropy(z, y, ignore_index=-100)) == 0.0
    assert np.isnan(float(F.cross_entropy(*T(z, y))))
    e = np.zeros((0, 4))
    assert float(lk.softmax_cross_entropy(e, np.zeros(0, dtype=int))) == 0.0
    assert np.isnan(float(F.cross_entropy(*T(e, np.zeros(0, dtype=np.int64)))))


def test_general_empty_mean_keras(keras):
    z, y = np.zeros((3, 4)), np.full(3, -100)
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100,
                                                     dtype="float64")
    assert float(K(sce, y, z)) == 0.0
    # an empty batch: Keras hands back the empty array of per-sample losses
    e = np.zeros((0, 4))
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, dtype="float64")
    assert K(cce, e, e).shape == (0,)


def test_general_empty_mean_optax(optax):
    e = np.zeros((0, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(float(optax.losses.softmax_cross_entropy(*J(e, e)).mean()))


def test_general_ignore_index():
    """PyTorch skips label -100 by default; losskit only when told (else it is an error)."""
    z = rng(78).normal(size=(3, 4))
    y = np.array([1, -100, 2])
    with pytest.raises(ValueError, match="target"):
        lk.softmax_cross_entropy(z, y)
    same(lk.softmax_cross_entropy(z, y, ignore_index=-100), F.cross_entropy(*T(z, y)))


def test_general_shape_mismatch(keras, optax):
    """(N, 1) against (N,): losskit refuses, PyTorch broadcasts to (N, N) with a warning,
    Keras squeezes silently, optax's squared_error refuses and its huber_loss broadcasts."""
    r = rng(79)
    y, t = r.normal(size=(4, 1)), r.normal(size=4)
    with pytest.raises(ValueError, match="shape"):
        lk.mse(y, t)
    with pytest.warns(UserWarning, match="broadcasting"):
        broadcast = F.mse_loss(*T(y, t))
    same(broadcast, ((y - t[None, :]) ** 2).mean())
    keras_same(lk.mse(y[:, 0], t), keras.losses.MeanSquaredError(dtype="float64"), t, y)
    with pytest.raises(ValueError):
        optax.losses.squared_error(*J(y, t))
    assert np.asarray(optax.losses.huber_loss(*J(y, t))).shape == (4, 4)


# ============================================================================ regression
def test_mse_torch():
    r = rng(2)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    w = r.uniform(0.1, 2.0, size=(5, 3))
    for red in ("none", "sum", "mean"):
        same(lk.mse(y, t, reduction=red), F.mse_loss(*T(y, t), reduction=red))
    # weight=: mse_loss's weighted mean divides by the sum of the weights, as losskit
    same(lk.mse(y, t, sample_weight=w), F.mse_loss(*T(y, t), weight=T(w)))


def test_mse_keras(keras):
    r = rng(3)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    keras_same(lk.mse(y, t), keras.losses.MeanSquaredError(dtype="float64"), t, y)


def test_mse_optax(optax):
    r = rng(4)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    same(lk.mse(y, t, reduction="none"), optax.losses.squared_error(*J(y, t)))


def test_l2_loss_torch():
    r = rng(5)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    for red in ("none", "sum", "mean"):
        same(lk.l2_loss(y, t, reduction=red), 0.5 * F.mse_loss(*T(y, t), reduction=red))


def test_l2_loss_keras(keras):
    r = rng(6)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    keras_same(2 * lk.l2_loss(y, t), keras.losses.MeanSquaredError(dtype="float64"), t, y)


def test_l2_loss_optax(optax):
    r = rng(7)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    same(lk.l2_loss(y, t, reduction="none"), optax.losses.l2_loss(*J(y, t)))


def test_mae_torch():
    r = rng(8)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    w = r.uniform(0.1, 2.0, size=(5, 3))
    for red in ("none", "sum", "mean"):
        same(lk.mae(y, t, reduction=red), F.l1_loss(*T(y, t), reduction=red))
    # weight=: l1_loss's weighted mean divides by the sum of the weights, as losskit
    same(lk.mae(y, t, sample_weight=w), F.l1_loss(*T(y, t), weight=T(w)))


def test_mae_keras(keras):
    r = rng(9)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    keras_same(lk.mae(y, t), keras.losses.MeanAbsoluteError(dtype="float64"), t, y)


def test_huber_torch():
    r = rng(10)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    w = r.uniform(0.1, 2.0, size=(5, 3))
    for delta in (1.0, 0.5):
        for red in ("none", "sum", "mean"):
            same(lk.huber(y, t, delta=delta, reduction=red),
                 F.huber_loss(*T(y, t), delta=delta, reduction=red))
    # weight=: huber_loss's weighted "mean" divides by the number of elements (unlike
    # mse_loss and l1_loss, which divide by the sum of the weights)
    same(lk.huber(y, t, sample_weight=w, reduction="sum") / y.size,
         F.huber_loss(*T(y, t), weight=T(w)))
    differ(lk.huber(y, t, sample_weight=w), F.huber_loss(*T(y, t), weight=T(w)))


def test_huber_keras(keras):
    r = rng(11)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    for delta in (1.0, 0.5):
        keras_same(lk.huber(y, t, delta=delta),
                   keras.losses.Huber(delta=delta, dtype="float64"), t, y)


def test_huber_optax(optax):
    r = rng(12)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    same(lk.huber(y, t, delta=0.5, reduction="none"),
         optax.losses.huber_loss(*J(y, t), delta=0.5))


def test_smooth_l1_torch():
    r = rng(13)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    for beta in (1.0, 0.5):
        for red in ("none", "sum", "mean"):
            same(lk.smooth_l1(y, t, beta=beta, reduction=red),
                 F.smooth_l1_loss(*T(y, t), beta=beta, reduction=red))


def test_smooth_l1_keras(keras):
    r = rng(14)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    b = 0.5
    keras_same(b * lk.smooth_l1(y, t, beta=b), keras.losses.Huber(delta=b, dtype="float64"),
               t, y)


def test_smooth_l1_optax(optax):
    r = rng(15)
    y, t = 2 * r.normal(size=(5, 3)), r.normal(size=(5, 3))
    b = 0.5
    same(lk.smooth_l1(y, t, beta=b, reduction="none"),
         np.asarray(optax.losses.huber_loss(*J(y, t), delta=b)) / b)


def _log_cosh_inputs(seed):
    r = rng(seed)
    t = r.normal(size=(5, 3))
    d = r.choice([-1.0, 1.0], size=(5, 3)) * r.uniform(0.1, 30.0, size=(5, 3))
    return t + d, t


def test_log_cosh_keras(keras):
    y, t = _log_cosh_inputs(16)
    keras_same(lk.log_cosh(y, t), keras.losses.LogCosh(dtype="float64"), t, y)
    # near d = 0 Keras's d + softplus(-2d) - log 2 cancels: equal to within 1e-16
    # absolutely, while losskit keeps d^2/2 to full relative precision
    y0, t0 = np.array([[1e-6, -3e-5]]), np.zeros((1, 2))
    same(lk.log_cosh(y0, t0, reduction="none"), y0 ** 2 / 2 - y0 ** 4 / 12)  # Taylor
    with keras_mean_in_float64():
        same(lk.log_cosh(y0, t0), K(keras.losses.LogCosh(dtype="float64"), t0, y0),
             rtol=0, atol=1e-15)


def test_log_cosh_optax(optax):
    y, t = _log_cosh_inputs(17)
    same(lk.log_cosh(y, t, reduction="none"), optax.losses.log_cosh(*J(y, t)))
    # near d = 0 optax's logaddexp(d, -d) - log 2 cancels: equal to 1e-16 absolutely
    y0, t0 = np.array([1e-6, -3e-5]), np.zeros(2)
    same(lk.log_cosh(y0, t0, reduction="none"), optax.losses.log_cosh(*J(y0, t0)),
         rtol=0, atol=1e-15)


def test_quantile_sklearn():
    """Not in the three libraries: scikit-learn's mean pinball loss."""
    from sklearn.metrics import mean_pinball_loss

    r = rng(75)
    y, t = r.normal(size=20), r.normal(size=20)
    w = r.uniform(0.1, 2.0, size=20)
    for q in (0.1, 0.5, 0.9):
        same(lk.quantile(y, t, q=q), mean_pinball_loss(t, y, alpha=q))
        same(lk.quantile(y, t, q=q, sample_weight=w),
             mean_pinball_loss(t, y, alpha=q, sample_weight=w))


def test_poisson_nll_torch():
    r = rng(18)
    x = r.normal(size=(5, 3))
    t = r.poisson(2.0, size=(5, 3)).astype(float)
    lam = np.exp(x)
    for full in (False, True):
        for red in ("none", "sum", "mean"):
            same(lk.poisson_nll(x, t, full=full, reduction=red),
                 F.poisson_nll_loss(*T(x, t), full=full, reduction=red))
            same(lk.poisson_nll(lam, t, log_input=False, eps=1e-3, full=full, reduction=red),
                 F.poisson_nll_loss(*T(lam, t), log_input=False, eps=1e-3, full=full,
                                    reduction=red))
    # a zero count at rate 0: PyTorch 0 * -inf = NaN, losskit the limit 0
    x0, t0 = np.array([-np.inf]), np.array([0.0])
    assert float(lk.poisson_nll(x0, t0)) == 0.0
    assert np.isnan(float(F.poisson_nll_loss(*T(x0, t0))))


def test_poisson_nll_keras(keras):
    r = rng(19)
    lam = r.uniform(0.1, 4.0, size=(5, 3))
    t = r.poisson(2.0, size=(5, 3)).astype(float)
    # Keras: y_pred - y_true * log(y_pred + epsilon), epsilon = 1e-7, on rates
    keras_same(lk.poisson_nll(lam, t, log_input=False, eps=KERAS_EPS),
               keras.losses.Poisson(dtype="float64"), t, lam)


def test_msle_keras(keras):
    r = rng(140)
    y, t = r.uniform(-0.5, 4.0, size=(5, 3)), r.uniform(-0.5, 4.0, size=(5, 3))
    # Keras: log(max(x, 1e-7) + 1) on both sides; negative values are clipped, not refused
    keras_same(lk.msle(y, t, clip=KERAS_EPS),
               keras.losses.MeanSquaredLogarithmicError(dtype="float64"), t, y)
    assert (y < 0).any()  # without the clip (scikit-learn's msle) the number differs there
    differ(lk.msle(y, t), K(keras.losses.MeanSquaredLogarithmicError(dtype="float64"), t, y))


def test_msle_sklearn():
    """Not in the three libraries: scikit-learn's mean squared log error (no clip)."""
    from sklearn.metrics import mean_squared_log_error

    r = rng(141)
    y, t = r.uniform(-0.9, 4.0, size=20), r.uniform(0.0, 4.0, size=20)
    same(lk.msle(y, t), mean_squared_log_error(t, y))
    with pytest.raises(ValueError):  # both refuse values at or below -1
        mean_squared_log_error(t, y - 2.0)
    with pytest.raises(ValueError, match=r"`prediction` must lie in \(-1, inf\]"):
        lk.msle(y - 2.0, t)


def test_mape_keras(keras):
    r = rng(142)
    y, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    t[0, 0] = 0.0  # the floor of the denominator
    keras_same(lk.mape(y, t, epsilon=KERAS_EPS, percent=True),
               keras.losses.MeanAbsolutePercentageError(dtype="float64"), t, y)


def test_mape_sklearn():
    """Not in the three libraries: scikit-learn's mean absolute percentage error."""
    from sklearn.metrics import mean_absolute_percentage_error

    r = rng(143)
    y, t = r.normal(size=20), r.normal(size=20)
    t[3] = 0.0  # divided by float64's eps in both
    w = r.uniform(0.1, 2.0, size=20)
    same(lk.mape(y, t), mean_absolute_percentage_error(t, y))
    same(lk.mape(y, t, sample_weight=w), mean_absolute_percentage_error(t, y, sample_weight=w))


def test_tweedie_deviance_sklearn():
    """Not in the three libraries: scikit-learn's Tweedie deviance (mu = exp(r))."""
    from sklearn.metrics import mean_tweedie_deviance

    r = rng(144)
    raw = r.normal(scale=0.7, size=30)
    t = r.gamma(2.0, 1.0, size=30)
    t[:4] = 0.0
    for p in (0.0, 1.0, 1.2, 1.5, 1.9):
        same(2 * lk.tweedie_deviance(raw, t, power=p),
             mean_tweedie_deviance(t, np.exp(raw), power=p))
    for p in (2.0, 2.5, 3.0):
        same(2 * lk.tweedie_deviance(raw, t + 0.1, power=p),
             mean_tweedie_deviance(t + 0.1, np.exp(raw), power=p))


def test_gamma_deviance_sklearn():
    from sklearn.metrics import mean_gamma_deviance

    r = rng(145)
    raw, t = r.normal(size=30), r.gamma(2.0, 1.0, size=30) + 0.05
    same(2 * lk.gamma_deviance(raw, t), mean_gamma_deviance(t, np.exp(raw)))


def test_gaussian_nll_torch():
    r = rng(20)
    mu, t = r.normal(size=(5, 3)), r.normal(size=(5, 3))
    var = r.uniform(0.2, 2.0, size=(5, 3))
    for full in (False, True):
        for red in ("none", "sum", "mean"):
            same(lk.gaussian_nll(mu, t, var, full=full, reduction=red),
                 F.gaussian_nll_loss(*T(mu, t, var), full=full, reduction=red))
    # one variance per row, and a variance below the clamp (clamped to eps by both)
    v1 = np.array([0.5, 1e-9, 2.0, 1.0, 0.3])
    same(lk.gaussian_nll(mu, t, v1), F.gaussian_nll_loss(*T(mu, t, v1)))
    # the var-gradient differs below the clamp: losskit 0 (the derivative of the clamped
    # value), PyTorch 1/2 (1/eps - d^2/eps^2) (it clamps under no_grad)
    g = lk.gaussian_nll.grad(mu, t, v1, wrt="var", reduction="sum")
    tm, tt, tv = T(mu, t, v1)
    tv.requires_grad_(True)
    F.gaussian_nll_loss(tm, tt, tv, reduction="sum").backward()
    same(np.delete(g, 1), np.delete(tv.grad.numpy(), 1))
    assert g[1] == 0.0 and tv.grad[1].item() != 0.0


# ============================================================================ classification
def test_cross_entropy_torch():
    r = rng(21)
    y = simplex(r, (6, 4))
    labels = r.integers(0, 4, size=6)
    w = r.uniform(0.5, 2.0, size=4)
    # PyTorch has no probability-input cross-entropy: nll_loss of log(y)
    same(lk.cross_entropy(y, labels, class_weight=w),
         F.nll_loss(torch.log(T(y)), T(labels), weight=T(w)))
    labels[::3] = -100
    same(lk.cross_entropy(y, labels, ignore_index=-100),
         F.nll_loss(torch.log(T(y)), T(labels)))
    # differs only where y < eps: PyTorch's log(0) = -inf gives inf, losskit clamps
    y0, l0 = np.array([[0.0, 1.0]]), np.array([0])
    assert np.isinf(float(F.nll_loss(torch.log(T(y0)), T(l0))))
    same(lk.cross_entropy(y0, l0), -np.log(EPS64))


def test_cross_entropy_keras(keras):
    r = rng(22)
    y = simplex(r, (6, 4), scale=3.0)
    y[0] = [0.7, 0.3, 1e-9, 0.0]  # clipped entries
    y[1] *= 1.5  # a row that does not sum to 1: Keras renormalises it
    labels = r.integers(0, 4, size=6)
    labels[0] = 2
    t = onehot(labels, 4)
    keras_y = np.clip(y / y.sum(axis=-1, keepdims=True), KERAS_EPS, 1 - KERAS_EPS)
    cce = keras.losses.CategoricalCrossentropy
    same(lk.cross_entropy(keras_y, t), K(cce(dtype="float64"), t, y))
    same(lk.cross_entropy(keras_y, t, label_smoothing=0.1),
         K(cce(label_smoothing=0.1, dtype="float64"), t, y))
    scce = keras.losses.SparseCategoricalCrossentropy
    same(lk.cross_entropy(keras_y, labels), K(scce(dtype="float64"), labels, y))
    labels[::3] = -1
    same(lk.cross_entropy(keras_y, labels, ignore_index=-1),
         K(scce(ignore_class=-1, dtype="float64"), labels, y))
    # without the recipe the clipped/renormalised rows differ
    differ(lk.cross_entropy(y, t, reduction="none")[:2],
           K(cce(reduction=None, dtype="float64"), t, y)[:2])


def test_cross_entropy_optax(optax):
    r = rng(23)
    y = simplex(r, (6, 4))
    t = simplex(r, (6, 4))
    # normalised rows: log_softmax(log y) = log y
    same(lk.cross_entropy(y, t, reduction="none"),
         optax.losses.softmax_cross_entropy(*J(np.log(y), t)))


def test_softmax_cross_entropy_torch():
    r = rng(24)
    z = 2 * r.normal(size=(6, 4))
    y = r.integers(0, 4, size=6)
    y[::3] = -100
    w = r.uniform(0.5, 2.0, size=4)
    for ls in (0.0, 0.2):
        for red in ("none", "sum", "mean"):
            same(lk.softmax_cross_entropy(z, y, class_weight=w, ignore_index=-100,
                                          label_smoothing=ls, reduction=red),
                 F.cross_entropy(*T(z, y), weight=T(w), label_smoothing=ls, reduction=red))
    # probability targets (class_weight enters each loss; mean over examples)
    p = simplex(r, (6, 4))
    same(lk.softmax_cross_entropy(z, p, class_weight=w, label_smoothing=0.1),
         F.cross_entropy(*T(z, p), weight=T(w), label_smoothing=0.1))
    # PyTorch's class axis is 1 for (N, C, d1, ...)
    z3, y3 = r.normal(size=(3, 4, 5)), r.integers(0, 4, size=(3, 5))
    same(lk.softmax_cross_entropy(z3, y3, axis=1), F.cross_entropy(*T(z3, y3)))


def test_softmax_cross_entropy_keras(keras):
    r = rng(25)
    z = 3 * r.normal(size=(6, 4))
    y = r.integers(0, 4, size=6)
    t = onehot(y, 4)
    cce = keras.losses.CategoricalCrossentropy
    same(lk.softmax_cross_entropy(z, t), K(cce(from_logits=True, dtype="float64"), t, z))
    same(lk.softmax_cross_entropy(z, t, label_smoothing=0.2),
         K(cce(from_logits=True, label_smoothing=0.2, dtype="float64"), t, z))
    y[::2] = 255
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255,
                                                      dtype="float64")
    same(lk.softmax_cross_entropy(z, y, ignore_index=255), K(scce, y, z))


def test_softmax_cross_entropy_optax(optax):
    r = rng(26)
    z = 3 * r.normal(size=(6, 4))
    y = r.integers(0, 4, size=6)
    p = simplex(r, (6, 4))
    L = optax.losses
    same(lk.softmax_cross_entropy(z, p, reduction="none"), L.softmax_cross_entropy(*J(z, p)))
    same(lk.softmax_cross_entropy(z, y, reduction="none"),
         L.softmax_cross_entropy_with_integer_labels(*J(z, y)))
    # a -inf logit with target 0: plain optax 0 * -inf = NaN, the safe variant and
    # losskit 0 log 0 = 0
    zi = np.array([[-np.inf, 1.0, 2.0]])
    ti = np.array([[0.0, 0.5, 0.5]])
    same(lk.softmax_cross_entropy(zi, ti, reduction="none"),
         L.safe_softmax_cross_entropy(*J(zi, ti)))
    assert np.isnan(np.asarray(L.softmax_cross_entropy(*J(zi, ti)))).all()


def _linear_ce():
    if "linear_cross_entropy" not in lk.__all__:
        pytest.skip("linear_cross_entropy is not exported yet")
    r = rng(76)
    h, W, b = r.normal(size=(6, 5)), r.normal(size=(7, 5)), r.normal(size=7)
    return lk.linear_cross_entropy, h, W, b, r.integers(0, 7, size=6)


def test_linear_cross_entropy_torch():
    loss, h, W, b, c = _linear_ce()
    c[1] = -100
    w = rng(77).uniform(0.5, 2.0, size=7)
    for red in ("none", "sum", "mean"):
        same(loss(h, W, c, b, class_weight=w, ignore_index=-100, label_smoothing=0.1,
                  reduction=red),
             F.cross_entropy(F.linear(*T(h, W, b)), T(c), weight=T(w), label_smoothing=0.1,
                             reduction=red))


def test_linear_cross_entropy_keras(keras):
    loss, h, W, b, c = _linear_ce()
    c[::3] = 255
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255,
                                                      dtype="float64")
    same(loss(h, W, c, b, ignore_index=255), K(scce, c, h @ W.T + b))


def test_linear_cross_entropy_optax(optax):
    loss, h, W, b, c = _linear_ce()
    same(loss(h, W, c, b, reduction="none"),
         optax.losses.softmax_cross_entropy_with_integer_labels(*J(h @ W.T + b, c)))


def test_nll_loss_torch():
    r = rng(27)
    logp = log_softmax(2 * r.normal(size=(6, 4)))
    y = r.integers(0, 4, size=6)
    y[1] = -100
    w = r.uniform(0.5, 2.0, size=4)
    for red in ("none", "sum", "mean"):
        same(lk.nll_loss(logp, y, class_weight=w, ignore_index=-100, reduction=red),
             F.nll_loss(*T(logp, y), weight=T(w), reduction=red))
    # nll_loss has no label_smoothing: cross_entropy of log-probabilities has
    same(lk.nll_loss(logp, y, ignore_index=-100, label_smoothing=0.1),
         F.cross_entropy(*T(logp, y), label_smoothing=0.1))


def test_nll_loss_keras(keras):
    r = rng(28)
    logp = log_softmax(2 * r.normal(size=(6, 4)))
    y = r.integers(0, 4, size=6)
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    same(lk.nll_loss(logp, y), K(scce, y, logp))


def test_nll_loss_optax(optax):
    r = rng(29)
    logp = log_softmax(2 * r.normal(size=(6, 4)))
    y = r.integers(0, 4, size=6)
    same(lk.nll_loss(logp, y, reduction="none"),
         optax.losses.softmax_cross_entropy_with_integer_labels(*J(logp, y)))


def test_binary_cross_entropy_torch():
    r = rng(30)
    y = r.uniform(0.01, 0.99, size=(5, 3))
    t = r.uniform(size=(5, 3))
    w = r.uniform(0.1, 2.0, size=(5, 3))
    for red in ("none", "sum", "mean"):
        same(lk.binary_cross_entropy(y, t, reduction=red),
             F.binary_cross_entropy(*T(y, t), reduction=red))
    # weight=: the weighted "mean" divides by the number of elements
    same(lk.binary_cross_entropy(y, t, sample_weight=w, reduction="sum") / y.size,
         F.binary_cross_entropy(*T(y, t), weight=T(w)))
    # differs only where y < eps or 1 - y < eps (eps = finfo(dtype).eps): PyTorch clamps
    # the log at -100, losskit the probability at eps
    edge_y = np.array([1e-20, 1.0 - 2.0 ** -53, 0.0, EPS64, 0.5])
    edge_t = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    ref = F.binary_cross_entropy(*T(edge_y, edge_t), reduction="none").numpy()
    mine = lk.binary_cross_entropy(edge_y, edge_t, reduction="none")
    same(mine[3:], ref[3:])  # at y = eps and inside: equal
    same(mine[:3], np.full(3, -np.log(EPS64)))  # below the clamp: at most -log eps = 36.04
    same(ref[:3], [-np.log(1e-20), 53 * np.log(2.0), 100.0])
    # PyTorch's number there, for 0 < y < 1: the logit form (its own -100 clamp only
    # bites below y = e^-100)
    logit = np.log(edge_y[:2]) - np.log1p(-edge_y[:2])
    same(lk.sigmoid_binary_cross_entropy(logit, edge_t[:2], reduction="none"), ref[:2])
    # the clamp follows the dtype: in float32 it bites below 1.2e-7 already
    y32, t32 = np.float32([1e-6, 1e-8]), np.float32([1.0, 1.0])
    ref32 = F.binary_cross_entropy(*T(y32, t32), reduction="none").numpy()
    mine32 = lk.binary_cross_entropy(y32, t32, reduction="none")
    same(mine32[0], ref32[0], rtol=1e-6)
    same(mine32[1], -np.log(np.finfo(np.float32).eps), rtol=1e-6)
    differ(mine32[1], ref32[1])


def test_binary_cross_entropy_keras(keras):
    r = rng(31)
    y = r.uniform(size=(5, 3))
    y[0] = [1e-9, 1.0 - 1e-9, 0.0]  # clipped by Keras
    t = r.uniform(size=(5, 3))
    t[0] = [1.0, 0.0, 1.0]
    clipped = np.clip(y, KERAS_EPS, 1 - KERAS_EPS)
    bce = keras.losses.BinaryCrossentropy
    keras_same(lk.binary_cross_entropy(clipped, t), bce(dtype="float64"), t, y)
    # label_smoothing squeezes the target towards 1/2
    keras_same(lk.binary_cross_entropy(clipped, t * 0.8 + 0.1),
               bce(label_smoothing=0.2, dtype="float64"), t, y)
    differ(lk.binary_cross_entropy(y, t), K(bce(dtype="float64"), t, y))


def test_binary_cross_entropy_optax(optax):
    r = rng(32)
    y = r.uniform(0.01, 0.99, size=(5, 3))
    t = r.uniform(size=(5, 3))
    same(lk.binary_cross_entropy(y, t, reduction="none"),
         optax.losses.sigmoid_binary_cross_entropy(*J(np.log(y) - np.log1p(-y), t)))


def test_sigmoid_binary_cross_entropy_torch():
    r = rng(33)
    z = 3 * r.normal(size=(5, 3))
    t = r.uniform(size=(5, 3))
    pw = r.uniform(0.5, 3.0, size=3)
    w = r.uniform(0.1, 2.0, size=(5, 3))
    for red in ("none", "sum", "mean"):
        same(lk.sigmoid_binary_cross_entropy(z, t, pos_weight=pw, reduction=red),
             F.binary_cross_entropy_with_logits(*T(z, t), pos_weight=T(pw), reduction=red))
    same(lk.sigmoid_binary_cross_entropy(z, t, sample_weight=w, reduction="sum") / z.size,
         F.binary_cross_entropy_with_logits(*T(z, t), weight=T(w)))


@pytest.mark.parametrize("shape", [(), (1,), (3,), (1, 3), (5, 3), (5, 1)])
@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
def test_sigmoid_binary_cross_entropy_pos_weight_broadcasts_as_in_torch(shape, fast):
    """PyTorch broadcasts ``pos_weight`` with the target: a scalar, (C,), (1, C), (N, C),
    (N, 1). Value and gradient against its autograd, on both NumPy engines and on
    tensors."""
    from losskit.core import dispatch

    r = rng(36)
    z = 3 * r.normal(size=(5, 3))
    t = r.uniform(size=(5, 3))
    pw = r.uniform(0.5, 3.0, size=shape)
    zt = torch.tensor(z, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(zt, T(t), pos_weight=T(pw))
    ref.backward()
    ref = ref.detach()
    saved = dispatch.ENABLED
    dispatch.ENABLED = fast
    try:
        value, grad = lk.sigmoid_binary_cross_entropy.value_and_grad(z, t, pos_weight=pw)
        same(value, ref)
        same(grad, zt.grad)
        ours = torch.tensor(z, requires_grad=True)
        v = lk.sigmoid_binary_cross_entropy(ours, T(t), pos_weight=T(pw))
        v.backward()
        same(v.detach(), ref)
        same(ours.grad, zt.grad)
    finally:
        dispatch.ENABLED = saved


def test_sigmoid_binary_cross_entropy_keras(keras):
    r = rng(34)
    z = 10 * r.normal(size=(5, 3))
    t = r.uniform(size=(5, 3))
    bce = keras.losses.BinaryCrossentropy
    keras_same(lk.sigmoid_binary_cross_entropy(z, t),
               bce(from_logits=True, dtype="float64"), t, z)
    keras_same(lk.sigmoid_binary_cross_entropy(z, t * 0.9 + 0.05),
               bce(from_logits=True, label_smoothing=0.1, dtype="float64"), t, z)
    keras_same(lk.sigmoid_binary_cross_entropy(z, t, label_smoothing=0.1),
               bce(from_logits=True, label_smoothing=0.1, dtype="float64"), t, z)


def test_binary_label_smoothing_keras(keras):
    """The ``label_smoothing`` option of the three binary losses is Keras's
    ``t (1 - s) + s / 2``: BinaryCrossentropy on probabilities (away from Keras's 1e-7
    clip) and BinaryFocalCrossentropy on logits (no class balancing: alpha=None)."""
    r = rng(37)
    z = 2 * r.normal(size=(5, 3))
    y = 0.05 + 0.9 * r.uniform(size=(5, 3))
    t = (r.uniform(size=(5, 3)) > 0.5).astype(float)
    keras_same(lk.binary_cross_entropy(y, t, label_smoothing=0.2),
               keras.losses.BinaryCrossentropy(label_smoothing=0.2, dtype="float64"), t, y)
    focal = keras.losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True,
                                                 label_smoothing=0.2, dtype="float64")
    keras_same(lk.sigmoid_focal_loss(z, t, alpha=None, label_smoothing=0.2), focal, t, z)


def test_sigmoid_binary_cross_entropy_optax(optax):
    r = rng(35)
    z = 10 * r.normal(size=(5, 3))
    t = r.uniform(size=(5, 3))
    same(lk.sigmoid_binary_cross_entropy(z, t, reduction="none"),
         optax.losses.sigmoid_binary_cross_entropy(*J(z, t)))


def _torchvision_sigmoid_focal_loss(z, t, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss (reduction="none") on NumPy arrays."""
    return torchvision_sigmoid_focal(*T(z, t), gamma=gamma, alpha=alpha).numpy()


def test_sigmoid_focal_loss_torch():
    r = rng(36)
    z = 3 * r.normal(size=(5, 3))
    t = (r.uniform(size=(5, 3)) > 0.5).astype(float)
    # torchvision's default reduction is "none" (losskit's "mean")
    same(lk.sigmoid_focal_loss(z, t, reduction="none"), _torchvision_sigmoid_focal_loss(z, t))
    same(lk.sigmoid_focal_loss(z, t, alpha=-1, gamma=1.5, reduction="none"),
         _torchvision_sigmoid_focal_loss(z, t, alpha=-1, gamma=1.5))


def test_sigmoid_focal_loss_keras(keras):
    r = rng(37)
    z = 2 * r.normal(size=(5, 3))
    t = (r.uniform(size=(5, 3)) > 0.5).astype(float)
    bfce = keras.losses.BinaryFocalCrossentropy
    # Keras's alpha applies only with apply_class_balancing=True
    keras_same(lk.sigmoid_focal_loss(z, t, alpha=None, gamma=1.5),
               bfce(gamma=1.5, from_logits=True, dtype="float64"), t, z)
    keras_same(lk.sigmoid_focal_loss(z, t, alpha=0.3),
               bfce(apply_class_balancing=True, alpha=0.3, from_logits=True,
                    dtype="float64"), t, z)
    # differs only where sigmoid(z) < 1e-7 or > 1 - 1e-7 (Keras clips it in the log)
    ze, te = np.array([[20.0]]), np.array([[1.0]])
    with keras_mean_in_float64():
        k = K(bfce(from_logits=True, reduction=None, dtype="float64"), te, ze)
    mine = lk.sigmoid_focal_loss(ze, te, alpha=None, reduction="none").mean(axis=-1)
    differ(mine, k)
    p = sigmoid(ze)
    kept = (1 - p) ** 2 * -np.log(np.clip(p, KERAS_EPS, 1 - KERAS_EPS))
    same(kept.mean(axis=-1), k)


def test_sigmoid_focal_loss_optax(optax):
    r = rng(38)
    z = 3 * r.normal(size=(5, 3))
    t = r.uniform(size=(5, 3))
    # optax's default alpha is None (losskit's 0.25)
    same(lk.sigmoid_focal_loss(z, t, alpha=None, reduction="none"),
         optax.losses.sigmoid_focal_loss(*J(z, t)))
    same(lk.sigmoid_focal_loss(z, t, gamma=0.5, reduction="none"),
         optax.losses.sigmoid_focal_loss(*J(z, t), alpha=0.25, gamma=0.5))


def test_softmax_focal_loss_keras(keras):
    r = rng(39)
    z = 2 * r.normal(size=(6, 4))
    y = r.integers(0, 4, size=6)
    t = onehot(y, 4)
    cfce = keras.losses.CategoricalFocalCrossentropy
    # Keras's alpha defaults to 0.25 (losskit's to None)
    same(lk.softmax_focal_loss(z, t, alpha=0.25),
         K(cfce(from_logits=True, dtype="float64"), t, z))
    same(lk.softmax_focal_loss(z, y, alpha=0.5, gamma=1.0),
         K(cfce(alpha=0.5, gamma=1.0, from_logits=True, dtype="float64"), t, z))
    # probabilities (Keras renormalises them): softmax(log y) = y / sum(y)
    y_prob = 1.3 * simplex(r, (6, 4))
    same(lk.softmax_focal_loss(np.log(y_prob), t, alpha=0.25),
         K(cfce(dtype="float64"), t, y_prob))
    # differs only where a softmax probability is < 1e-7 or > 1 - 1e-7 (Keras clips)
    ze = np.array([[20.0, 0.0, 0.0]])
    te = np.array([[0.0, 1.0, 0.0]])
    differ(lk.softmax_focal_loss(ze, te, alpha=0.25),
           K(cfce(from_logits=True, dtype="float64"), te, ze))


def test_poly_loss_optax(optax):
    r = rng(40)
    z = 2 * r.normal(size=(6, 4))
    y = r.integers(0, 4, size=6)
    p = simplex(r, (6, 4))
    L = optax.losses
    # optax's default epsilon is 2 (losskit's 1); its labels are float one-hot/soft
    same(lk.poly_loss(z, y, epsilon=2.0, reduction="none"),
         L.poly_loss_cross_entropy(*J(z, onehot(y, 4))))
    same(lk.poly_loss(z, p, epsilon=-1.0, reduction="none"),
         L.poly_loss_cross_entropy(*J(z, p), epsilon=-1.0))


def test_brier_score_torch():
    r = rng(41)
    y = simplex(r, (6, 4))
    labels = r.integers(0, 4, size=6)
    same(lk.brier_score(y, labels), 4 * F.mse_loss(*T(y, onehot(labels, 4))))
    same(lk.brier_score(y, labels, reduction="none"),
         F.mse_loss(*T(y, onehot(labels, 4)), reduction="none").sum(-1))


def test_brier_score_keras(keras):
    r = rng(42)
    y = simplex(r, (6, 4))
    labels = r.integers(0, 4, size=6)
    keras_same(lk.brier_score(y, labels) / 4, keras.losses.MeanSquaredError(dtype="float64"),
               onehot(labels, 4), y)


def test_brier_score_optax(optax):
    r = rng(43)
    y = simplex(r, (6, 4))
    labels = r.integers(0, 4, size=6)
    same(lk.brier_score(y, labels, reduction="none"),
         np.asarray(optax.losses.squared_error(*J(y, onehot(labels, 4)))).sum(-1))


# ============================================================================ divergences
def test_kl_divergence_torch():
    r = rng(44)
    logq = log_softmax(2 * r.normal(size=(5, 4)))
    p = simplex(r, (5, 4))
    # "batchmean" is the KL divergence per example; for (N, K) losskit's "mean" too
    same(lk.kl_divergence(logq, p), F.kl_div(*T(logq, p), reduction="batchmean"))
    same(lk.kl_divergence(logq, np.log(p), log_target=True, reduction="batchmean"),
         F.kl_div(*T(logq, np.log(p)), reduction="batchmean", log_target=True))
    # PyTorch's "mean" divides by N * K (and warns that it will become "batchmean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch_mean = F.kl_div(*T(logq, p), reduction="mean")
    same(lk.kl_divergence(logq, p, reduction="sum") / logq.size, torch_mean)
    # PyTorch's "none" is elementwise; losskit's per example (the sum over the classes)
    same(lk.kl_divergence(logq, p, reduction="none"),
         F.kl_div(*T(logq, p), reduction="none").sum(-1))
    # 0 target against a -inf log-prediction: PyTorch NaN, losskit 0 log 0 = 0
    lq0, p0 = np.array([[-np.inf, 0.0]]), np.array([[0.0, 1.0]])
    assert float(lk.kl_divergence(lq0, p0)) == 0.0
    assert np.isnan(float(F.kl_div(*T(lq0, p0), reduction="sum")))


def test_kl_divergence_keras(keras):
    r = rng(45)
    q = simplex(r, (5, 4))
    p = simplex(r, (5, 4))
    p[0] = [1.0, 0.0, 0.0, 0.0]  # Keras clips the target too: its 0s become 1e-7
    q[1] = [1e-9, 0.5, 0.5 - 1e-9, 0.0]
    kld = keras.losses.KLDivergence(dtype="float64")
    clip = lambda a: np.clip(a, KERAS_EPS, 1.0)
    same(lk.kl_divergence(clip(q), clip(p), log_prediction=False), K(kld, p, q))
    differ(lk.kl_divergence(q[:2], p[:2], log_prediction=False), K(kld, p[:2], q[:2]))


def test_kl_divergence_optax(optax):
    r = rng(46)
    logq = log_softmax(2 * r.normal(size=(5, 4)))
    p = simplex(r, (5, 4))
    L = optax.losses
    same(lk.kl_divergence(logq, p, reduction="none"), L.kl_divergence(*J(logq, p)))
    same(lk.kl_divergence(logq, np.log(p), log_target=True, reduction="none"),
         L.kl_divergence_with_log_targets(*J(logq, np.log(p))))
    # the generalized ("convex") KL adds sum(q - p), 0 for normalised q and p
    q = 0.8 * np.exp(logq)
    extra = (q - p).sum(-1)
    same(lk.kl_divergence(np.log(q), p, reduction="none") + extra,
         L.generalized_kl_divergence(*J(np.log(q), p)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        same(lk.kl_divergence(np.log(q), p, reduction="none") + extra,
             L.convex_kl_divergence(*J(np.log(q), p)))
    # 0 target against a -inf log-prediction: optax NaN, losskit 0
    lq0, p0 = np.array([[-np.inf, 0.0]]), np.array([[0.0, 1.0]])
    assert np.isnan(np.asarray(L.kl_divergence(*J(lq0, p0)))).all()
    assert float(lk.kl_divergence(lq0, p0)) == 0.0


def test_softmax_kl_divergence_torch():
    r = rng(47)
    z, s = 2 * r.normal(size=(5, 4)), 2 * r.normal(size=(5, 4))
    for temp in (1.0, 3.0):
        ref = F.kl_div(F.log_softmax(T(z) / temp, -1), F.softmax(T(s) / temp, -1),
                       reduction="batchmean")
        same(lk.softmax_kl_divergence(z, s, temperature=temp), ref * temp ** 2)
        same(lk.softmax_kl_divergence(z, s, temperature=temp,
                                      scale_by_temperature_squared=False), ref)


def test_softmax_kl_divergence_keras(keras):
    r = rng(48)
    z, s = 2 * r.normal(size=(5, 4)), 2 * r.normal(size=(5, 4))
    temp = 2.0
    kld = keras.losses.KLDivergence(dtype="float64")
    same(lk.softmax_kl_divergence(z, s, temperature=temp),
         K(kld, softmax(s / temp), softmax(z / temp)) * temp ** 2)
    # differs only where a probability is below 1e-7 (Keras clips both)
    ze, se = np.array([[0.0, 0.0, -30.0]]), np.array([[0.0, 0.0, 0.0]])
    differ(lk.softmax_kl_divergence(ze, se), K(kld, softmax(se), softmax(ze)))


def test_softmax_kl_divergence_optax(optax):
    import jax

    r = rng(49)
    z, s = 2 * r.normal(size=(5, 4)), 2 * r.normal(size=(5, 4))
    temp = 2.0
    zj, sj = J(z, s)
    ref = optax.losses.kl_divergence(jax.nn.log_softmax(zj / temp),
                                     jax.nn.softmax(sj / temp))
    same(lk.softmax_kl_divergence(z, s, temperature=temp, reduction="none"),
         np.asarray(ref) * temp ** 2)


def test_js_divergence_scipy():
    """Not in the three libraries: scipy's Jensen-Shannon *distance* squared."""
    from scipy.spatial.distance import jensenshannon

    r = rng(50)
    q, p = simplex(r, (5, 4)), simplex(r, (5, 4))
    same(lk.js_divergence(q, p, reduction="none"), jensenshannon(q, p, axis=-1) ** 2)


# ============================================================================ margin
def _binary_scores(seed, shape=(5, 3)):
    r = rng(seed)
    s = 2 * r.normal(size=shape)
    return s, pm1(r, shape)


def test_hinge_torch():
    # no binary hinge in PyTorch (hinge_embedding_loss is another loss); multi_margin_loss
    # on the scores (0, s) with label [t > 0] is half of it
    s, t = _binary_scores(51, (8,))
    for m in (1.0, 0.5):
        two = torch.stack([torch.zeros(8, dtype=torch.float64), T(s)], -1)
        ref = 2 * F.multi_margin_loss(two, T((t > 0).astype(np.int64)), margin=m)
        same(lk.hinge(s, t, margin=m), ref)


def test_hinge_keras(keras):
    s, t = _binary_scores(52)
    hinge = keras.losses.Hinge(dtype="float64")
    keras_same(lk.hinge(s, t), hinge, t, s)
    # 0/1 labels are converted to -1/+1 when *every* label of the batch is 0 or 1
    t01 = (t + 1) / 2
    keras_same(lk.hinge(s, 2 * t01 - 1), hinge, t01, s)
    # ... but not in a batch that also holds a -1: then a 0 label stays 0
    tm = t.copy()
    tm[0, 0] = 0.0
    with keras_mean_in_float64():
        same(np.maximum(0.0, 1.0 - tm * s).mean(), K(hinge, tm, s))


def test_hinge_optax(optax):
    s, t = _binary_scores(53)
    same(lk.hinge(s, t, reduction="none"), optax.losses.hinge_loss(*J(s, t)))
    same(lk.hinge(s, t, margin=0.0, reduction="none"), optax.losses.perceptron_loss(*J(s, t)))


def _class_scores(seed, k=4):
    r = rng(seed)
    return 2 * r.normal(size=(6, k)), r.integers(0, k, size=6)


def test_multiclass_hinge_torch():
    s, y = _class_scores(54)
    n, k = s.shape
    w = rng(54).uniform(0.5, 2.0, size=k)
    for m in (1.0, 2.0):
        same(lk.multiclass_hinge(s, y, margin=m) / k, F.multi_margin_loss(*T(s, y), margin=m))
        same(lk.multiclass_hinge(s, y, margin=m, reduction="none") / k,
             F.multi_margin_loss(*T(s, y), margin=m, reduction="none"))
    # weight=: each term times w[y]; the mean still divides by N
    same(lk.multiclass_hinge(s, y, class_weight=w, reduction="sum") / (n * k),
         F.multi_margin_loss(*T(s, y), weight=T(w)))
    # p=2 squares the violations: multiclass_hinge(p=2), not the default p=1
    differ(lk.multiclass_hinge(s, y) / k, F.multi_margin_loss(*T(s, y), p=2))
    same(lk.multiclass_hinge(s, y, p=2) / k, F.multi_margin_loss(*T(s, y), p=2))


def _crammer_singer(s, y, floor_at_zero=False):
    """max(0, 1 + max_{j != y} s_j - s_y); Keras also puts the masked true score 0 into
    the max over the wrong classes."""
    k = s.shape[-1]
    wrong = np.where(np.eye(k, dtype=bool)[y], -np.inf, s)
    neg = wrong.max(-1)
    if floor_at_zero:
        neg = np.maximum(neg, 0.0)
    return np.maximum(0.0, 1.0 + neg - s[np.arange(len(y)), y])


def test_multiclass_hinge_keras(keras):
    s, y = _class_scores(55)
    s[0] = [-3.0, -2.0, -1.5, 0.5]  # every wrong score negative: Keras's max floors at 0
    y[0] = 3
    ch = keras.losses.CategoricalHinge(reduction=None, dtype="float64")
    k = K(ch, onehot(y, 4), s)
    same(_crammer_singer(s, y, floor_at_zero=True), k)  # what Keras computes
    differ(lk.multiclass_hinge(s, y, reduction="none"), k)  # not Weston-Watkins
    same(lk.multiclass_hinge(s, y, variant="categorical", reduction="none"), k)
    # two classes and a non-negative wrong score: the hinges coincide
    s2 = np.array([[0.3, 0.8], [1.5, 0.2], [0.4, 2.0]])
    y2 = np.array([1, 1, 0])
    same(lk.multiclass_hinge(s2, y2, reduction="none"), K(ch, onehot(y2, 2), s2))


def test_multiclass_hinge_optax(optax):
    s, y = _class_scores(56)
    ref = np.asarray(optax.losses.multiclass_hinge_loss(*J(s, y)))
    same(_crammer_singer(s, y), ref)  # what optax computes
    differ(lk.multiclass_hinge(s, y, reduction="none"), ref)
    same(lk.multiclass_hinge(s, y, variant="crammer_singer", reduction="none"), ref)
    s2, y2 = _class_scores(57, k=2)
    same(lk.multiclass_hinge(s2, y2, reduction="none"),
         optax.losses.multiclass_hinge_loss(*J(s2, y2)))


def test_squared_hinge_torch():
    s, t = _binary_scores(58, (8,))
    for m in (1.0, 0.5):
        two = torch.stack([torch.zeros(8, dtype=torch.float64), T(s)], -1)
        ref = 2 * F.multi_margin_loss(two, T((t > 0).astype(np.int64)), p=2, margin=m)
        same(lk.squared_hinge(s, t, margin=m), ref)


def test_squared_hinge_keras(keras):
    s, t = _binary_scores(59)
    sq = keras.losses.SquaredHinge(dtype="float64")
    keras_same(lk.squared_hinge(s, t), sq, t, s)
    t01 = (t + 1) / 2
    keras_same(lk.squared_hinge(s, 2 * t01 - 1), sq, t01, s)


def test_squared_hinge_optax(optax):
    s, t = _binary_scores(60)
    same(lk.squared_hinge(s, t, reduction="none"),
         np.asarray(optax.losses.hinge_loss(*J(s, t))) ** 2)


# ============================================================================ metric learning
def test_cosine_embedding_torch():
    r = rng(61)
    x1, x2 = r.normal(size=(6, 5)), r.normal(size=(6, 5))
    y = pm1(r, 6)
    for m in (0.0, 0.3):
        for red in ("none", "sum", "mean"):
            same(lk.cosine_embedding(x1, x2, y, margin=m, reduction=red),
                 F.cosine_embedding_loss(*T(x1, x2, y), margin=m, reduction=red))


def test_cosine_embedding_keras(keras):
    r = rng(62)
    y, t = r.normal(size=(6, 5)), r.normal(size=(6, 5))
    ones = np.ones(6)
    # Keras's CosineSimilarity loss is -cos (norms floored at 1e-7)
    same(lk.cosine_embedding(y, t, ones, eps=0.0) - 1.0,
         K(keras.losses.CosineSimilarity(dtype="float64"), t, y))


def test_cosine_embedding_optax(optax):
    r = rng(63)
    y, t = r.normal(size=(6, 5)), r.normal(size=(6, 5))
    ones = np.ones(6)
    same(lk.cosine_embedding(y, t, ones, eps=0.0, reduction="none"),
         optax.losses.cosine_distance(*J(y, t)))
    same(1.0 - lk.cosine_embedding(y, t, ones, eps=0.0, reduction="none"),
         optax.losses.cosine_similarity(*J(y, t)))


def test_margin_ranking_torch():
    r = rng(64)
    x1, x2 = r.normal(size=7), r.normal(size=7)
    y = pm1(r, 7)
    for m in (0.0, 0.5):
        for red in ("none", "sum", "mean"):
            same(lk.margin_ranking(x1, x2, y, margin=m, reduction=red),
                 F.margin_ranking_loss(*T(x1, x2, y), margin=m, reduction=red))


def test_triplet_margin_torch():
    r = rng(65)
    a, p, n = (r.normal(size=(6, 5)) for _ in range(3))
    for kw in ({}, {"p": 1.0}, {"margin": 2.0, "eps": 1e-3}, {"swap": True}):
        for red in ("none", "mean"):
            same(lk.triplet_margin(a, p, n, reduction=red, **kw),
                 F.triplet_margin_loss(*T(a, p, n), reduction=red, **kw))


def test_triplet_margin_optax(optax):
    r = rng(66)
    a, p, n = (r.normal(size=(6, 5)) for _ in range(3))
    L = optax.losses
    same(lk.triplet_margin(a, p, n, eps=0.0, margin=2.0, reduction="none"),
         L.triplet_margin_loss(*J(a, p, n), eps=0.0, margin=2.0))
    # eps > 0 is not reproducible: optax adds it to the sum of squares, losskit (and
    # PyTorch) to every component of the difference
    d_ap = np.sqrt(((a - p) ** 2).sum(-1) + 0.1)
    d_an = np.sqrt(((a - n) ** 2).sum(-1) + 0.1)
    ref = np.asarray(L.triplet_margin_loss(*J(a, p, n), eps=0.1, margin=2.0))
    same(np.maximum(2.0 + d_ap - d_an, 0.0), ref)
    differ(lk.triplet_margin(a, p, n, eps=0.1, margin=2.0, reduction="none"), ref)
    # an odd norm_degree raises the *signed* differences to that power: not a distance
    ref1 = np.asarray(L.triplet_margin_loss(*J(a, p, n), norm_degree=1, eps=0.0))
    same(np.maximum(1.0 + (a - p).sum(-1) - (a - n).sum(-1), 0.0), ref1)
    differ(lk.triplet_margin(a, p, n, p=1.0, eps=0.0, reduction="none"), ref1)


# ============================================================================ overlap
def _masks(seed, shape):
    r = rng(seed)
    p = r.uniform(0.05, 0.95, size=shape)
    t = (r.uniform(size=shape) > 0.5).astype(float)
    return p, t


def _pad(a, value):
    """Append one element with ``value`` along the last axis of every example."""
    flat = a.reshape(a.shape[0], -1)
    return np.concatenate([flat, np.full((a.shape[0], 1), value)], axis=1)


def test_dice_loss_keras(keras):
    p, t = _masks(67, (3, 4, 5))
    dice = keras.losses.Dice(dtype="float64")  # axis=None: one index for the whole batch
    k = K(dice, t, p)
    # Keras adds 1e-7 to the denominator only: one extra element (prediction 1e-7,
    # target 0) reproduces it exactly
    same(lk.dice_loss(_pad(p.reshape(1, -1), KERAS_EPS), _pad(t.reshape(1, -1), 0.0),
                      smooth=0.0, axis=None), k)
    # without it they agree to within 1e-7 / (sum p + sum t)
    plain = lk.dice_loss(p.reshape(1, -1), t.reshape(1, -1), smooth=0.0, axis=None)
    same(plain, k, rtol=KERAS_EPS / (p.sum() + t.sum()))
    differ(plain, k, rtol=1e-12)
    # axis=(1, 2): one index per example, then the batch mean
    dice_e = keras.losses.Dice(axis=(1, 2), dtype="float64")
    same(lk.dice_loss(_pad(p, KERAS_EPS), _pad(t, 0.0), smooth=0.0, axis=None),
         K(dice_e, t, p))


def test_dice_loss_optax(optax):
    r = rng(68)
    z = 2 * r.normal(size=(2, 4, 5, 3))  # channels last, C = 3: optax takes a softmax
    t = onehot(r.integers(0, 3, size=(2, 4, 5)), 3)
    L = optax.losses
    for s in (1.0, 0.0):
        same(lk.dice_loss(z, t, smooth=2 * s, axis=-1, from_logits="softmax",
                          reduction="none"),
             L.dice_loss(*J(z, t), smooth=s))
    # one channel: optax takes a sigmoid
    z1, t1 = z[..., :1], t[..., :1]
    same(lk.dice_loss(z1, t1, smooth=2.0, axis=-1, from_logits="sigmoid", reduction="none"),
         L.dice_loss(*J(z1, t1)))
    # probabilities (apply_softmax=False)
    pr = softmax(z)
    same(lk.dice_loss(pr, t, smooth=2.0, axis=-1, reduction="none"),
         L.dice_loss(*J(pr, t), apply_softmax=False))


def test_jaccard_loss_keras(keras):
    p, t = _masks(69, (3, 6))
    tv = keras.losses.Tversky(alpha=1.0, beta=1.0, axis=1, dtype="float64")
    same(lk.jaccard_loss(_pad(p, KERAS_EPS), _pad(t, 0.0), smooth=0.0, axis=None),
         K(tv, t, p))


def test_jaccard_loss_optax(optax):
    r = rng(70)
    z = 2 * r.normal(size=(2, 4, 5, 3))
    t = onehot(r.integers(0, 3, size=(2, 4, 5)), 3)
    same(lk.jaccard_loss(z, t, smooth=0.5, axis=-1, from_logits="softmax", reduction="none"),
         optax.losses.dice_loss(*J(z, t), alpha=1.0, beta=1.0, smooth=0.5))


def _keras_tversky_3_16(y_true, y_pred, alpha, beta):
    """Keras 3.16's ``keras.losses.tversky`` (keras-team/keras#23333, which swapped
    ``inputs``/``targets`` so that ``alpha`` weighs the false positives), written out for
    ``axis=1`` in float64, with Keras's mean over the examples."""
    inputs, targets = y_pred, y_true
    inter = np.sum(inputs * targets, axis=1)
    fp = np.sum((1 - targets) * inputs, axis=1)
    fn = np.sum(targets * (1 - inputs), axis=1)
    return np.mean(1 - inter / (inter + fp * alpha + fn * beta + KERAS_EPS))


def _tversky_recipe(p, t, a, b, keras_version):
    """docs/conventions.md's recipe for ``keras.losses.Tversky(alpha=a, beta=b)``."""
    if keras_version < (3, 16):  # alpha weighs the false negatives: swap
        return lk.tversky_loss(_pad(p, KERAS_EPS / b), _pad(t, 0.0), alpha=b, beta=a,
                               smooth=0.0, axis=None)
    return lk.tversky_loss(_pad(p, KERAS_EPS / a), _pad(t, 0.0), alpha=a, beta=b,
                           smooth=0.0, axis=None)


def test_tversky_loss_keras(keras):
    p, t = _masks(71, (3, 6))
    a, b = 0.7, 0.3
    installed = tuple(int(x) for x in keras.version().split(".")[:2])
    k = K(keras.losses.Tversky(alpha=a, beta=b, axis=1, dtype="float64"), t, p)
    # the installed Keras, with the recipe of its version
    same(_tversky_recipe(p, t, a, b, installed), k)
    # the other version's recipe gives another number (a != b)
    other = (3, 16) if installed < (3, 16) else (3, 15)
    differ(_tversky_recipe(p, t, a, b, other), k)
    # Keras 3.16's formula (written out): the unswapped recipe
    same(_tversky_recipe(p, t, a, b, (3, 16)), _keras_tversky_3_16(t, p, a, b))
    if installed < (3, 16):
        # and up to 3.15 its alpha is 3.16's beta
        same(k, _keras_tversky_3_16(t, p, b, a))
    differ(lk.tversky_loss(p, t, alpha=a, beta=b, smooth=0.0, axis=None), k)


def test_tversky_loss_optax(optax):
    r = rng(72)
    z = 2 * r.normal(size=(2, 4, 5, 3))
    t = onehot(r.integers(0, 3, size=(2, 4, 5)), 3)
    same(lk.tversky_loss(z, t, alpha=0.3, beta=0.7, smooth=1.0, axis=-1,
                         from_logits="softmax", reduction="none"),
         optax.losses.dice_loss(*J(z, t), alpha=0.3, beta=0.7, smooth=1.0))


# ============================================================================ boxes
def _boxes(seed, n=8):
    """Valid (x1, y1, x2, y2) pairs: overlapping, disjoint and nested ones."""
    r = rng(seed)
    xy = r.uniform(0.0, 4.0, size=(2, n, 2))
    wh = r.uniform(0.5, 3.0, size=(2, n, 2))
    p, t = (np.concatenate([xy[i], xy[i] + wh[i]], axis=-1) for i in range(2))
    t[0] = p[0] + [0.25, 0.25, -0.25, -0.25]  # nested
    t[1] = p[1] + 10.0  # disjoint
    return p, t


def _torchvision_terms(p, t, eps):
    """Intersection, union, IoU and enclosing box of torchvision.ops' box losses."""
    x1, y1, x2, y2 = p.unbind(-1)
    x1g, y1g, x2g, y2g = t.unbind(-1)
    iw = torch.min(x2, x2g) - torch.max(x1, x1g)
    ih = torch.min(y2, y2g) - torch.max(y1, y1g)
    inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    cw = torch.max(x2, x2g) - torch.min(x1, x1g)
    ch = torch.max(y2, y2g) - torch.min(y1, y1g)
    return inter, union, iou, cw, ch


def _torchvision_giou_loss(p, t, eps=1e-7):
    """torchvision.ops.generalized_box_iou_loss (reduction="none"): its formula."""
    _, union, iou, cw, ch = _torchvision_terms(p, t, eps)
    area_c = cw * ch
    return 1 - (iou - (area_c - union) / (area_c + eps))


def _torchvision_diou_loss(p, t, eps=1e-7):
    """torchvision.ops.distance_box_iou_loss (reduction="none"): its formula."""
    _, _, iou, cw, ch = _torchvision_terms(p, t, eps)
    diag = cw ** 2 + ch ** 2 + eps
    dx = (p[..., 0] + p[..., 2] - t[..., 0] - t[..., 2]) / 2
    dy = (p[..., 1] + p[..., 3] - t[..., 1] - t[..., 3]) / 2
    return 1 - iou + (dx ** 2 + dy ** 2) / diag


def _torchvision_ciou_loss(p, t, eps=1e-7):
    """torchvision.ops.complete_box_iou_loss (reduction="none"): its formula, with the
    trade-off alpha computed under no_grad."""
    _, _, iou, _, _ = _torchvision_terms(p, t, eps)
    w, h = p[..., 2] - p[..., 0], p[..., 3] - p[..., 1]
    wg, hg = t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]
    v = (4 / torch.pi ** 2) * (torch.atan(wg / hg) - torch.atan(w / h)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _torchvision_diou_loss(p, t, eps) + alpha * v


def test_iou_loss_torch():
    p, t = _boxes(73)
    # torchvision.ops.box_iou: intersection / union (pairwise; no eps)
    tp, tt = T(p, t)
    lt = torch.max(tp[:, None, :2], tt[None, :, :2])
    rb = torch.min(tp[:, None, 2:], tt[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    box_iou = inter / (area(tp)[:, None] + area(tt)[None, :] - inter)
    same(lk.iou_loss(p, t, eps=0.0, reduction="none"), 1 - torch.diagonal(box_iou))


def _check_torchvision_box_loss(name, ref):
    loss = getattr(lk, name)
    p, t = _boxes(74)
    tp, tt = T(p, t)
    tp.requires_grad_(True)
    expected = ref(tp, tt)
    # torchvision's default reduction is "none" (losskit's "mean")
    same(loss(p, t, reduction="none"), expected.detach())
    same(loss(p, t), expected.detach().mean())
    # the gradients too (CIoU: losskit's default stop_gradient=True is torchvision's
    # no_grad alpha)
    expected.sum().backward()
    same(loss.grad(p, t, reduction="sum"), tp.grad, rtol=1e-9)


def test_giou_loss_torch():
    _check_torchvision_box_loss("giou_loss", _torchvision_giou_loss)


def test_diou_loss_torch():
    _check_torchvision_box_loss("diou_loss", _torchvision_diou_loss)


def test_ciou_loss_torch():
    _check_torchvision_box_loss("ciou_loss", _torchvision_ciou_loss)


# ============================================================================ ranking
def _padded_lists(r, n=4, length=6):
    s = r.normal(size=(n, length))
    y = r.integers(0, 4, size=(n, length)).astype(np.float64)
    m = np.ones((n, length), bool)
    m[1, 4:] = False
    m[3, :] = False  # a list of padding only
    y[2] = 2.0  # nothing to rank
    return s, y, m


def test_ranking_softmax_loss_optax(optax):
    import jax
    import jax.numpy as jnp

    r = rng(90)
    s, y, m = _padded_lists(r)
    u = r.uniform(0.2, 2.0, size=s.shape)
    L = optax.losses
    for kw in ({}, {"where": m}, {"weights": u}, {"where": m, "weights": u}):
        jkw = {k: jnp.asarray(v) for k, v in kw.items()}
        for fn, red in ((jnp.mean, "mean"), (jnp.sum, "sum"), (None, "none")):
            same(lk.ranking_softmax_loss(s, y, reduction=red, **kw),
                 L.ranking_softmax_loss(*J(s, y), reduce_fn=fn, **jkw))
        same(lk.ranking_softmax_loss.grad(s, y, **kw),
             jax.grad(lambda z: L.ranking_softmax_loss(z, jnp.asarray(y), **jkw))(J(s)))


def test_pairwise_logistic_loss_pair_mean_recipe():
    """The batch-wide mean over pairs (allRank's rankNet, TF-Ranking's default
    reduction): torch's BCE-with-logits of s_i - s_j against 1, averaged over every valid
    pair y_i > y_j of the batch."""
    s, y, m = _padded_lists(rng(91))
    pairs = (y[:, :, None] > y[:, None, :]) & m[:, :, None] & m[:, None, :]
    d = (s[:, :, None] - s[:, None, :])[pairs]
    ref = F.binary_cross_entropy_with_logits(T(d), torch.ones(len(d), dtype=torch.float64))
    same(lk.pairwise_logistic_loss(s, y, where=m, reduction="sum") / pairs.sum(), ref)


# ============================================== perceptrons, soft margins, multi-label, FL*, GCE
def test_multiclass_hinge_torch_p2():
    s, y = _class_scores(150)
    k = s.shape[-1]
    for m in (1.0, 0.5):
        for red in ("mean", "sum", "none"):
            same(lk.multiclass_hinge(s, y, p=2, margin=m, reduction=red) / k,
                 F.multi_margin_loss(*T(s, y), p=2, margin=m, reduction=red))


def test_multiclass_hinge_keras_categorical(keras):
    s, y = _class_scores(151)
    s[0] = [-3.0, -2.0, -1.5, 0.5]  # every wrong score negative: Keras's max floors at 0
    y[0] = 3
    ch = keras.losses.CategoricalHinge(reduction=None, dtype="float64")
    same(lk.multiclass_hinge(s, onehot(y, 4), variant="categorical", reduction="none"),
         K(ch, onehot(y, 4), s))
    same(lk.multiclass_hinge(s, y, variant="categorical", reduction="none"),
         K(ch, onehot(y, 4), s))
    soft = simplex(rng(151), s.shape)
    soft[1] = 0.0  # no true class: max(0, 1 + max_j s_j)
    same(lk.multiclass_hinge(s, soft, variant="categorical", reduction="none"),
         K(ch, soft, s))
    same(lk.multiclass_hinge(s, soft, variant="categorical", reduction="none")[1],
         max(0.0, 1.0 + s[1].max()))
    # ... which is not Crammer-Singer where the wrong scores are all negative
    differ(lk.multiclass_hinge(s[:1], y[:1], variant="crammer_singer", reduction="none"),
           K(ch, onehot(y[:1], 4), s[:1]))


def test_multiclass_hinge_optax_crammer_singer(optax):
    s, y = _class_scores(152)
    same(lk.multiclass_hinge(s, y, variant="crammer_singer", reduction="none"),
         optax.losses.multiclass_hinge_loss(*J(s, y)))


def test_perceptron_optax(optax):
    s, t = _binary_scores(153)
    same(lk.perceptron(s, t, reduction="none"), optax.losses.perceptron_loss(*J(s, t)))
    same(lk.perceptron(s, t), lk.hinge(s, t, margin=0.0))


def test_soft_margin_torch():
    s, t = _binary_scores(154)
    for red in ("mean", "sum", "none"):
        same(lk.soft_margin(s, t, reduction=red), F.soft_margin_loss(*T(s, t), reduction=red))
    assert lk.soft_margin_loss is lk.soft_margin


def test_hinge_embedding_torch():
    r = rng(155)
    x, t = 2 * r.random(size=(5, 3)), pm1(r, (5, 3))
    for m in (1.0, 0.5):
        for red in ("mean", "sum", "none"):
            same(lk.hinge_embedding(x, t, margin=m, reduction=red),
                 F.hinge_embedding_loss(*T(x, t), margin=m, reduction=red))
    assert lk.hinge_embedding_loss is lk.hinge_embedding


def test_multiclass_perceptron_optax(optax):
    s, y = _class_scores(156)
    same(lk.multiclass_perceptron(s, y, reduction="none"),
         optax.losses.multiclass_perceptron_loss(*J(s, y)))


def test_multilabel_margin_torch():
    r = rng(157)
    s = r.normal(size=(5, 4))
    y = np.array([[3, 0, -1, 1], [1, -1, 2, 2], [0, 1, 2, 3], [-1, 0, 0, 0], [2, 2, -1, 0]])
    for red in ("mean", "sum", "none"):
        same(lk.multilabel_margin(s, y, reduction=red),
             F.multilabel_margin_loss(*T(s, y), reduction=red))
    assert lk.multilabel_margin_loss is lk.multilabel_margin


def test_multilabel_soft_margin_torch():
    r = rng(158)
    z, t = 2 * r.normal(size=(5, 4)), (r.random(size=(5, 4)) > 0.5).astype(float)
    w = r.uniform(0.5, 2.0, size=4)
    for red in ("mean", "sum", "none"):
        same(lk.multilabel_soft_margin(z, t, class_weight=w, reduction=red),
             F.multilabel_soft_margin_loss(*T(z, t), weight=T(w), reduction=red))
    same(lk.multilabel_soft_margin(z, t), F.binary_cross_entropy_with_logits(*T(z, t)))
    assert lk.multilabel_soft_margin_loss is lk.multilabel_soft_margin


def test_asymmetric_loss_torch_official():
    from cases_margin import asl_torch

    r = rng(159)
    z, t = 3 * r.normal(size=(6, 5)), (r.random(size=(6, 5)) > 0.7).astype(float)
    for gn, gp, c, e in ((4.0, 1.0, 0.05, 1e-8), (2.0, 0.0, 0.0, 1e-6)):
        zt = torch.tensor(z, requires_grad=True)
        ref = asl_torch(zt, T(t), gamma_neg=gn, gamma_pos=gp, clip=c, eps=e).sum()
        ref.backward()
        v, g = lk.asymmetric_loss.value_and_grad(z, t, gamma_neg=gn, gamma_pos=gp, clip=c,
                                                 eps=e, reduction="sum")
        same(v, ref.detach())
        same(g, zt.grad, atol=1e-15)


def test_sigmoid_focal_loss_star_torch_fvcore():
    from cases_margin import fvcore_focal_star

    r = rng(160)
    z, t = 3 * r.normal(size=(6, 5)), (r.random(size=(6, 5)) > 0.5).astype(float)
    for a, g in ((None, 1.0), (0.25, 2.0)):
        ref = fvcore_focal_star(*T(z, t), alpha=-1.0 if a is None else a, gamma=g)
        same(lk.sigmoid_focal_loss_star(z, t, alpha=a, gamma=g, reduction="none"), ref)
    # gamma 1 without alpha is the logistic loss of hard labels
    same(lk.sigmoid_focal_loss_star(z, t), F.binary_cross_entropy_with_logits(*T(z, t)))


def test_generalized_cross_entropy_keras(keras):
    r = rng(161)
    y, c = simplex(r, (6, 4)), r.integers(0, 4, size=6)
    for q in (0.5, 0.7):
        gce = keras.losses.CategoricalGeneralizedCrossEntropy(q=q, dtype="float64")
        same(lk.generalized_cross_entropy(y, c, q=q), K(gce, c, y))
        gce = keras.losses.CategoricalGeneralizedCrossEntropy(q=q, reduction=None,
                                                              dtype="float64")
        same(lk.generalized_cross_entropy(y, c, q=q, reduction="none"), K(gce, c, y))


# ============================================================================ sequence (CTC)
def _ctc_batch(r, n=4, t=10, c=5, s=3, blank=0):
    """Logits (N, T, C), padded labels (N, S) right-padded with the blank, lengths:
    varying, an empty target, a repeated label, every sequence feasible."""
    z = r.normal(scale=1.5, size=(n, t, c))
    labels = np.array([k for k in range(c) if k != blank])
    y = labels[r.integers(0, len(labels), size=(n, s))]
    y[0, :2] = y[0, 0]
    tl = np.array([s, 2, 0, 1])[:n]
    il = np.array([t, t - 2, 3, t - 1])[:n]
    y = np.where(np.arange(s)[None, :] < tl[:, None], y, blank)
    return z, y, il, tl


def test_ctc_loss_torch():
    r = rng(90)
    z, y, il, tl = _ctc_batch(r)
    lp = log_softmax(z).transpose(1, 0, 2)  # (T, N, C)
    cat = np.concatenate([y[i, :tl[i]] for i in range(len(tl))])
    for targets in (y, cat):
        for red in ("none", "sum", "mean"):
            lpt = torch.tensor(lp, requires_grad=True)
            ref = F.ctc_loss(lpt, *T(targets, il, tl), reduction=red)
            (ref.sum() if red == "none" else ref).backward()
            v, g = lk.ctc_loss.value_and_grad(lp, targets, il, tl, reduction=red)
            same(v, ref.detach().numpy())
            same(g, lpt.grad.numpy(), atol=1e-14)
    # the blank elsewhere, and an impossible sequence (3 labels in 2 frames)
    y2 = np.where(y == 0, 4, np.where(y == 4, 0, y))
    il2 = np.array([10, 2, 3, 9])
    tl2 = np.array([3, 2, 0, 1])
    y2[1, :2] = [1, 2]
    il2[1] = 1
    for zi in (False, True):
        lpt = torch.tensor(lp, requires_grad=True)
        ref = F.ctc_loss(lpt, *T(y2, il2, tl2), blank=4, reduction="sum", zero_infinity=zi)
        ref.backward()
        v, g = lk.ctc_loss.value_and_grad(lp, y2, il2, tl2, blank=4, reduction="sum",
                                          zero_infinity=zi)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(lpt.grad.numpy()))
        if zi:
            same(v, ref.detach().numpy())
            same(g, lpt.grad.numpy(), atol=1e-14)
        else:
            assert v == ref.item() == np.inf


def test_ctc_loss_keras(keras):
    r = rng(91)
    z, y, _, tl = _ctc_batch(r)
    n, t = z.shape[:2]
    assert np.array_equal((y != 0).sum(1), tl)
    recipe = lk.ctc_loss(z, y, np.full(n, t), (y != 0).sum(1), layout="NTC",
                         reduction="batchmean")
    # Keras's JAX backend runs part of the recursion in float32 even for float64 input
    same(recipe, K(keras.losses.CTC(dtype="float64"), y, z), rtol=KERAS_MEAN_RTOL)
    per_sequence = K(keras.losses.CTC(dtype="float64", reduction=None), y, z)
    same(lk.ctc_loss(z, y, np.full(n, t), tl, layout="NTC", reduction="none"), per_sequence,
         rtol=KERAS_MEAN_RTOL)


def test_ctc_loss_optax(optax):
    import jax

    r = rng(92)
    for blank in (0, 2):
        z, y, il, tl = _ctc_batch(r, blank=blank)
        n, t = z.shape[:2]
        s = y.shape[1]
        zp = (np.arange(t)[None, :] >= il[:, None]).astype(float)
        yp = (np.arange(s)[None, :] >= tl[:, None]).astype(float)

        def f(logits):
            return optax.losses.ctc_loss(logits, *J(zp, y, yp), blank_id=blank)
        ref_v = f(J(z))
        ref_g = jax.grad(lambda logits: f(logits).sum())(J(z))
        v, g = lk.ctc_loss.value_and_grad(z, y, t - zp.sum(1).astype(int),
                                          s - yp.sum(1).astype(int), blank=blank,
                                          layout="NTC", reduction="none")
        same(v, ref_v)
        same(g, ref_g, atol=1e-14)
    # an impossible sequence: Optax's log 0 is -1e5, a large finite cost
    il[1] = 1
    zp = (np.arange(t)[None, :] >= il[:, None]).astype(float)
    ref = np.asarray(optax.losses.ctc_loss(*J(z, zp, y, yp), blank_id=blank))
    v = lk.ctc_loss(z, y, il, tl, blank=blank, layout="NTC", reduction="none")
    assert v[1] == np.inf and 1e4 < ref[1] < np.inf
    same(np.delete(v, 1), np.delete(ref, 1))


def test_sparsemax_loss_optax(optax):
    import jax

    r = rng(95)
    z = 2 * r.normal(size=(6, 4))
    z[0, :3] = [-1.0, 1.0, 0.0]  # the pieces' joints
    t = (r.uniform(size=(6, 4)) > 0.5).astype(float)
    ref_v = optax.losses.sparsemax_loss(*J(z, t))
    ref_g = jax.grad(lambda s: optax.losses.sparsemax_loss(s, J(t)).sum())(J(z))
    v, g = lk.sparsemax_loss.value_and_grad(z, t, reduction="none")
    same(v, ref_v)
    same(g, ref_g)
    # at an infinite score the values agree; Optax's gradient is NaN, losskit's the limit
    zi, ti = np.array([np.inf, -np.inf]), np.array([0.0, 1.0])
    same(lk.sparsemax_loss(zi, ti, reduction="none"), optax.losses.sparsemax_loss(*J(zi, ti)))
    assert np.isnan(np.asarray(jax.grad(
        lambda s: optax.losses.sparsemax_loss(s, J(ti)).sum())(J(zi)))).all()
    assert lk.sparsemax_loss.grad(zi, ti, reduction="sum").tolist() == [1.0, -1.0]


def test_multiclass_sparsemax_loss_optax(optax):
    import jax

    r = rng(96)
    s = 2 * r.normal(size=(8, 5))
    c = r.integers(0, 5, 8)
    ref_v = optax.losses.multiclass_sparsemax_loss(*J(s, c))
    ref_g = jax.grad(lambda x: optax.losses.multiclass_sparsemax_loss(x, J(c)).sum())(J(s))
    v, g = lk.multiclass_sparsemax_loss.value_and_grad(s, c, reduction="none")
    same(v, ref_v, atol=1e-15)
    same(g, ref_g, atol=1e-15)
    same(lk.sparsemax(s), jax.vmap(optax.projections.projection_simplex)(J(s)), atol=1e-15)
    # the Fenchel-Young factory: Optax's max_fun, losskit's max_fun and its gradient
    t = simplex(r, (8, 5))
    fy = optax.losses.make_fenchel_young_loss(max_fun=jax.scipy.special.logsumexp)
    mine = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    same(mine(s, t, reduction="none"), fy(*J(s, t)))
    same(mine.grad(s, t, reduction="sum"),
         jax.grad(lambda x: fy(x, J(t)).sum())(J(s)), atol=1e-15)
