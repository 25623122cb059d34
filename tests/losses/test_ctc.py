"""ctc_loss against torch.nn.functional.ctc_loss and optax.ctc_loss (value and gradient),
finite differences, the PyTorch and JAX adapters, errors, and properties of CTC itself.

PyTorch's layout (T, N, C) is tested here (the catalog cases use the batch-first layout).
Expected numbers come from PyTorch, Optax or the definition; never from losskit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import fast_paths

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(params=["fused", "generic-numpy"])
def engine(request, monkeypatch):
    """Every test runs on the numba kernel and on the generic kernel (NumPy)."""
    if request.param == "generic-numpy":
        monkeypatch.setattr(fast_paths, "USE_NUMBA", False)
    return request.param


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def batch(seed=0, t=12, n=6, c=6, s=4, blank=0):
    """(T, N, C) log-probabilities, padded targets (padding -1), lengths: repeated labels,
    an empty target, a sequence of length 0 with an empty target, one impossible sequence
    (3 different labels in 2 frames) and varying lengths."""
    r = np.random.default_rng(seed)
    lp = log_softmax(r.normal(scale=1.5, size=(t, n, c)))
    labels = np.array([k for k in range(c) if k != blank])
    y = labels[r.integers(0, len(labels), size=(n, s))]
    y[0, :3] = [labels[1], labels[1], labels[1]]  # needs 5 frames
    if n > 3:
        y[3, :3] = labels[:3]
    tl = np.array([s, 2, 0, 3, 1, 0])[:n]
    il = np.array([t, t - 3, 5, 2, 4, 0])[:n]
    y = np.where(np.arange(s)[None, :] < tl[:, None], y, -1)
    return lp, y, il, tl


def torch_ref(lp, y, il, tl, reduction, **kw):
    lpt = torch.tensor(lp, requires_grad=True)
    v = F.ctc_loss(lpt, torch.tensor(np.where(y < 0, 0, y)) if y.ndim == 2 else torch.tensor(y),
                   torch.tensor(il), torch.tensor(tl), reduction=reduction, **kw)
    (v.sum() if reduction == "none" else v).backward()
    return v.detach().numpy(), lpt.grad.numpy()


def concatenated(y, tl):
    return np.concatenate([y[i, :tl[i]] for i in range(len(tl))]).astype(np.int64)


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("form", ["padded", "concatenated"])
@pytest.mark.parametrize("blank", [0, 5, 2])
def test_value_and_grad_equal_torch(engine, blank, form, reduction, zero_infinity):
    lp, y, il, tl = batch(blank=blank)
    targets = y if form == "padded" else concatenated(y, tl)
    kw = dict(blank=blank, zero_infinity=zero_infinity)
    ref_v, ref_g = torch_ref(lp, targets, il, tl, reduction, **kw)
    v, g = lk.ctc_loss.value_and_grad(lp, targets, il, tl, reduction=reduction, **kw)
    assert v.shape == ref_v.shape and g.shape == lp.shape
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    # impossible sequence: NaN on its frames, as PyTorch (0 with zero_infinity)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(ref_g))
    assert np.isnan(g).any() != zero_infinity
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-13)
    # batchmean: the sum over N; NTC layout: the same numbers, transposed
    np.testing.assert_allclose(lk.ctc_loss(lp, targets, il, tl, reduction="batchmean", **kw),
                               lk.ctc_loss(lp, targets, il, tl, reduction="sum", **kw) / 6,
                               rtol=1e-13)
    vn, gn = lk.ctc_loss.value_and_grad(np.ascontiguousarray(lp.transpose(1, 0, 2)), targets,
                                        il, tl, reduction=reduction, layout="NTC", **kw)
    np.testing.assert_allclose(vn, ref_v, rtol=1e-12)
    np.testing.assert_allclose(gn, ref_g.transpose(1, 0, 2), rtol=1e-10, atol=1e-13)


def test_float32_and_the_two_engines_agree(monkeypatch):
    lp, y, il, tl = batch(seed=3)
    ref_v, ref_g = torch_ref(lp, y, il, tl, "mean", zero_infinity=True)
    v, g = lk.ctc_loss.value_and_grad(lp.astype(np.float32), y, il, tl, zero_infinity=True)
    assert v.dtype == g.dtype == np.float32
    np.testing.assert_allclose(v, ref_v, rtol=1e-5)
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)
    fused = lk.ctc_loss.value_and_grad(lp, y, il, tl, reduction="none", zero_infinity=True)
    monkeypatch.setattr(dispatch, "ENABLED", False)
    generic = lk.ctc_loss.value_and_grad(lp, y, il, tl, reduction="none", zero_infinity=True)
    np.testing.assert_allclose(fused[0], generic[0], rtol=1e-13)
    np.testing.assert_allclose(fused[1], generic[1], rtol=1e-11, atol=1e-15)


def test_equals_optax_with_paddings_in_value_and_logit_gradient(engine):
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    if not jax.config.jax_enable_x64:
        pytest.skip("float64 JAX is needed")
    import jax.numpy as jnp

    r = np.random.default_rng(5)
    n, t, c, s = 4, 10, 5, 3
    z = r.normal(scale=2.0, size=(n, t, c))  # logits: Optax normalises them
    y = np.array([[2, 2, 3], [1, 4, 0], [0, 0, 0], [3, 0, 0]])
    tl = np.array([3, 2, 0, 1])
    il = np.array([10, 7, 4, 9])
    zp = (np.arange(t)[None, :] >= il[:, None]).astype(float)
    yp = (np.arange(s)[None, :] >= tl[:, None]).astype(float)

    def f(logits):
        return optax.ctc_loss(logits, jnp.asarray(zp), jnp.asarray(y), jnp.asarray(yp))
    ref_v = np.asarray(f(jnp.asarray(z)))
    ref_g = np.asarray(jax.grad(lambda a: f(a).sum())(jnp.asarray(z)))
    # the recipe: lengths from the paddings
    v, g = lk.ctc_loss.value_and_grad(z, y, t - zp.sum(1).astype(int), s - yp.sum(1).astype(int),
                                      layout="NTC", reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-13)


def test_gradient_matches_finite_differences(engine):
    lp, y, il, tl = batch(seed=7, t=7, n=3, c=4, s=3)
    il[:] = [7, 6, 5]  # every sequence feasible
    for reduction in ("none", "mean"):
        res = lk.gradcheck(lk.ctc_loss, lp, y, il, tl, reduction=reduction)
        assert res.ok and res.kinks == 0, res


def test_torch_adapter_backward_is_the_closed_form():
    lp, y, il, tl = batch(seed=9)
    ref_v, ref_g = torch_ref(lp, y, il, tl, "mean", zero_infinity=True)
    x = torch.tensor(lp, requires_grad=True)
    v = lk.ctc_loss(x, torch.tensor(y), torch.tensor(il), torch.tensor(tl), zero_infinity=True)
    v.backward()
    np.testing.assert_allclose(v.detach().numpy(), ref_v, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), ref_g, rtol=1e-10, atol=1e-13)
    # reduction="none" backpropagates a cotangent per sequence
    x.grad = None
    w = torch.arange(1.0, 7.0, dtype=torch.float64)
    vals = lk.ctc_loss(x, torch.tensor(y), torch.tensor(il), torch.tensor(tl),
                       zero_infinity=True, reduction="none")
    (vals * w).sum().backward()
    xr = torch.tensor(lp, requires_grad=True)
    ref = F.ctc_loss(xr, torch.tensor(np.where(y < 0, 0, y)), torch.tensor(il),
                     torch.tensor(tl), zero_infinity=True, reduction="none")
    (ref * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_jax_grad_and_jit_give_the_closed_form():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    lp, y, il, tl = batch(seed=11)
    ref_v, ref_g = torch_ref(lp, y, il, tl, "sum", zero_infinity=True)
    args = tuple(jnp.asarray(a) for a in (y, il, tl))
    g = jax.grad(lambda a: lk.ctc_loss(a, *args, zero_infinity=True, reduction="sum"))(
        jnp.asarray(lp))
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-6, atol=1e-9)
    # concatenated targets under jit: the lengths are traced, nothing is read
    cat = jnp.asarray(concatenated(y, tl))
    f = jax.jit(jax.value_and_grad(
        lambda a, yy, ii, tt: lk.ctc_loss(a, yy, ii, tt, zero_infinity=True, reduction="sum")))
    v, g2 = f(jnp.asarray(lp), cat, *args[1:])
    np.testing.assert_allclose(float(v), ref_v, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g2), ref_g, rtol=1e-6, atol=1e-9)


def test_generic_path_on_torch_tensors():
    """The Array-API kernel with torch operations (what CUDA tensors run)."""
    lp, y, il, tl = batch(seed=13)
    ref_v, ref_g = torch_ref(lp, y, il, tl, "mean", zero_infinity=True)
    arrays = tuple(torch.tensor(a) for a in (lp, y, il, tl))
    v, g = lk.ctc_loss._generic(arrays, "mean", None,
                         {"blank": 0, "zero_infinity": True, "layout": "TNC"}, "both", None,
                         ("log_probs",), False, None)
    np.testing.assert_allclose(v.numpy(), ref_v, rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), ref_g, rtol=1e-10, atol=1e-13)


def test_mean_divides_each_sequence_by_its_target_length_and_weights(engine):
    lp, y, il, tl = batch(seed=15)
    kw = dict(zero_infinity=True)
    per = lk.ctc_loss(lp, y, il, tl, reduction="none", **kw)
    np.testing.assert_allclose(lk.ctc_loss(lp, y, il, tl, **kw),
                               np.mean(per / np.maximum(tl, 1)), rtol=1e-13)
    w = np.array([0.5, 2.0, 1.0, 0.0, 3.0, 1.0])
    np.testing.assert_allclose(lk.ctc_loss(lp, y, il, tl, sample_weight=w, **kw),
                               np.sum(w * per / np.maximum(tl, 1)) / w.sum(), rtol=1e-13)
    # a zero weight removes an impossible sequence (inf) entirely
    v, g = lk.ctc_loss.value_and_grad(lp, y, il, tl, sample_weight=w)
    assert np.isfinite(v) and not np.isnan(g).any()
    # a mean over nothing is 0 with a zero gradient
    v, g = lk.ctc_loss.value_and_grad(lp, y, il, tl, sample_weight=np.zeros(6))
    assert v == 0.0 and not g.any()


def test_hand_checkable_values(engine):
    # T = 1, one label: the only alignment emits it
    logp = np.log(np.array([[[0.25, 0.5, 0.25]]]))
    v, g = lk.ctc_loss.value_and_grad(logp, np.array([[1]]), np.array([1]), np.array([1]),
                                      reduction="sum")
    np.testing.assert_allclose(v, np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(g, [[[0.25, -0.5, 0.25]]], rtol=1e-15)  # p - onehot
    # an empty target: every frame emits the blank
    lp = log_softmax(np.random.default_rng(0).normal(size=(4, 1, 3)))
    v = lk.ctc_loss(lp, np.zeros((1, 0), dtype=np.int64), np.array([4]), np.array([0]),
                    reduction="sum")
    np.testing.assert_allclose(v, -lp[:, 0, 0].sum(), rtol=1e-14)
    # two frames, the label (a): alignments a-, -a, aa
    p = np.exp(lp[:2, 0])
    v = lk.ctc_loss(lp[:2], np.array([[1]]), np.array([2]), np.array([1]), reduction="sum")
    expected = -np.log(p[0, 1] * p[1, 0] + p[0, 0] * p[1, 1] + p[0, 1] * p[1, 1])
    np.testing.assert_allclose(v, expected, rtol=1e-14)
    # a repeated label (a a) in 2 frames is impossible; in 3 frames only a - a
    v = lk.ctc_loss(lp[:2], np.array([[1, 1]]), np.array([2]), np.array([2]), reduction="sum")
    assert v == np.inf
    v = lk.ctc_loss(lp[:3], np.array([[1, 1]]), np.array([3]), np.array([2]), reduction="sum")
    np.testing.assert_allclose(v, -(lp[0, 0, 1] + lp[1, 0, 0] + lp[2, 0, 1]), rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(2, 5), st.integers(0, 3), st.data())
def test_properties(length, c, extra, data):
    """The loss of log-softmax input is >= 0; with T = L and no repeated neighbours the
    only alignment is the labels themselves."""
    labels = data.draw(st.lists(st.integers(1, c - 1), min_size=length, max_size=length))
    seed = data.draw(st.integers(0, 2 ** 16))
    y = np.array([labels])
    lp = log_softmax(np.random.default_rng(seed).normal(scale=3.0, size=(length + extra, 1, c)))
    v = lk.ctc_loss(lp, y, np.array([length + extra]), np.array([length]), reduction="sum")
    assert v >= -1e-12
    if extra == 0 and all(a != b for a, b in zip(labels, labels[1:])):
        np.testing.assert_allclose(v, -lp[np.arange(length), 0, labels].sum(), rtol=1e-12)


# ------------------------------------------------------------------------------ errors
def _ok():
    lp, y, il, tl = batch(seed=17)
    return lp, y, il, tl


@pytest.mark.parametrize("mutate,error,match", [
    (lambda a: (a[0][0], *a[1:]), ValueError, r"`log_probs` of ctc_loss must have 3 axes"),
    (lambda a: (a[0], a[1], np.array([12, 9, 5, 2, 4, 13]), a[3]), ValueError,
     r"`input_lengths` of ctc_loss must lie in \[0, 12\].*got 13"),
    (lambda a: (a[0], a[1], np.array([12, 9, 5, 2, 4, -1]), a[3]), ValueError,
     r"`input_lengths` .* got -1"),
    (lambda a: (a[0], a[1], a[2], np.array([4, 2, 0, 3, 1, -2])), ValueError,
     r"`target_lengths` of ctc_loss must lie in \[0, inf\).*got -2"),
    (lambda a: (a[0], a[1], a[2], np.array([5, 2, 0, 3, 1, 0])), ValueError,
     r"`target_lengths` of ctc_loss must lie in \[0, 4\] \(the width S"),
    (lambda a: (a[0], a[1], a[2][:5], a[3]), ValueError,
     r"`input_lengths` of ctc_loss must have shape \(6,\)"),
    (lambda a: (a[0], a[1][:5], a[2], a[3]), ValueError, r"padded `targets` .* N = 6"),
    (lambda a: (a[0], np.where(a[1] == 1, 0, a[1]), a[2], a[3]), ValueError,
     r"must not contain the blank label \(0\)"),
    (lambda a: (a[0], np.where(a[1] == 1, 6, a[1]), a[2], a[3]), ValueError,
     r"class indices in \[0, 5\].*got 6"),
    (lambda a: (a[0], concatenated(a[1], a[3])[:-1], a[2], a[3]), ValueError,
     r"sum\(target_lengths\) = 10 labels; got 9"),
    (lambda a: (a[0], a[1][None], a[2], a[3]), ValueError, r"`targets` of ctc_loss must be"),
    (lambda a: (a[0], a[1].astype(float), a[2], a[3]), TypeError,
     r"`targets` of ctc_loss must be an integer array; got dtype float64"),
    (lambda a: (a[0], a[1], a[2].astype(float), a[3]), TypeError, r"`input_lengths`"),
    (lambda a: (a[0].astype(int), *a[1:]), TypeError, r"`log_probs`.*floating"),
])
def test_errors_name_the_argument(engine, mutate, error, match):
    with pytest.raises(error, match=match):
        lk.ctc_loss(*mutate(_ok()))


def test_option_errors():
    a = _ok()
    with pytest.raises(ValueError, match=r"`blank` of ctc_loss must lie in \[0, 5\]"):
        lk.ctc_loss(*a, blank=6)
    with pytest.raises(TypeError, match=r"`blank` of ctc_loss must be an int"):
        lk.ctc_loss(*a, blank=1.0)
    with pytest.raises(TypeError, match=r"`zero_infinity` of ctc_loss must be True or False"):
        lk.ctc_loss(*a, zero_infinity=1)
    with pytest.raises(ValueError, match=r"`layout` must be one of 'TNC', 'NTC'"):
        lk.ctc_loss(*a, layout="BTC")
    with pytest.raises(ValueError, match=r"`sample_weight` of ctc_loss must .*shape.*\(6,\)"):
        lk.ctc_loss(*a, sample_weight=np.ones(5))


def test_invalid_input_under_jit_is_nan():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    lp, y, il, tl = _ok()
    bad = np.where(y == 1, 0, y)  # a blank inside a target
    v = jax.jit(lambda a, yy: lk.ctc_loss(a, yy, jnp.asarray(il), jnp.asarray(tl),
                                          zero_infinity=True))(jnp.asarray(lp), jnp.asarray(bad))
    assert np.isnan(float(v))


def _extended(y_row, ln, blank):
    ext = np.empty(2 * ln + 1, dtype=np.int64)
    ext[0::2] = blank
    ext[1::2] = y_row[:ln]
    return ext


def test_scaled_and_log_space_recursions_agree():
    """The numba kernel's two recursions (probability space scaled per frame, and log
    space) on the same sequences: the same values and gradients to rounding, impossible
    and empty sequences included."""
    nb = pytest.importorskip("losskit.kernels.ctc_numba")
    lp, y, il, tl = batch(seed=4)
    lp = np.ascontiguousarray(lp)
    T, N, C = lp.shape
    out = {}
    for name in ("_scaled", "_log_space"):
        for zero_inf in (False, True):
            values = np.full(N, -7.0)
            grad = np.full((T, N, C), -7.0)
            for n in range(N):
                ext = _extended(y[n], tl[n], 0)
                grad[il[n]:, n, :] = 0.0
                r = getattr(nb, name)(lp, n, ext, len(ext), il[n], 0, zero_inf, 0.5, values,
                                      grad, True)
                assert r is None or r is True  # no fallback on ordinary frames
            out[name, zero_inf] = values, grad
    for zero_inf in (False, True):
        (v1, g1), (v2, g2) = out["_scaled", zero_inf], out["_log_space", zero_inf]
        np.testing.assert_allclose(v1, v2, rtol=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)
    assert np.isinf(out["_scaled", False][0][3])  # the impossible sequence
    assert np.all(np.isnan(out["_scaled", False][1][:il[3], 3]))


def test_emissions_far_below_e_minus_600_take_the_log_space_recursion(engine):
    """Log-probabilities of -800 (a logit range of 800) would underflow a product of
    probabilities: the kernel keeps them in log space, as PyTorch does."""
    lp, y, il, tl = batch(seed=6)
    lp = lp.copy()
    lp[2:5, 1, :] = log_softmax(np.linspace(0.0, 800.0, lp.shape[2]))[None, :]
    want_v, want_g = torch_ref(lp, y, il, tl, "none", zero_infinity=True)
    v, g = lk.ctc_loss.value_and_grad(lp, y, il, tl, reduction="none", zero_infinity=True)
    assert lp[2:5, 1, 0].max() < -600  # the blank's emission in those frames
    np.testing.assert_allclose(v, want_v, rtol=1e-12)
    np.testing.assert_allclose(g, want_g, rtol=1e-9, atol=1e-12)
