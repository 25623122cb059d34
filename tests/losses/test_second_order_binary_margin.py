"""Second order of the binary (sigmoid) losses, the Brier score and the margin losses at
the edges and with the options the catalog cases leave out: expected values from the
mathematics written out here, or from ``torch.autograd.functional.hessian`` of a torch
formula written out here."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

Z = np.array([-1e4, -40.0, -2.0, 0.0, 3.0, 40.0, 1e4, np.inf, -np.inf])


def _sig_var(z):
    """sigma(z) (1 - sigma(z)) = e / (1 + e)^2, e = exp(-|z|)."""
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


def _torch_hessian(f, x):
    x = torch.tensor(x, dtype=torch.float64)
    h = torch.autograd.functional.hessian(f, x)
    return h.reshape(x.numel(), x.numel()).numpy()


def _check(loss, f, arrays, **options):
    """hessian, hvp and grad_and_hessian of ``loss`` against the torch Hessian of ``f``."""
    H = _torch_hessian(f, arrays[0])
    shape = np.shape(arrays[0])
    h = loss.hessian(*arrays, **options)
    np.testing.assert_allclose(h.reshape(-1), np.diag(H), rtol=1e-9, atol=1e-12)
    v = np.random.default_rng(1).normal(size=shape)
    hv = loss.hvp(*arrays, vector=v, **options)
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- sigmoid BCE
def test_sigmoid_bce_hessian_at_extreme_logits():
    t = np.array([1.0, 0.0, 0.3, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    h = lk.sigmoid_binary_cross_entropy.hessian(Z, t, reduction="none")
    np.testing.assert_allclose(h, _sig_var(Z), rtol=1e-14, atol=0)
    assert h[3] == 0.25 and h[0] == 0.0 and h[-1] == 0.0 and h[-2] == 0.0
    assert 0 < h[1] == pytest.approx(np.exp(-40.0), rel=1e-15)
    # pos_weight w: the coefficient w t + 1 - t
    h = lk.sigmoid_binary_cross_entropy.hessian(Z, t, pos_weight=3.0, reduction="none")
    np.testing.assert_allclose(h, (3.0 * t + 1.0 - t) * _sig_var(Z), rtol=1e-14, atol=0)


def test_sigmoid_bce_options_match_torch():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 4)) * 2
    t = rng.integers(0, 2, size=(3, 4)).astype(float)
    t[0, 1] = t[2, 3] = -100.0
    pw = np.array([0.5, 2.0, 1.0, 3.0])
    sw = np.array([1.0, 0.5, 2.0])
    s = 0.2

    def f(x):
        tt = torch.tensor(t)
        keep = (tt != -100).double()
        ts = torch.where(keep > 0, tt, torch.zeros_like(tt)) * (1 - s) + 0.5 * s
        v = torch.nn.functional.binary_cross_entropy_with_logits(
            x, ts, pos_weight=torch.tensor(pw), reduction="none")
        w = keep * torch.tensor(sw)[:, None]
        return (v * w).sum() / w.sum()

    _check(lk.sigmoid_binary_cross_entropy, f, (z, t), pos_weight=pw, label_smoothing=s,
           ignore_index=-100, sample_weight=sw)


# ---------------------------------------------------------------- BCE of probabilities
def test_bce_hessian_exact_and_clamped():
    y = np.array([0.0, 0.25, 0.5, 1.0, 1e-300])
    t = np.array([0.0, 1.0, 0.5, 1.0, 0.0])
    h = lk.binary_cross_entropy.hessian(y, t, reduction="none")
    # t / y^2 + (1 - t) / (1 - y)^2; a term whose argument is below the clamp is 0
    np.testing.assert_allclose(h, [1.0, 16.0, 4.0, 1.0, 1.0], rtol=1e-15)


def test_bce_label_smoothing_matches_torch():
    rng = np.random.default_rng(1)
    y = rng.uniform(0.05, 0.95, size=(2, 3))
    t = rng.integers(0, 2, size=(2, 3)).astype(float)
    s = 0.1

    def f(x):
        return torch.nn.functional.binary_cross_entropy(
            x, torch.tensor(t) * (1 - s) + 0.5 * s, reduction="sum")

    _check(lk.binary_cross_entropy, f, (y, t), label_smoothing=s, reduction="sum")


# ---------------------------------------------------------------- focal losses
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_sigmoid_focal_hessian_saturated_positive(gamma):
    # t = 1 at a large logit: q = sigma(-z), c = log1p(e^-z), so l ~ alpha e^{-(g+1) z}
    z = np.array([30.0, 1e4, np.inf, -1e4, -np.inf])
    t = np.ones_like(z)
    h = lk.sigmoid_focal_loss.hessian(z, t, gamma=gamma, alpha=0.25, reduction="none")
    assert np.all(np.isfinite(h))
    assert h[0] == pytest.approx(0.25 * (gamma + 1) ** 2 * np.exp(-(gamma + 1) * 30.0),
                                 rel=1e-10)
    # z -> -inf: l ~ -alpha z, linear; z -> +inf: 0
    np.testing.assert_array_equal(h[1:], 0.0)


def test_sigmoid_focal_options_match_torch():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 4)) * 2
    t = rng.integers(0, 2, size=(2, 4)).astype(float)
    t[1, 2] = -1.0
    g, a, s = 1.5, 0.3, 0.2

    def f(x):
        tt = torch.tensor(t)
        keep = (tt != -1).double()
        ts = torch.where(keep > 0, tt, torch.zeros_like(tt)) * (1 - s) + 0.5 * s
        p = torch.sigmoid(x)
        ce = torch.nn.functional.binary_cross_entropy_with_logits(x, ts, reduction="none")
        pt = p * ts + (1 - p) * (1 - ts)
        v = (a * ts + (1 - a) * (1 - ts)) * ce * (1 - pt) ** g
        return (v * keep).sum() / keep.sum()

    _check(lk.sigmoid_focal_loss, f, (z, t), gamma=g, alpha=a, label_smoothing=s,
           ignore_index=-1)


def test_focal_star_hessian_extremes():
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    h = lk.sigmoid_focal_loss_star.hessian(Z, t, gamma=2.0, alpha=0.25, reduction="none")
    at = 0.25 * t + 0.75 * (1 - t)
    np.testing.assert_allclose(h, at * 2.0 * _sig_var(2.0 * Z), rtol=1e-14, atol=0)
    assert np.all(np.isfinite(h))


# ---------------------------------------------------------------- multi-label
def test_multilabel_sigmoid_losses_finite_at_extremes():
    x = Z[None, :]
    t = np.array([[1.0, 0.0, 0.3, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])
    h = lk.multilabel_soft_margin.hessian(x, t, reduction="sum")
    np.testing.assert_allclose(h, _sig_var(x) / x.shape[-1], rtol=1e-14, atol=0)
    for opts in ({}, {"gamma_neg": 1.5, "gamma_pos": 0.5}, {"clip": 0.0, "eps": 0.0}):
        h = lk.asymmetric_loss.hessian(x[:, :-2], t[:, :-2], reduction="none", **opts)
        assert np.all(np.isfinite(h)), opts
        assert h[0, 0] == 0.0 and h[0, 6] == 0.0  # flat at |x| = 1e4


def test_multilabel_margin_zero_hessian_matches_torch_formula():
    x = np.array([[0.1, 0.2, 0.4, 0.8], [0.3, -0.2, 0.5, 0.1]])
    y = np.array([[3, 0, -1, 1], [1, -1, 0, 0]])

    def f(s):  # the pairwise hinge written out: true classes {3, 0} and {1}
        r0 = sum(torch.clamp(1 - s[0, j] + s[0, i], min=0) for j in (3, 0) for i in (1, 2))
        r1 = sum(torch.clamp(1 - s[1, 1] + s[1, i], min=0) for i in (0, 2, 3))
        return (r0 + r1) / 4

    _check(lk.multilabel_margin, f, (x, y), reduction="sum")
    x[1, 2] = np.nan
    h = lk.multilabel_margin.hessian(x, y, reduction="none")
    assert not np.any(h[0]) and np.all(np.isnan(h[1]))


# ---------------------------------------------------------------- multi-class hinge
def _ww_torch(y, m, p, w, keep):
    def f(s):
        sy = s.gather(-1, torch.tensor(y)[:, None].clamp(min=0))
        v = torch.clamp(s - sy + m, min=0) ** p
        v = v * (1 - torch.nn.functional.one_hot(torch.tensor(y).clamp(min=0), s.shape[-1]))
        wy = torch.tensor(w)[torch.tensor(y).clamp(min=0)] * torch.tensor(keep)
        return (v.sum(-1) * wy).sum() / wy.sum()
    return f


@pytest.mark.parametrize("p", [1, 2])
def test_weston_watkins_with_weights_and_ignore_matches_torch(p):
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 3))
    y = np.array([0, 2, -100, 1])
    w = np.array([0.5, 2.0, 1.5])
    keep = (y != -100).astype(float)
    _check(lk.multiclass_hinge, _ww_torch(y, 0.7, p, w, keep), (s, y), p=p, margin=0.7,
           class_weight=w, ignore_index=-100)


@pytest.mark.parametrize("variant", ["crammer_singer", "categorical"])
def test_crammer_singer_and_categorical_p2_with_ignore_match_torch(variant):
    rng = np.random.default_rng(4)
    s = rng.normal(size=(4, 3))
    y = np.array([0, 2, -1, 1])
    w = np.array([0.5, 2.0, 1.5])
    keep = torch.tensor((y != -1).astype(float))
    yc = torch.tensor(y).clamp(min=0)

    def f(x):
        onehot = torch.nn.functional.one_hot(yc, 3).double()
        if variant == "crammer_singer":
            wrong = torch.where(onehot > 0, torch.full_like(x, -torch.inf), x).max(-1).values
        else:
            wrong = ((1 - onehot) * x).max(-1).values
        v = torch.clamp(1 + wrong - (onehot * x).sum(-1), min=0) ** 2
        wy = torch.tensor(w)[yc] * keep
        return (v * wy).sum() / wy.sum()

    _check(lk.multiclass_hinge, f, (s, y), p=2, variant=variant, class_weight=w,
           ignore_index=-1)


def test_multiclass_hinge_p2_masked_class_and_nan_row():
    s = np.array([[2.0, -np.inf, 1.5], [0.0, 1.0, np.nan]])
    y = np.array([0, 1])
    h = lk.multiclass_hinge.hessian(s, y, p=2, reduction="sum")
    # row 0: only class 2 violates (1.5 - 2 + 1 > 0): 2 on it and on the true class
    np.testing.assert_array_equal(h[0], [2.0, 0.0, 2.0])
    assert np.all(np.isnan(h[1]))
    hv = lk.multiclass_hinge.hvp(s, y, vector=np.array([[1.0, 5.0, 3.0], [1.0, 1.0, 1.0]]),
                                 p=2, reduction="sum")
    np.testing.assert_array_equal(hv[0], [2 * (1.0 - 3.0), 0.0, 2 * (3.0 - 1.0)])


# ---------------------------------------------------------------- binary margin losses
def test_binary_margin_hessians_at_extremes():
    s = np.array([-1e4, -2.0, 0.5, 1e4, np.inf, -np.inf])
    t = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    np.testing.assert_allclose(lk.soft_margin.hessian(s, t, reduction="sum"), _sig_var(s),
                               rtol=1e-14, atol=0)
    # max(0, 1 - t s)^2: 2 inside the margin, 0 beyond it
    np.testing.assert_array_equal(lk.squared_hinge.hessian(s, t, reduction="sum"),
                                  [2.0, 0.0, 2.0, 2.0, 0.0, 0.0])
    for loss in (lk.hinge, lk.perceptron, lk.hinge_embedding):
        a = np.abs(s) if loss is lk.hinge_embedding else s
        h = loss.hessian(a, t, reduction="sum")
        np.testing.assert_array_equal(h, 0.0)
    h = lk.hinge.hessian(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), reduction="none")
    assert np.isnan(h[0]) and h[1] == 0.0


def test_multiclass_perceptron_and_brier_ignore():
    s = np.array([[1.0, 3.0, 0.5], [0.2, 0.1, 0.7]])
    y = np.array([0, -100])
    h = lk.multiclass_perceptron.hessian(s, y, ignore_index=-100)
    np.testing.assert_array_equal(h, 0.0)
    q = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    h = lk.brier_score.hessian(q, y, ignore_index=-100, reduction="sum")
    np.testing.assert_array_equal(h, [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
