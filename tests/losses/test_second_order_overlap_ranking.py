"""Second order of the overlap, Lovász and ranking losses beyond the catalog cases.

Options the catalog's cases do not exercise (squared denominators under a softmax,
pooled ``mode="global"`` with a softmax, channels-last layouts, class weights with the
focal power and a sigmoid, MCC under a softmax, the uniform generalised Dice, ``where=``
padding of the ranking losses, the pooled Lovász-Softmax) against
``torch.autograd.functional.hessian`` of the published formulas written out below, and
the edges: saturated and ``-inf`` logits, the log loss below its floor, empty masks, a
perfect prediction under the focal power 2, huge scores. No expected number comes from
losskit.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _torch_hessian(f, x):
    """The full Hessian of the scalar ``f`` at ``x`` (NumPy), as an (n, n) array."""
    xt = torch.tensor(x, dtype=torch.float64)
    h = torch.autograd.functional.hessian(f, xt)
    return h.reshape(x.size, x.size).numpy()


def _check(loss, arrays, f, reduction="sum", rtol=1e-8, **options):
    """losskit's diagonal and Hessian-vector product against the torch Hessian of ``f``."""
    H = _torch_hessian(f, arrays[0])
    hess = loss.hessian(*arrays, reduction=reduction, **options)
    assert hess.shape == arrays[0].shape and np.all(np.isfinite(hess))
    np.testing.assert_allclose(hess.reshape(-1), np.diag(H), rtol=rtol, atol=1e-12)
    v = np.random.default_rng(1).normal(size=arrays[0].shape)
    hv = loss.hvp(*arrays, vector=v, reduction=reduction, **options)
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), rtol=rtol, atol=1e-12)
    return H


def _onehot(labels, k, axis=1):
    return np.moveaxis(np.eye(k)[labels], -1, axis)


RNG = np.random.default_rng(0)
Z = RNG.normal(scale=1.5, size=(2, 3, 4))  # (N, C, S)
LAB = np.array([[0, 1, 2, 1], [2, 2, 0, 0]])  # class 1 absent from example 1
T = _onehot(LAB, 3)
CW = [0.5, 2.0, 1.5]


# ------------------------------------------------------------------ overlap, against torch
def test_dice_squared_softmax_class_weight_log_loss():
    tt, cw = torch.tensor(T), torch.tensor(CW, dtype=torch.float64)

    def f(z):  # per class: -log((2 I + s) / (sum p^2 + sum t^2 + s)), weighted, mean over C
        p = torch.softmax(z, 1)
        r = (2 * (p * tt).sum(-1) + 0.5) / ((p ** 2).sum(-1) + (tt ** 2).sum(-1) + 0.5)
        return (-torch.log(r.clamp_min(1e-7)) * cw).mean(1).sum()

    _check(lk.dice_loss, (Z, T), f, squared=True, smooth=0.5, from_logits="softmax",
           class_weight=CW, log_loss=True)


def test_jaccard_squared_global_softmax_channels_last():
    z, t = np.moveaxis(Z, 1, -1), np.moveaxis(T, 1, -1)  # (N, S, C)
    tt = torch.tensor(t)

    def f(z):  # one index per example over every class and position
        p = torch.softmax(z, -1)
        i = (p * tt).sum((1, 2))
        u = (p ** 2).sum((1, 2)) + (tt ** 2).sum((1, 2)) - i
        return (1 - (i + 0.25) / (u + 0.25)).sum()

    _check(lk.jaccard_loss, (z, t), f, squared=True, smooth=0.25, mode="global", axis=-1,
           from_logits="softmax")


def test_dice_global_softmax_labels_ignore():
    y = LAB.copy()
    y[0, 1] = y[1, 3] = -1
    keep = torch.tensor(y != -1, dtype=torch.float64)[:, None, :]
    tt = torch.tensor(_onehot(np.where(y < 0, 0, y), 3)) * keep

    def f(z):  # ignored positions dropped from both maps
        p = torch.softmax(z, 1) * keep
        return (1 - (2 * (p * tt).sum((1, 2)) + 1) / (p.sum((1, 2)) + tt.sum((1, 2)) + 1)).sum()

    _check(lk.dice_loss, (Z, y), f, mode="global", from_logits="softmax", ignore_index=-1)


def test_focal_tversky_sigmoid_class_weight_gamma_below_one():
    tt, cw = torch.tensor(T), torch.tensor(CW, dtype=torch.float64)
    a, b, g, s = 0.3, 0.7, 0.6, 1.0

    def f(z):
        p = torch.sigmoid(z)
        tp = (p * tt).sum(-1)
        fp, fn = (p * (1 - tt)).sum(-1), ((1 - p) * tt).sum(-1)
        return ((1 - (tp + s) / (tp + a * fp + b * fn + s)) ** g * cw).mean(1).sum()

    _check(lk.focal_tversky_loss, (Z, T), f, reduction="sum", alpha=a, beta=b, gamma=g,
           from_logits="sigmoid", class_weight=CW)


def test_mcc_softmax_per_class_mean():
    tt, e = torch.tensor(T), 1e-3

    def f(z):  # smp's soft counts per example and class, mean over both
        p = torch.softmax(z, 1)
        tp = (p * tt).sum(-1) + e
        fp, fn = (p * (1 - tt)).sum(-1) + e, ((1 - p) * tt).sum(-1) + e
        tn = ((1 - p) * (1 - tt)).sum(-1) + e
        m = (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return (1 - m).mean()

    _check(lk.mcc_loss, (Z, T), f, reduction="mean", eps=e, from_logits="softmax")


def test_generalized_dice_uniform_channels_last_softmax():
    z, t = np.moveaxis(Z, 1, -1), np.moveaxis(T, 1, -1)
    tt = torch.tensor(t)

    def f(z):  # uniform weights: the Dice index of the classes pooled
        p = torch.softmax(z, -1)
        return (1 - (2 * (p * tt).sum((1, 2)) + 0.1) / ((p + tt).sum((1, 2)) + 0.1)).sum()

    _check(lk.generalized_dice_loss, (z, t), f, smooth=0.1, weight_type="uniform", axis=-1,
           from_logits="softmax")


# ------------------------------------------------------------------ overlap, edges
def test_saturated_and_masked_logits_give_finite_exact_hessians():
    # |z| = 1e4: sigma'(z) = e^{-1e4} underflows to 0, so every second derivative is 0
    z = np.array([[1e4, -1e4, 1e4], [-1e4, -1e4, 1e4]])
    t = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    for loss in (lk.dice_loss, lk.jaccard_loss, lk.mcc_loss, lk.focal_tversky_loss):
        h = loss.hessian(z, t, axis=None, from_logits="sigmoid")
        hv = loss.hvp(z, t, vector=np.ones_like(z), axis=None, from_logits="sigmoid")
        np.testing.assert_array_equal(h, 0.0)
        np.testing.assert_array_equal(hv, 0.0)
    # a class with logit -inf has probability exactly 0: its rows of the Hessian are 0,
    # the rest is the Hessian with that class at -1e4 (the same probabilities in float64)
    zi = Z.copy()
    zi[:, 2, :2] = -np.inf
    big = np.where(np.isinf(zi), -1e4, zi)
    tt = torch.tensor(T)

    def f(z):
        p = torch.softmax(z, 1)
        tp = (p * tt).sum(-1)
        den = tp + 0.3 * (p * (1 - tt)).sum(-1) + 0.7 * ((1 - p) * tt).sum(-1) + 1.0
        return (1 - (tp + 1.0) / den).mean(1).sum()

    H = _torch_hessian(f, big)
    opts = dict(alpha=0.3, beta=0.7, from_logits="softmax", reduction="sum")
    h = lk.tversky_loss.hessian(zi, T, **opts)
    assert np.all(np.isfinite(h)) and np.all(h[:, 2, :2] == 0.0)
    np.testing.assert_allclose(h.reshape(-1), np.diag(H), rtol=1e-8, atol=1e-12)
    v = np.random.default_rng(2).normal(size=Z.shape)
    hv = lk.tversky_loss.hvp(zi, T, vector=v, **opts)
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), rtol=1e-8, atol=1e-12)


def test_log_loss_below_floor_and_empty_masks_have_zero_hessian():
    # no overlap and smooth = 0: R = 0 is below the floor 1e-7, where -log R is the
    # constant -log 1e-7 (gradient and Hessian 0)
    p = np.array([[0.0, 0.7, 0.4]])
    t = np.array([[1.0, 0.0, 0.0]])
    for loss in (lk.dice_loss, lk.jaccard_loss, lk.tversky_loss):
        opts = dict(axis=None, smooth=0.0, log_loss=True)
        assert np.isclose(float(loss(p, t, **opts)), -np.log(1e-7))
        np.testing.assert_array_equal(loss.hessian(p, t, **opts), 0.0)
        np.testing.assert_array_equal(loss.hvp(p, t, vector=np.ones_like(p), **opts), 0.0)
    # empty prediction of an empty target with smooth = 0: index 1 by convention
    zero = np.zeros((1, 4))
    for loss in (lk.dice_loss, lk.jaccard_loss, lk.generalized_dice_loss):
        np.testing.assert_array_equal(loss.hessian(zero, zero, axis=None, smooth=0.0), 0.0)


def test_focal_tversky_gamma_two_at_a_perfect_prediction():
    # T = 1 (p = t): (1 - T)^2 has Hessian 2 dT dT^T there, with dT/dp_i = (t_i - c_i) / D,
    # c_i = t_i + a (1 - t_i) - b t_i and D = TP + s = 2 + 1: beta/D on the target,
    # -alpha/D off it
    t = np.array([[1.0, 1.0, 0.0, 0.0]])
    a, b = 0.3, 0.7
    d = np.where(t[0] == 1, b, -a) / 3.0
    h = lk.focal_tversky_loss.hessian(t, t, axis=None, alpha=a, beta=b, gamma=2.0,
                                      reduction="sum")
    np.testing.assert_allclose(h[0], 2 * d * d, rtol=1e-12)
    v = np.array([[0.5, -1.0, 2.0, 0.25]])
    hv = lk.focal_tversky_loss.hvp(t, t, vector=v, axis=None, alpha=a, beta=b, gamma=2.0,
                                   reduction="sum")
    np.testing.assert_allclose(hv[0], 2 * d * (d @ v[0]), rtol=1e-12)


# ------------------------------------------------------------------ Lovász
def _lovasz_grad(gt):
    gts = gt.sum()
    jac = 1.0 - (gts - gt.cumsum(0)) / (gts + (1 - gt).cumsum(0))
    return torch.cat([jac[:1], jac[1:] - jac[:-1]]) if len(gt) > 1 else jac


def test_lovasz_softmax_pooled_logits_and_probabilities():
    y = torch.tensor(LAB)

    def f(z):  # Berman's lovasz_softmax (per_image=False, classes="present") of softmax(z)
        p = torch.softmax(z, 1).permute(0, 2, 1).reshape(-1, 3)
        labels, per = y.reshape(-1), []
        for c in range(3):
            fg = (labels == c).to(p.dtype)
            if fg.sum() == 0:
                continue
            err, perm = torch.sort((fg - p[:, c]).abs(), descending=True)
            per.append(torch.dot(err, _lovasz_grad(fg[perm])))
        return sum(per) / len(per)

    H = _check(lk.lovasz_softmax, (Z, LAB), f, from_logits="softmax")
    assert np.any(H)  # the softmax's curvature: not 0
    p = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)  # probabilities: piecewise linear
    np.testing.assert_array_equal(lk.lovasz_softmax.hessian(p, LAB), 0.0)
    np.testing.assert_array_equal(lk.lovasz_softmax.hvp(p, LAB, vector=p), 0.0)


def test_lovasz_hinge_pooled_is_zero():
    z = RNG.normal(size=(2, 5))
    y = (RNG.random(size=(2, 5)) > 0.5).astype(np.int64)
    for per_image in (True, False):
        g, h = lk.lovasz_hinge.grad_and_hessian(z, y, per_image=per_image)
        assert h.shape == z.shape and np.any(g) and not np.any(h)
        assert not np.any(lk.lovasz_hinge.hvp(z, y, vector=z, per_image=per_image))


# ------------------------------------------------------------------ ranking, with padding
S = RNG.normal(scale=1.5, size=(3, 5))
Y = np.array([[3.0, 0.0, 1.0, 2.0, 1.0], [0.0, 2.0, 2.0, 1.0, 0.0], [1.0, 0.0, 2.0, 0.0, 1.0]])
WHERE = np.array([[True, True, True, False, True], [False, True, True, True, True],
                  [False] * 5])  # the last list is all padding
ITEM_W = np.array([[1.0, 2.0, 0.5, 1.0, 1.5]] * 3)


def _lists(fn):
    """sum over lists of ``fn(scores, labels, index)`` on the valid items of each list."""
    def f(s):
        out = s.sum() * 0.0
        for k in range(s.shape[0]):
            idx = torch.nonzero(torch.tensor(WHERE[k])).flatten()
            if len(idx):
                out = out + fn(s[k][idx], torch.tensor(Y[k])[idx], k, idx)
        return out
    return f


def _ranknet(s, y, k, idx, w=None):
    i, j = torch.nonzero(y[:, None] > y[None, :], as_tuple=True)
    w = 1.0 if w is None else w[i, j]
    return (w * torch.nn.functional.softplus(-(s[i] - s[j]))).sum()


def _lambda_weights(s, y):
    n = len(s)
    order = torch.argsort(-s.detach(), stable=True)
    rank = torch.empty(n, dtype=s.dtype)
    rank[order] = torch.arange(1, n + 1, dtype=s.dtype)
    gain = 2.0 ** y - 1
    ideal = torch.sort(gain, descending=True).values
    idcg = (ideal / torch.log2(torch.arange(2, n + 2, dtype=s.dtype))).sum()
    disc = 1.0 / torch.log2(1.0 + rank)
    return ((gain[:, None] - gain[None, :]).abs() * (disc[:, None] - disc[None, :]).abs()
            / idcg)


def _softmax_ce(s, y, k, idx):
    return -(y * torch.tensor(ITEM_W[k])[idx] * torch.log_softmax(s, 0)).sum()


def _listmle(s, y, k, idx):
    ss = s[torch.argsort(-y, stable=True)]
    return (torch.logcumsumexp(ss.flip(0), 0).flip(0) - ss).sum()


@pytest.mark.parametrize("name", ["pairwise_logistic_loss", "lambdarank_loss",
                                  "ranking_softmax_loss", "listmle_loss"])
def test_ranking_with_padding(name):
    fn = {"pairwise_logistic_loss": _ranknet,
          "lambdarank_loss": lambda s, y, k, i: _ranknet(s, y, k, i, _lambda_weights(s, y)),
          "ranking_softmax_loss": _softmax_ce, "listmle_loss": _listmle}[name]
    opts = {"weights": ITEM_W} if name == "ranking_softmax_loss" else {}
    s = np.where(WHERE, S, np.nan)  # padding is never read
    loss = getattr(lk, name)
    H = _torch_hessian(_lists(fn), S)
    for reduction, scale in (("sum", 1.0), ("mean", 0.5)):  # two lists have valid items
        h = loss.hessian(s, Y, where=WHERE, reduction=reduction, **opts)
        np.testing.assert_allclose(h.reshape(-1), scale * np.diag(H), rtol=1e-10, atol=1e-14)
        v = np.random.default_rng(3).normal(size=S.shape)
        hv = loss.hvp(s, Y, vector=v, where=WHERE, reduction=reduction, **opts)
        np.testing.assert_allclose(hv.reshape(-1), scale * H @ v.reshape(-1), rtol=1e-10,
                                   atol=1e-14)
    assert not np.any(h[~WHERE])


def test_ranking_huge_scores():
    s = np.array([[1e4, 0.0, -1e4]])
    y = np.array([[2.0, 1.0, 0.0]])
    # every pair ordered with a margin of 1e4: sigma(d) sigma(-d) = 0, Hessian 0
    for loss in (lk.pairwise_logistic_loss, lk.lambdarank_loss):
        np.testing.assert_array_equal(loss.hessian(s, y), 0.0)
    # softmax (1, 0, 0): Y p (1 - p) = 0
    np.testing.assert_array_equal(lk.ranking_softmax_loss.hessian(s, y), 0.0)
    # ListMLE: the three pools {0, 1, 2}, {1, 2}, {2} have softmaxes (1, 0, 0), (1, 0),
    # (1): every q (1 - q) is 0
    np.testing.assert_array_equal(lk.listmle_loss.hessian(s, y), 0.0)
    # reversed labels: the pools' softmaxes put all mass on item 0 until it is picked
    # last, {0,1,2} -> (1, 0, 0), {0,1} -> (1, 0), {0} -> (1): still 0
    np.testing.assert_array_equal(lk.listmle_loss.hessian(s, y[:, ::-1].copy()), 0.0)
    # equal huge scores: q = 1/3 on the pool {0, 1, 2}, 1/2 on {1, 2}, 1 on {2}, so the
    # diagonal sum_k q (1 - q) is 2/9, 2/9 + 1/4, 2/9 + 1/4
    s2 = np.array([[1e4, 1e4, 1e4]])
    y2 = np.array([[2.0, 1.0, 0.0]])
    expect = [1 / 3 * 2 / 3, 1 / 3 * 2 / 3 + 1 / 4, 1 / 3 * 2 / 3 + 1 / 4]
    np.testing.assert_allclose(lk.listmle_loss.hessian(s2, y2)[0], expect, rtol=1e-12)
