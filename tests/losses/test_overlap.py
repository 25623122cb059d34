"""The overlap family: dice_loss, tversky_loss, jaccard_loss.

Beyond the generic suite (``cases_overlap.py``): degenerate masks, the identities between
the three indices, the documented recipes that reproduce MONAI's and
segmentation_models_pytorch's numbers (their semantics re-implemented here in torch from
their source, ``monai/losses/dice.py`` with ``compute_tp_fp_fn``, and smp's
``losses/dice.py`` with ``soft_dice_score``), properties, every error message, NaN,
dtypes and backends. Expected numbers come from the definitions worked by hand, torch
autograd of the published formulas, or those re-implementations; never from losskit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losskit import catalog
from losskit.losses.overlap import dice_loss, jaccard_loss, tversky_loss

torch = pytest.importorskip("torch")

SETTINGS = settings(max_examples=50, deadline=None)
LOSSES = {"dice_loss": dice_loss, "tversky_loss": tversky_loss, "jaccard_loss": jaccard_loss}
NAN = np.nan


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _onehot(labels, k, axis=1):
    return np.moveaxis(np.eye(k)[labels], -1, axis)


def _seg(seed=0, shape=(3, 4, 5, 6)):
    """Probabilities (N, C, H, W) and a one-hot target of random labels (N, H, W)."""
    rng = np.random.default_rng(seed)
    p = 0.02 + 0.96 * rng.random(size=shape)
    labels = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    return p, labels, _onehot(labels, shape[1])


# ------------------------------------------------------------------ worked by hand
def test_dice_by_hand_with_and_without_smoothing():
    # sum pt = 0.9 + 0.4 = 1.3, sum p = 0.9 + 0.4 + 0.2 = 1.5, sum t = 2
    p = np.array([[0.9, 0.4, 0.2, 0.0]])
    t = np.array([[1.0, 1.0, 0.0, 0.0]])
    for s, expected in [(0.0, 1 - 2.6 / 3.5), (1.0, 1 - 3.6 / 4.5), (0.25, 1 - 2.85 / 3.75)]:
        np.testing.assert_allclose(dice_loss(p, t, axis=None, smooth=s), expected, rtol=1e-14)
    # squared (V-Net): sum p^2 = 0.81 + 0.16 + 0.04 = 1.01, sum t^2 = 2
    np.testing.assert_allclose(dice_loss(p, t, axis=None, smooth=0.0, squared=True),
                               1 - 2.6 / 3.01, rtol=1e-14)
    # gradient (D q' - 2t) / den with D = 2.6 / 3.5, den = 3.5
    d = 2.6 / 3.5
    np.testing.assert_allclose(dice_loss.grad(p, t, axis=None, smooth=0.0),
                               [[(d - 2) / 3.5, (d - 2) / 3.5, d / 3.5, d / 3.5]], rtol=1e-14)


def test_tversky_and_jaccard_by_hand():
    p = np.array([[0.9, 0.4, 0.2, 0.0]])
    t = np.array([[1.0, 1.0, 0.0, 0.0]])
    tp, fp, fn = 1.3, 0.2, 0.7  # sum pt, sum p(1-t), sum (1-p)t
    a, b, s = 0.3, 0.7, 0.5
    np.testing.assert_allclose(
        tversky_loss(p, t, alpha=a, beta=b, smooth=s, axis=None),
        1 - (tp + s) / (tp + a * fp + b * fn + s), rtol=1e-14)
    # union = 1.5 + 2 - 1.3 = 2.2
    np.testing.assert_allclose(jaccard_loss(p, t, axis=None, smooth=s),
                               1 - (1.3 + s) / (2.2 + s), rtol=1e-14)


def test_per_class_mode_averages_the_classes_of_each_example():
    # class 0: I = 0.8, sum p = sum t = 1 -> D = 0.8; class 1: I = 0.2 -> D = 0.2
    p = np.array([[[0.8, 0.2], [0.2, 0.8]]])  # (N=1, C=2, 2 pixels)
    t = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    d0 = 2 * 0.8 / (1.0 + 1.0)  # sum p = 1, sum t = 1
    d1 = 2 * 0.2 / (1.0 + 1.0)
    np.testing.assert_allclose(dice_loss(p, t, smooth=0.0, reduction="none"),
                               [1 - (d0 + d1) / 2], rtol=1e-14)
    # global: I = 1.0, sum p = 2, sum t = 2
    np.testing.assert_allclose(dice_loss(p, t, smooth=0.0, mode="global", reduction="none"),
                               [1 - 2.0 / 4.0], rtol=1e-14)


# ------------------------------------------------------------------ degenerate masks
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("smooth", [0.0, 1e-5, 1.0])
def test_empty_prediction_of_an_empty_target_costs_nothing(name, smooth):
    z = np.zeros((2, 3, 4, 4))
    v, g = LOSSES[name].value_and_grad(z, z, smooth=smooth, reduction="none")
    np.testing.assert_array_equal(v, [0.0, 0.0])
    assert np.all(np.isfinite(g))
    if smooth == 0.0:  # the defined case: index 1, gradient 0
        np.testing.assert_array_equal(g, 0.0)
    else:  # d/dp [1 - s / (a p + s)] at p = 0 is a / s per element, a = 1 (alpha for Tversky),
        # divided by C = 3 classes in per_class mode
        a = 0.5 if name == "tversky_loss" else 1.0
        np.testing.assert_allclose(g, a / smooth / 3, rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_empty_masks_gradient_matches_torch_autograd_when_smooth_is_positive(name):
    z = np.zeros((1, 1, 3))
    zt = torch.zeros((1, 1, 3), dtype=torch.float64, requires_grad=True)
    tt = torch.zeros((1, 1, 3), dtype=torch.float64)
    s, a = 0.5, 0.25
    if name == "dice_loss":
        ref = 1 - (2 * (zt * tt).sum() + s) / (zt.sum() + tt.sum() + s)
        g = dice_loss.grad(z, z, smooth=s)
    elif name == "jaccard_loss":
        ref = 1 - ((zt * tt).sum() + s) / (zt.sum() + tt.sum() - (zt * tt).sum() + s)
        g = jaccard_loss.grad(z, z, smooth=s)
    else:
        tp = (zt * tt).sum()
        ref = 1 - (tp + s) / (tp + a * (zt * (1 - tt)).sum() + 0.7 * ((1 - zt) * tt).sum() + s)
        g = tversky_loss.grad(z, z, smooth=s, alpha=a, beta=0.7)
    ref.backward()
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-14)


@pytest.mark.parametrize("name", ["dice_loss", "jaccard_loss"])
def test_prediction_of_an_empty_target_costs_one_with_zero_gradient_at_smooth_zero(name):
    p = np.array([[0.3, 0.0, 0.9]])
    v, g = LOSSES[name].value_and_grad(p, np.zeros_like(p), smooth=0.0, axis=None)
    np.testing.assert_array_equal(v, 1.0)  # index 0 / (sum p) = 0
    np.testing.assert_array_equal(g, 0.0)  # (0 * 1 - 0) / sum p


def test_empty_prediction_of_a_target_costs_one_and_pulls_the_target_up():
    t = np.array([[1.0, 0.0, 1.0, 1.0]])
    v, g = dice_loss.value_and_grad(np.zeros_like(t), t, smooth=0.0, axis=None)
    np.testing.assert_array_equal(v, 1.0)
    np.testing.assert_allclose(g, [[-2 / 3, 0.0, -2 / 3, -2 / 3]], rtol=1e-15)  # -2t / sum t


def test_tversky_without_false_positive_weight_on_an_empty_target_is_defined():
    # alpha = 0, t = 0, s = 0: TP = FN = 0 and FP has weight 0 -> denominator 0 -> index 1
    p = np.array([[0.3, 0.5]])
    v, g = tversky_loss.value_and_grad(p, np.zeros_like(p), alpha=0.0, beta=1.0, smooth=0.0,
                                       axis=None)
    np.testing.assert_array_equal(v, 0.0)
    np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch_and_empty_spatial_axes(name):
    loss = LOSSES[name]
    v, g = loss.value_and_grad(np.zeros((0, 2, 3)), np.zeros((0, 2, 3)))
    assert v.shape == () and float(v) == 0.0 and g.shape == (0, 2, 3)
    v = loss(np.zeros((2, 3, 0)), np.zeros((2, 3, 0)), reduction="none", smooth=0.0)
    np.testing.assert_array_equal(v, [0.0, 0.0])


# ------------------------------------------------------------------ perfect and wrong
@pytest.mark.parametrize("mode", ["per_class", "global"])
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_perfect_hard_prediction_costs_zero(name, mode, smooth):
    _, _, t = _seg()
    np.testing.assert_array_equal(LOSSES[name](t, t, mode=mode, smooth=smooth,
                                               reduction="none"), 0.0)


@pytest.mark.parametrize("name", ["dice_loss", "jaccard_loss"])
def test_squared_soft_prediction_of_itself_costs_zero(name):
    # sum p^2 + sum p^2 = 2 sum p p: the squared index of p with p is 1 for any soft p
    p, _, _ = _seg(1)
    np.testing.assert_allclose(LOSSES[name](p, p, squared=True, reduction="none"), 0.0,
                               atol=1e-15)
    # without squares a soft map is not a perfect match of itself: 2 sum p^2 < 2 sum p
    assert np.all(LOSSES[name](p, p, reduction="none") > 0.01)


@pytest.mark.parametrize("name", LOSSES)
def test_completely_wrong_prediction_costs_one(name):
    _, _, t = _seg(2)
    np.testing.assert_array_equal(LOSSES[name](1.0 - t, t, smooth=0.0, reduction="none"), 1.0)
    # with smoothing the index is s / (den + s): per class, p = 1 - t covers the 5 * 6 = 30
    # pixels once, so sum p + sum t = union = 30 and TP + (FP + FN) / 2 = 15 (Tversky 1/2)
    den = 15.0 if name == "tversky_loss" else 30.0
    np.testing.assert_allclose(LOSSES[name](1.0 - t, t, smooth=1e-3, reduction="none"),
                               1 - 1e-3 / (den + 1e-3), rtol=1e-14)


# ------------------------------------------------------------------ modes and layouts
@pytest.mark.parametrize("name", LOSSES)
def test_global_equals_per_class_on_one_class_and_equals_no_class_axis(name):
    p, _, _ = _seg(3, shape=(3, 1, 5, 6))
    t = (np.random.default_rng(3).random(size=p.shape) > 0.6) * 1.0
    loss = LOSSES[name]
    a = loss.value_and_grad(p, t, mode="per_class", reduction="none")
    b = loss.value_and_grad(p, t, mode="global", reduction="none")
    c = loss.value_and_grad(p[:, 0], t[:, 0], axis=None, reduction="none")
    for x in (b, (c[0], c[1][:, None])):
        np.testing.assert_allclose(x[0], a[0], rtol=1e-14)
        np.testing.assert_allclose(x[1], a[1], rtol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_per_class_is_the_mean_of_single_class_losses(name):
    p, _, t = _seg(4)
    loss = LOSSES[name]
    singles = [loss(p[:, c], t[:, c], axis=None, reduction="none") for c in range(p.shape[1])]
    np.testing.assert_allclose(loss(p, t, reduction="none"), np.mean(singles, axis=0),
                               rtol=1e-14)


@pytest.mark.parametrize("mode", ["per_class", "global"])
@pytest.mark.parametrize("name", LOSSES)
def test_channels_last_equals_channels_first(name, mode):
    p, _, t = _seg(5)
    loss = LOSSES[name]
    v1, g1 = loss.value_and_grad(p, t, mode=mode, from_logits=False)
    v2, g2 = loss.value_and_grad(np.moveaxis(p, 1, -1), np.moveaxis(t, 1, -1), axis=-1,
                                 mode=mode)
    v3, g3 = loss.value_and_grad(np.moveaxis(p, 1, 2), np.moveaxis(t, 1, 2), axis=2, mode=mode)
    np.testing.assert_allclose(v2, v1, rtol=1e-14)
    np.testing.assert_allclose(np.moveaxis(g2, -1, 1), g1, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(v3, v1, rtol=1e-14)
    np.testing.assert_allclose(np.moveaxis(g3, 2, 1), g1, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("name", LOSSES)
def test_integer_labels_equal_their_one_hot_and_boolean_masks(name):
    p, labels, t = _seg(6)
    loss = LOSSES[name]
    ref_v, ref_g = loss.value_and_grad(p, t, reduction="none")
    for target in (labels, labels.astype(np.int32), t.astype(bool), t.astype(np.int64)):
        v, g = loss.value_and_grad(p, target, reduction="none")
        np.testing.assert_array_equal(v, ref_v)
        np.testing.assert_array_equal(g, ref_g)


@pytest.mark.parametrize("name", LOSSES)
def test_ignore_index_equals_dropping_the_positions(name):
    # ignoring a whole image row is the same as cropping it away (sums over the rest)
    p, labels, _ = _seg(7)
    masked = labels.copy()
    masked[:, 0, :] = 255
    loss = LOSSES[name]
    v, g = loss.value_and_grad(p, masked, ignore_index=255, reduction="none")
    rv, rg = loss.value_and_grad(p[:, :, 1:], labels[:, 1:], reduction="none")
    np.testing.assert_allclose(v, rv, rtol=1e-14)
    np.testing.assert_allclose(g[:, :, 1:], rg, rtol=1e-13)
    np.testing.assert_array_equal(g[:, :, 0], 0.0)


@pytest.mark.parametrize("name", LOSSES)
def test_from_logits_values_equal_the_activated_probabilities(name):
    rng = np.random.default_rng(8)
    z = rng.normal(scale=3.0, size=(3, 4, 5))
    _, _, t = _seg(8, shape=(3, 4, 5))
    soft = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    sig = 1 / (1 + np.exp(-z))
    loss = LOSSES[name]
    np.testing.assert_allclose(loss(z, t, from_logits="softmax", reduction="none"),
                               loss(soft, t, reduction="none"), rtol=1e-13)
    np.testing.assert_allclose(loss(z, t, from_logits="sigmoid", reduction="none"),
                               loss(sig, t, reduction="none"), rtol=1e-13)


def test_softmax_gradient_rows_sum_to_zero():
    # the softmax Jacobian annihilates constants: shifting the logits of a pixel changes nothing
    rng = np.random.default_rng(9)
    z = rng.normal(size=(2, 4, 6))
    _, labels, _ = _seg(9, shape=(2, 4, 6))
    for loss in LOSSES.values():
        g = loss.grad(z, labels, from_logits="softmax", reduction="sum")
        np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-15)


def test_sigmoid_saturated_logits_give_exact_values_and_zero_gradient():
    z = np.array([[1e4, -1e4, np.inf, -np.inf]])
    t = np.array([[1.0, 0.0, 1.0, 0.0]])
    v, g = dice_loss.value_and_grad(z, t, axis=None, smooth=0.0, from_logits="sigmoid")
    np.testing.assert_array_equal(v, 0.0)  # p = (1, 0, 1, 0) exactly
    np.testing.assert_array_equal(g, 0.0)  # sigma'(z) = 0 there


# ------------------------------------------------------------------ identities
def test_tversky_at_one_half_is_dice_with_twice_the_smoothing():
    p, _, t = _seg(10)
    for s in (0.0, 0.3, 1.0):
        a = tversky_loss.value_and_grad(p, t, alpha=0.5, beta=0.5, smooth=s, reduction="none")
        b = dice_loss.value_and_grad(p, t, smooth=2 * s, reduction="none")
        np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-12)


def test_tversky_at_one_is_jaccard():
    p, _, t = _seg(11)
    a = tversky_loss.value_and_grad(p, t, alpha=1.0, beta=1.0, smooth=0.7, mode="global")
    b = jaccard_loss.value_and_grad(p, t, smooth=0.7, mode="global")
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)


def test_jaccard_is_d_over_two_minus_d_at_smooth_zero_value_and_gradient():
    p, _, t = _seg(12, shape=(3, 1, 5, 6))
    t = np.random.default_rng(12).random(size=p.shape)  # soft targets too
    ld, gd = dice_loss.value_and_grad(p, t, smooth=0.0, reduction="none")
    lj, gj = jaccard_loss.value_and_grad(p, t, smooth=0.0, reduction="none")
    d = 1 - ld
    np.testing.assert_allclose(1 - lj, d / (2 - d), rtol=1e-13)
    # chain rule: dJ/dD = 2 / (2 - D)^2, per example
    np.testing.assert_allclose(gj, (2 / (2 - d) ** 2)[:, None, None, None] * gd, rtol=1e-12)


# ------------------------------------------------------------------ other libraries
def _monai_dice(inp, tgt, *, smooth_nr, smooth_dr, squared_pred=False, jaccard=False,
                batch=False, include_background=True):
    """MONAI DiceLoss.forward (reduction="mean") for probabilities, from its source."""
    if not include_background:
        inp, tgt = inp[:, 1:], tgt[:, 1:]
    axes = list(range(2, inp.ndim))
    if batch:
        axes = [0] + axes
    tp = (inp * tgt).sum(axes)
    o = 2 if squared_pred else 1
    fp = (inp ** o).sum(axes) - tp
    fn = (tgt ** o).sum(axes) - tp
    if not jaccard:
        fp, fn = 0.5 * fp, 0.5 * fn
    f = 1 - (2 * tp + smooth_nr) / (2 * (tp + fp + fn) + smooth_dr)
    return f.mean()


def _monai_tversky(inp, tgt, *, alpha, beta, smooth_nr, smooth_dr):
    axes = list(range(2, inp.ndim))
    tp = (inp * tgt).sum(axes)
    fp = alpha * (inp * (1 - tgt)).sum(axes)
    fn = beta * ((1 - inp) * tgt).sum(axes)
    return (1 - (tp + smooth_nr) / (tp + fp + fn + smooth_dr)).mean()


def _smp(kind, y_pred, y_true, *, smooth=0.0, eps=1e-7, alpha=0.5, beta=0.5):
    """smp Dice/Jaccard/TverskyLoss in multilabel mode on probabilities, from its source."""
    bs, k = y_pred.shape[:2]
    y_pred = y_pred.reshape(bs, k, -1)
    y_true = y_true.reshape(bs, k, -1)
    dims = (0, 2)
    inter = (y_pred * y_true).sum(dims)
    card = (y_pred + y_true).sum(dims)
    if kind == "dice":
        score = (2 * inter + smooth) / (card + smooth).clamp_min(eps)
    elif kind == "jaccard":
        score = (inter + smooth) / (card - inter + smooth).clamp_min(eps)
    else:
        fp = (y_pred * (1 - y_true)).sum(dims)
        fn = ((1 - y_pred) * y_true).sum(dims)
        score = (inter + smooth) / (inter + alpha * fp + beta * fn + smooth).clamp_min(eps)
    loss = (1 - score) * (y_true.sum(dims) > 0).to(score.dtype)
    return loss.mean()


def _tt(x):
    return torch.as_tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("s", [1e-5, 1.0])
def test_reproduces_monai_dice_loss(s):
    p, labels, t = _seg(13)
    pt, tt = _tt(p), _tt(t)
    np.testing.assert_allclose(dice_loss(p, t, smooth=s),
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s), rtol=1e-13)
    np.testing.assert_allclose(dice_loss(p, labels, smooth=s),  # to_onehot_y
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s), rtol=1e-13)
    np.testing.assert_allclose(dice_loss(p, t, smooth=s, squared=True),
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s,
                                           squared_pred=True), rtol=1e-13)
    np.testing.assert_allclose(jaccard_loss(p, t, smooth=s / 2),
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s, jaccard=True),
                               rtol=1e-13)
    np.testing.assert_allclose(dice_loss(p[:, 1:], t[:, 1:], smooth=s),
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s,
                                           include_background=False), rtol=1e-13)
    folded = (np.moveaxis(p, 0, 1)[None], np.moveaxis(t, 0, 1)[None])
    np.testing.assert_allclose(dice_loss(*folded, smooth=s, reduction="sum"),
                               _monai_dice(pt, tt, smooth_nr=s, smooth_dr=s, batch=True),
                               rtol=1e-13)
    np.testing.assert_allclose(
        tversky_loss(p, t, alpha=0.3, beta=0.7, smooth=s),
        _monai_tversky(pt, tt, alpha=0.3, beta=0.7, smooth_nr=s, smooth_dr=s), rtol=1e-13)


@pytest.mark.parametrize("kind", ["dice", "jaccard", "tversky"])
def test_reproduces_smp_losses_by_folding_the_batch(kind):
    p, _, t = _seg(14)  # every class occurs in the batch's target
    assert np.all(t.sum(axis=(0, 2, 3)) > 0)
    loss, opts = {"dice": (dice_loss, {}), "jaccard": (jaccard_loss, {}),
                  "tversky": (tversky_loss, {"alpha": 0.2, "beta": 0.8})}[kind]
    folded = (np.moveaxis(p, 0, 1)[None], np.moveaxis(t, 0, 1)[None])
    for s in (0.0, 1.0):
        np.testing.assert_allclose(loss(*folded, smooth=s, reduction="sum", **opts),
                                   _smp(kind, _tt(p), _tt(t), smooth=s, **opts), rtol=1e-13)


def test_smp_differs_only_by_dropping_classes_absent_from_the_target():
    p, labels, _ = _seg(15)
    labels = np.where(labels == 2, 0, labels)  # class 2 absent from the whole batch
    t = _onehot(labels, 4)
    folded = (np.moveaxis(p, 0, 1)[None], np.moveaxis(t, 0, 1)[None])
    per_class = dice_loss(*folded, smooth=0.0, mode="per_class", reduction="none")
    smp = float(_smp("dice", _tt(p), _tt(t)))
    # smp zeroes class 2's loss (which is 1 here: empty target, positive prediction)
    np.testing.assert_allclose(per_class[0] - 1.0 / 4, smp, rtol=1e-13)


# ------------------------------------------------------------------ properties
@st.composite
def maps(draw, max_n=3, max_c=3, max_s=5):
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    s = draw(st.integers(1, max_s))
    unit = st.floats(0.0, 1.0, allow_subnormal=False)
    p = draw(arrays(np.float64, (n, c, s), elements=unit))
    t = draw(arrays(np.float64, (n, c, s), elements=unit))
    return p, t


OPTS = st.fixed_dictionaries({
    "smooth": st.sampled_from([0.0, 1e-6, 0.5, 1.0]),
    "mode": st.sampled_from(["per_class", "global"]),
})


@SETTINGS
@given(maps(), OPTS, st.sampled_from(list(LOSSES)), st.booleans(),
       st.floats(0.0, 3.0, allow_subnormal=False), st.floats(0.0, 3.0, allow_subnormal=False))
def test_loss_lies_in_the_unit_interval(pt, opts, name, squared, alpha, beta):
    p, t = pt
    if name == "tversky_loss":
        opts = {**opts, "alpha": alpha, "beta": beta}
    elif squared:
        opts = {**opts, "squared": True}
    v, g = LOSSES[name].value_and_grad(p, t, reduction="none", **opts)
    assert v.shape == (p.shape[0],)
    assert np.all(v >= -1e-14) and np.all(v <= 1 + 1e-14)
    assert np.all(np.isfinite(g))


@SETTINGS
@given(maps(), OPTS, st.sampled_from(list(LOSSES)), st.floats(0.0, 3.0, allow_subnormal=False))
def test_symmetric_in_prediction_and_target(pt, opts, name, alpha):
    p, t = pt
    if name == "tversky_loss":
        opts = {**opts, "alpha": alpha, "beta": alpha}
    loss = LOSSES[name]
    np.testing.assert_allclose(loss(p, t, reduction="none", **opts),
                               loss(t, p, reduction="none", **opts), rtol=1e-12, atol=1e-15)


@SETTINGS
@given(maps(), st.floats(0.1, 2.0))
def test_more_false_negative_weight_never_lowers_the_tversky_loss(pt, beta):
    p, t = pt
    low = tversky_loss(p, t, alpha=0.5, beta=beta, reduction="none")
    high = tversky_loss(p, t, alpha=0.5, beta=beta + 0.5, reduction="none")
    assert np.all(high >= low - 1e-14)


@SETTINGS
@given(maps(max_n=2, max_c=2, max_s=3), st.sampled_from(list(LOSSES)),
       st.sampled_from([False, "sigmoid", "softmax"]))
def test_gradient_matches_torch_autograd_on_random_maps(pt, name, act):
    p, t = pt
    x = p if not act else 6.0 * (p - 0.5)  # logits in [-3, 3]
    s = 0.5
    xt = _tt(x).requires_grad_(True)
    tt = _tt(t)
    q = xt if not act else (torch.sigmoid(xt) if act == "sigmoid" else torch.softmax(xt, 1))
    tp = (q * tt).sum(-1)
    if name == "dice_loss":
        idx = (2 * tp + s) / (q.sum(-1) + tt.sum(-1) + s)
        opts = {}
    elif name == "jaccard_loss":
        idx = (tp + s) / (q.sum(-1) + tt.sum(-1) - tp + s)
        opts = {}
    else:
        idx = (tp + s) / (tp + 0.4 * (q * (1 - tt)).sum(-1) + 0.9 * ((1 - q) * tt).sum(-1) + s)
        opts = {"alpha": 0.4, "beta": 0.9}
    (1 - idx).mean(1).sum().backward()
    g = LOSSES[name].grad(x, t, smooth=s, from_logits=act, reduction="sum", **opts)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ NaN and dtypes
@pytest.mark.parametrize("name", LOSSES)
def test_nan_propagates_to_its_example_only(name):
    p, _, t = _seg(16)
    p = p.copy()
    p[1, 2, 3, 4] = NAN
    v, g = LOSSES[name].value_and_grad(p, t, reduction="none")
    assert np.isnan(v[1]) and np.all(np.isfinite(v[[0, 2]]))
    assert np.all(np.isnan(g[1, 2]))  # the NaN class's index is NaN
    assert np.all(np.isfinite(g[[0, 2]])) and np.all(np.isfinite(g[1, [0, 1, 3]]))
    assert np.isnan(LOSSES[name](p, t))
    tn = t.copy()
    tn[0, 0, 0, 0] = NAN
    assert np.isnan(LOSSES[name](p[[0]], tn[[0]]))


def test_nan_at_an_ignored_position_takes_no_part():
    p, labels, _ = _seg(17)
    p = p.copy()
    labels = labels.copy()
    p[0, 1, 2, 3] = NAN
    labels[0, 2, 3] = -100
    v, g = dice_loss.value_and_grad(p, labels, ignore_index=-100, reduction="none")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[0, :, 2, 3], 0.0)


@pytest.mark.parametrize("name", LOSSES)
def test_float32_in_float32_out_and_float16_is_accumulated_in_float32(name):
    p, _, t = _seg(18)
    loss = LOSSES[name]
    ref_v, ref_g = loss.value_and_grad(p, t)
    v32, g32 = loss.value_and_grad(p.astype(np.float32), t.astype(np.float32))
    assert v32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(v32, ref_v, rtol=1e-5)
    np.testing.assert_allclose(g32, ref_g, rtol=1e-4, atol=1e-7)
    p16 = p.astype(np.float16)
    v16, g16 = loss.value_and_grad(p16, t)
    assert v16.dtype == np.float16 and g16.dtype == np.float16
    rv, rg = loss.value_and_grad(p16.astype(np.float64), t)  # same rounded inputs
    np.testing.assert_allclose(v16.astype(float), rv, rtol=2e-3)
    np.testing.assert_allclose(g16.astype(float), rg, rtol=2e-3, atol=1e-5)


# ------------------------------------------------------------------ backends
@pytest.mark.parametrize("name,opts", [
    ("dice_loss", {"ignore_index": 255, "from_logits": "softmax"}),
    ("tversky_loss", {"from_logits": "sigmoid", "mode": "global", "alpha": 0.2, "beta": 0.9}),
    ("jaccard_loss", {"axis": -1, "from_logits": "softmax", "squared": True}),
])
def test_labels_ignore_and_logits_on_every_backend(backend, name, opts):
    if backend.name == "jax":  # eager JAX compiles every new op shape (seconds each here);
        pytest.skip("JAX runs these paths under jit in the next test")
    rng = np.random.default_rng(19)
    z = rng.normal(size=(3, 4, 5, 2))
    axis = opts.get("axis", 1)
    lshape = (3, 5, 2) if axis == 1 else (3, 4, 5)
    labels = rng.integers(0, z.shape[axis], size=lshape)
    if "ignore_index" in opts:
        labels.flat[::3] = 255
    loss = LOSSES[name]
    ref_v, ref_g = loss.value_and_grad(z, labels, reduction="none", **opts)
    v, g = loss.value_and_grad(backend.asarray(z), backend.asarray(labels), reduction="none",
                               **opts)
    assert backend.is_native(v) and backend.is_native(g)
    np.testing.assert_allclose(backend.to_numpy(v), ref_v, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(g), ref_g, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name,opts", [
    ("dice_loss", {"ignore_index": -1, "from_logits": "softmax"}),
    ("tversky_loss", {"ignore_index": -1, "from_logits": "sigmoid", "mode": "global"}),
    ("jaccard_loss", {"axis": -1, "from_logits": "softmax", "squared": True}),
])
def test_jax_jit_through_labels_ignore_index_and_logits(name, opts):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    rng = np.random.default_rng(20)
    z = rng.normal(size=(3, 4, 5, 2))
    axis = opts.get("axis", 1)
    labels = rng.integers(0, z.shape[axis], size=(3, 5, 2) if axis == 1 else (3, 4, 5))
    if "ignore_index" in opts:
        labels[:, 0] = -1
    loss = LOSSES[name]
    ref_v, ref_g = loss.value_and_grad(z, labels, **opts)
    v, g = jax.jit(lambda a, b: loss.value_and_grad(a, b, **opts))(jnp.asarray(z),
                                                                   jnp.asarray(labels))
    np.testing.assert_allclose(np.asarray(v), ref_v, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-12, atol=1e-16)


# ------------------------------------------------------------------ errors
def _valid():
    p, labels, t = _seg(21, shape=(2, 3, 4))
    return p, labels, t


def _entry_points(loss):
    return [loss, loss.grad, loss.value_and_grad]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad,side", [(1.5, r"above 1 \(max 1\.5\)"),
                                      (-0.25, r"below 0 \(min -0\.25\)")])
def test_prediction_outside_unit_interval_points_to_from_logits(name, bad, side):
    p, _, t = _valid()
    p = p.copy()
    p[0, 1, 2] = bad
    for fn in _entry_points(LOSSES[name]):
        with pytest.raises(ValueError, match=rf"^`prediction` must lie in \[0, 1\]; it has "
                           rf"values {side}: {name} expects probabilities; for logits pass "
                           r"from_logits='sigmoid' or 'softmax'$"):
            fn(p, t)
    LOSSES[name](p, t, from_logits="sigmoid")  # logits may be anything


@pytest.mark.parametrize("name", LOSSES)
def test_target_outside_unit_interval_is_a_value_error(name):
    p, _, t = _valid()
    t = t.copy()
    t[1, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values above "
                       r"1 \(max 2\): targets are masks or probabilities in \[0, 1\]$"):
        LOSSES[name](p, t)
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values below "
                       r"0 \(min -1\)"):
        LOSSES[name](p, -np.minimum(t, 1.0))


@pytest.mark.parametrize("name", LOSSES)
def test_shape_mismatch_names_both_shapes(name):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(2, 3, 4\); got \(2, 3, 5\)$"):
        LOSSES[name](p, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(2, 3, 4\); got \(2, 3, 4, 1\); squeeze the last axis of `target`"):
        LOSSES[name](p, t[..., None])


@pytest.mark.parametrize("name", LOSSES)
def test_integer_labels_of_the_wrong_shape_or_value(name):
    p, labels, _ = _valid()
    with pytest.raises(ValueError, match=rf"^integer `target` of {name} must be class labels "
                       r"of shape \(2, 4\) \(`prediction` \(2, 3, 4\) without its class axis "
                       r"1\) or a 0/1 mask of the prediction's shape; got \(2, 3\)$"):
        LOSSES[name](p, labels[:, :3])
    bad = labels.copy()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 2\] "
                       r"\(num_classes=3 from the class axis\); got 3$"):
        LOSSES[name](p, bad)
    bad[0, 0] = -100
    with pytest.raises(ValueError, match=r"; got -100; to skip targets such as padding, pass "
                       r"ignore_index=-100$"):
        LOSSES[name](p, bad)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("mode", ["mean", "batch", "perclass", None])
def test_unknown_mode_lists_the_modes(name, mode):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=rf"^`mode` must be one of 'per_class', 'global'; "
                       rf"got {re.escape(repr(mode))}$"):
        LOSSES[name](p, t, mode=mode)


@pytest.mark.parametrize("option", ["alpha", "beta", "smooth"])
@pytest.mark.parametrize("value,match", [
    (-0.5, r"must lie in \[0, inf\); got -0\.5$"),
    (float("inf"), r"must lie in \[0, inf\); got inf$"),
    (float("nan"), r"must lie in \[0, inf\); got nan$"),
])
def test_negative_or_infinite_weights_and_smoothing_are_value_errors(option, value, match):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=rf"^`{option}` {match}"):
        tversky_loss(p, t, **{option: value})
    if option == "smooth":
        for loss in (dice_loss, jaccard_loss):
            with pytest.raises(ValueError, match=rf"^`smooth` {match}"):
                loss(p, t, smooth=value)


def test_non_numeric_options_are_type_errors():
    p, _, t = _valid()
    with pytest.raises(TypeError, match=r"^`alpha` must be a real number; got str$"):
        tversky_loss(p, t, alpha="0.3")
    with pytest.raises(TypeError, match=r"^`squared` of dice_loss must be True or False; "
                       r"got 'yes'$"):
        dice_loss(p, t, squared="yes")
    with pytest.raises(TypeError, match=r"^`squared` of jaccard_loss must be True or False; "
                       r"got 1$"):
        jaccard_loss(p, t, squared=1)
    with pytest.raises(TypeError, match=r"^`axis` of dice_loss must be an int or None; "
                       r"got 1\.0$"):
        dice_loss(p, t, axis=1.0)
    with pytest.raises(TypeError, match=r"^`ignore_index` of dice_loss must be an int or None; got 1\.5$"):
        dice_loss(p, np.zeros((2, 4), dtype=int), ignore_index=1.5)


@pytest.mark.parametrize("name", LOSSES)
def test_from_logits_must_name_the_activation(name):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=rf"^`from_logits` of {name} must name the activation: "
                       r"'softmax' \(mutually exclusive classes along `axis`\) or 'sigmoid' "
                       r"\(binary or multi-label\); got True$"):
        LOSSES[name](p, t, from_logits=True)
    with pytest.raises(ValueError, match=rf"^`from_logits` of {name} must be False, 'sigmoid' "
                       r"or 'softmax'; got 'tanh'$"):
        LOSSES[name].grad(p, t, from_logits="tanh")
    with pytest.raises(ValueError, match=rf"^from_logits='softmax' of {name} needs a class "
                       r"axis; got axis=None \(use from_logits='sigmoid' for binary maps\)$"):
        LOSSES[name](p, t, axis=None, from_logits="softmax")


@pytest.mark.parametrize("name", LOSSES)
def test_bad_axes_and_ranks(name):
    p, _, t = _valid()
    loss = LOSSES[name]
    for axis in (0, -3):
        with pytest.raises(ValueError, match=rf"^`axis` of {name} names the class axis and "
                           rf"cannot be the batch axis 0; got {axis}\. Use axis=1 for "
                           r"\(N, C, \*spatial\), axis=-1 for \(N, \*spatial, C\), or "
                           r"axis=None for a prediction without a class axis$"):
            loss(p, t, axis=axis)
    with pytest.raises(ValueError, match=rf"^`axis` of {name} must lie in \[-3, 2\] for a 3-d "
                       r"`prediction`; got 3$"):
        loss(p, t, axis=3)
    with pytest.raises(ValueError, match=rf"^`axis`=1 of {name} needs a class axis beside the "
                       r"batch axis 0, but `prediction` has shape \(4,\); pass axis=None for "
                       r"a prediction without a class axis$"):
        loss(np.full(4, 0.5), np.ones(4))
    with pytest.raises(ValueError, match=rf"^`prediction` of {name} needs a batch axis "
                       r"\(axis 0\): shape \(N, C, \*spatial\), \(N, \*spatial, C\) or "
                       r"\(N, \*spatial\); got a 0-d array$"):
        loss(np.array(0.5), np.array(1.0), axis=None)
    assert loss(np.full(4, 0.5), np.ones(4), axis=None, reduction="none").shape == (4,)


@pytest.mark.parametrize("name", LOSSES)
def test_ignore_index_with_masks_is_a_value_error(name):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=rf"^`ignore_index` of {name} applies to integer class "
                       r"labels only; `target` holds masks of the prediction's shape"):
        LOSSES[name](p, t, ignore_index=255)


def test_integer_prediction_is_a_type_error():
    with pytest.raises(TypeError, match=r"^`prediction` of `dice_loss` must have a floating "
                       r"dtype .*; got int64"):
        dice_loss(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)))


@pytest.mark.parametrize("name", LOSSES)
def test_unknown_keyword_lists_the_valid_options(name):
    p, _, t = _valid()
    options = {"dice_loss": "smooth, squared, mode, axis, from_logits, ignore_index",
               "tversky_loss": "alpha, beta, smooth, mode, axis, from_logits, ignore_index",
               "jaccard_loss": "smooth, squared, mode, axis, from_logits, ignore_index"}[name]
    options += ", class_weight, log_loss"
    msg = (rf"^{name}\(\) got unexpected keyword argument\(s\) 'weight'; valid options: "
           rf"reduction, sample_weight, {options}$")
    for fn in _entry_points(LOSSES[name]):
        with pytest.raises(TypeError, match=msg):
            fn(p, t, weight=1.0)


@pytest.mark.parametrize("name", LOSSES)
def test_sample_weight_is_per_example(name):
    p, _, t = _valid()
    with pytest.raises(ValueError, match=rf"^`sample_weight` of {name} must be a number or "
                       r"have the shape of the unreduced loss \(2,\); got \(2, 3\)$"):
        LOSSES[name](p, t, sample_weight=np.ones((2, 3)))
    v = LOSSES[name](p, t, reduction="none")
    np.testing.assert_allclose(LOSSES[name](p, t, sample_weight=np.array([3.0, 1.0])),
                               (3 * v[0] + v[1]) / 4, rtol=1e-14)


# ------------------------------------------------------------------ metadata
def test_catalog_lists_the_overlap_family():
    assert [loss.name for loss in catalog("overlap")] == [
        "dice_loss", "focal_tversky_loss", "generalized_dice_loss", "jaccard_loss",
        "lovasz_hinge", "lovasz_softmax", "mcc_loss", "tversky_loss"]
    for loss in LOSSES.values():
        assert loss.family == "overlap" and loss.prediction == "probabilities"
        assert loss.formula.startswith(r"\ell = 1 - ") and "partial" in loss.gradient_formula
        assert len(loss.when_to_use) > 80
        assert any("arXiv" in r or "doi" in r for r in loss.references)
        info = loss.info()
        assert info["options"]["smooth"] == 1.0 and info["options"]["axis"] == 1
        assert info["options"]["mode"] == "per_class" and info["options"]["from_logits"] is False
    assert tversky_loss.info()["options"]["alpha"] == tversky_loss.info()["options"]["beta"] == 0.5
    assert "arXiv:1606.04797" in dice_loss.references[0]
    assert "arXiv:1706.05721" in tversky_loss.references[0]


def test_configured_copy_keeps_the_options():
    p, _, t = _valid()
    focal = type(tversky_loss)(alpha=0.3, beta=0.7, reduction="sum")
    np.testing.assert_allclose(focal(p, t),
                               tversky_loss(p, t, alpha=0.3, beta=0.7, reduction="sum"))


# ------------------------------------------------------------------ catalog, part 2
# class_weight and log_loss, focal_tversky_loss, generalized_dice_loss, mcc_loss. References:
# MONAI itself (DiceLoss(weight=), GeneralizedDiceLoss), smp's formulas written out from
# segmentation_models_pytorch/losses/dice.py (log_loss), tversky.py (gamma) and mcc.py,
# and scikit-learn's matthews_corrcoef.
from losskit.losses.overlap import (focal_tversky_loss, generalized_dice_loss,  # noqa: E402
                                    mcc_loss)


def test_class_weight_reproduces_monai_dice_loss_weight():
    monai = pytest.importorskip("monai.losses")
    p, labels, t = _seg(21)
    w = np.array([0.5, 2.0, 0.0, 1.5])
    ref = monai.DiceLoss(weight=_tt(w), smooth_nr=1e-5, smooth_dr=1e-5)(_tt(p), _tt(t))
    np.testing.assert_allclose(dice_loss(p, labels, class_weight=w, smooth=1e-5), ref,
                               rtol=1e-13)
    # uniform weights c: c times the unweighted loss (the fused kernel's answer)
    for name, loss in LOSSES.items():
        np.testing.assert_allclose(loss(p, t, class_weight=np.full(4, 3.0)), 3 * loss(p, t),
                                   rtol=1e-13, err_msg=name)


@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
def test_generalized_dice_reproduces_monai(w_type):
    monai = pytest.importorskip("monai.losses")
    p, labels, t = _seg(22)
    labels[1][labels[1] == 3] = 0  # class 3 absent from example 1: MONAI's inf weight
    t = _onehot(labels, 4)
    for s in (1e-5, 0.5):
        ref = monai.GeneralizedDiceLoss(w_type=w_type, smooth_nr=s, smooth_dr=s)(_tt(p),
                                                                                 _tt(t))
        # MONAI computes the weights in float32 (ground_o.float()): rtol 1e-7
        np.testing.assert_allclose(generalized_dice_loss(p, t, smooth=s, weight_type=w_type),
                                   ref, rtol=1e-7)
        np.testing.assert_allclose(generalized_dice_loss(p, labels, smooth=s,
                                                         weight_type=w_type), ref, rtol=1e-7)


def test_generalized_dice_gradient_and_an_example_without_any_class():
    p, _, t = _seg(23, shape=(2, 3, 4, 4))
    t[1] = 0.0  # no class in example 1: every weight 0, loss 0 and no gradient
    pt = torch.tensor(p, requires_grad=True)
    vol = _tt(t).sum((2, 3))
    w = torch.where(vol > 0, 1 / vol.clamp_min(1) ** 2, torch.zeros_like(vol))
    w = torch.where(vol > 0, w, w.max(1, keepdim=True).values)
    num = 2 * (w * (pt * _tt(t)).sum((2, 3))).sum(1) + 0.1
    den = (w * (pt + _tt(t)).sum((2, 3))).sum(1) + 0.1
    (1 - num / den).sum().backward()
    v, g = generalized_dice_loss.value_and_grad(p, t, smooth=0.1, reduction="sum")
    np.testing.assert_allclose(g, pt.grad.numpy(), rtol=1e-12, atol=1e-17)
    assert generalized_dice_loss(p, t, smooth=0.1, reduction="none")[1] == 0.0
    assert not np.any(g[1])


def _smp_index(p, t, kind, smooth, alpha=0.5, beta=0.5):
    dims = (0, 2)
    inter = (p * t).sum(dims)
    if kind == "dice":
        return (2 * inter + smooth) / ((p + t).sum(dims) + smooth).clamp_min(1e-7)
    fp, fn = (p * (1 - t)).sum(dims), ((1 - p) * t).sum(dims)
    return (inter + smooth) / (inter + alpha * fp + beta * fn + smooth).clamp_min(1e-7)


def test_log_loss_and_gamma_reproduce_smp_formulas():
    p, _, t = _seg(24)  # every class present in the batch
    bs, k = p.shape[:2]
    pt, tt = _tt(p).reshape(bs, k, -1), _tt(t).reshape(bs, k, -1)
    folded = (np.moveaxis(p, 0, 1)[None], np.moveaxis(t, 0, 1)[None])
    # dice.py: loss = -log(score.clamp_min(eps)), mean over classes
    ref = (-torch.log(_smp_index(pt, tt, "dice", 0.5).clamp_min(1e-7))).mean()
    np.testing.assert_allclose(dice_loss(*folded, smooth=0.5, log_loss=True,
                                         reduction="sum"), ref, rtol=1e-13)
    # tversky.py: (mean over classes of 1 - T) ** gamma; with one class (binary mode) that
    # is focal_tversky_loss of the batch as one index
    one = (pt[:, :1], tt[:, :1])
    ref = ((1 - _smp_index(*one, "tversky", 1.0, 0.3, 0.7)).mean()) ** 1.7
    np.testing.assert_allclose(
        focal_tversky_loss(p[:, 0].reshape(1, -1), t[:, 0].reshape(1, -1), axis=None,
                           alpha=0.3, beta=0.7, gamma=1.7, reduction="sum"), ref, rtol=1e-13)


def test_log_loss_floor_and_focal_edge_cases():
    p = np.array([[0.0, 1.0]]); t = np.array([[1.0, 0.0]])  # no overlap: D = 0 at s = 0
    v, g = dice_loss.value_and_grad(p, t, axis=None, smooth=0.0, log_loss=True)
    np.testing.assert_allclose(v, -np.log(1e-7), rtol=1e-15)
    assert not np.any(g)
    # gamma = 1 is tversky_loss; a perfect prediction costs 0 with a zero gradient
    q, _, m = _seg(25, shape=(2, 3, 4))
    for a, b in zip(focal_tversky_loss.value_and_grad(q, m, alpha=0.2, beta=0.8, gamma=1.0),
                    tversky_loss.value_and_grad(q, m, alpha=0.2, beta=0.8)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    v, g = focal_tversky_loss.value_and_grad(m, m, smooth=0.0)
    assert float(v) == 0.0 and not np.any(g)


def test_mcc_equals_scikit_learn_on_hard_maps_and_smp_pooled():
    from sklearn.metrics import matthews_corrcoef

    rng = np.random.default_rng(26)
    y = (rng.random((1, 40)) > 0.6) * 1.0
    h = np.where(rng.random((1, 40)) < 0.7, y, 1 - y)
    np.testing.assert_allclose(1 - mcc_loss(h, y, eps=0.0, axis=None),
                               matthews_corrcoef(y[0], h[0]), rtol=1e-13)
    # a constant target, eps = 0: scikit-learn's MCC is 0 there
    assert matthews_corrcoef(np.zeros(40), h[0]) == 0.0
    v, g = mcc_loss.value_and_grad(h, np.zeros((1, 40)), eps=0.0, axis=None)
    assert float(v) == 1.0 and not np.any(g)
    # smp mcc.py: one index of the whole batch
    p = 0.05 + 0.9 * rng.random((3, 1, 4, 5))
    t = (rng.random((3, 1, 4, 5)) > 0.5) * 1.0
    pp, tt = _tt(p), _tt(t)
    tp, tn = (pp * tt).sum() + 1e-5, ((1 - pp) * (1 - tt)).sum() + 1e-5
    fp, fn = (pp * (1 - tt)).sum() + 1e-5, ((1 - pp) * tt).sum() + 1e-5
    ref = 1 - (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    np.testing.assert_allclose(mcc_loss(p.reshape(1, -1), t.reshape(1, -1), axis=None,
                                        reduction="sum"), ref, rtol=1e-13)


def test_new_options_reject_bad_values():
    p, labels, t = _seg(27)
    with pytest.raises(ValueError, match=r"`class_weight` of dice_loss must have one weight "
                                         r"per class: shape \(4,\)"):
        dice_loss(p, t, class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="needs mode='per_class' and a class axis"):
        jaccard_loss(p, t, class_weight=np.ones(4), mode="global")
    with pytest.raises(ValueError, match="`class_weight` must lie in"):
        tversky_loss(p, t, class_weight=-np.ones(4))
    with pytest.raises(TypeError, match="`log_loss` of dice_loss must be True or False"):
        dice_loss(p, t, log_loss="yes")
    with pytest.raises(ValueError, match=r"`gamma` must lie in \(0, inf\)"):
        focal_tversky_loss(p, t, gamma=0.0)
    with pytest.raises(ValueError, match="`weight_type` must be one of"):
        generalized_dice_loss(p, t, weight_type="cube")
    with pytest.raises(ValueError, match=r"`eps` must lie in \[0, inf\)"):
        mcc_loss(p, t, eps=-1.0)
