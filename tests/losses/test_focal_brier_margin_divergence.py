"""Edges, errors, properties and metadata of the classification catalog: the focal losses,
Poly-1, the Brier score, the squared hinge and the divergence losses (KL, distillation KL,
Jensen-Shannon).

Values and gradients against the references live in ``cases_classification.py`` (run by
``test_losses.py``/``test_backends.py``). Expected numbers here come from the definitions
worked by hand (comments give the derivation), from mpmath at 50 digits, or from
torch / scipy / scikit-learn; never from losskit. Comparisons between two losskit losses
are *identities* the documentation states (gamma = 0 is cross-entropy, ...), each also
checked against an external reference.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import loss_cases  # noqa: F401  (import first: it loads cases_classification itself)
from cases_classification import torchvision_sigmoid_focal
import losskit as lk
from losskit.losses.divergence import js_divergence, kl_divergence, softmax_kl_divergence
from losskit.losses.focal import poly_loss, sigmoid_focal_loss, softmax_focal_loss
from losskit.losses.margin import squared_hinge
from losskit.losses.brier_score import brier_score

torch = pytest.importorskip("torch")
F = torch.nn.functional
mpmath = pytest.importorskip("mpmath")

INF, NAN = np.inf, np.nan
LN2 = math.log(2.0)
SETTINGS = settings(max_examples=50, deadline=None)

LOSSES = {
    "sigmoid_focal_loss": (sigmoid_focal_loss, "classification", "logits"),
    "softmax_focal_loss": (softmax_focal_loss, "classification", "logits"),
    "poly_loss": (poly_loss, "classification", "logits"),
    "brier_score": (brier_score, "classification", "probabilities"),
    "squared_hinge": (squared_hinge, "margin", "scores"),
    "kl_divergence": (kl_divergence, "divergence",
                      "log-probabilities (probabilities with log_prediction=False)"),
    "softmax_kl_divergence": (softmax_kl_divergence, "divergence", "logits"),
    "js_divergence": (js_divergence, "divergence", "probabilities"),
}


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _t(a, grad=False, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype, requires_grad=grad)


# =============================================================================== metadata
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_metadata_and_catalog(name):
    loss, family, prediction = LOSSES[name]
    assert loss.name == name and loss.family == family and loss.prediction == prediction
    assert loss.formula and loss.gradient_formula and len(loss.when_to_use) > 80
    assert loss.references and loss.info()["name"] == name
    assert loss in lk.catalog(family)
    # once exported by losskit/__init__.py, the public name is this very object
    assert getattr(lk, name, loss) is loss
    doc = type(loss).__doc__
    assert "{common_parameters}" not in doc and "{target_doc}" not in doc
    assert "reduction : {" in doc  # the shared parameters were substituted
    assert ".. math::" in doc and "References" in doc and ">>>" in doc


def test_divergence_losses_do_not_shadow_the_information_functions():
    # lk.kl_divergence is the loss (prediction first); lk.info.kl_divergence the textbook
    # D(p || q) (true distribution first): two different objects, related as documented
    assert lk.info.kl_divergence is not kl_divergence
    assert lk.info.js_divergence is not js_divergence
    assert callable(lk.info.kl_divergence) and not hasattr(lk.info.kl_divergence, "grad")
    p = np.array([[0.9, 0.1], [0.3, 0.7]])
    q = np.array([[0.5, 0.5], [0.6, 0.4]])
    ref = sc.rel_entr(p, q).sum(-1)  # scipy, independent
    np.testing.assert_allclose(kl_divergence(q, p, log_prediction=False, reduction="none"),
                               ref, rtol=1e-14)
    np.testing.assert_allclose(lk.info.kl_divergence(p, q), ref, rtol=1e-14)


def test_options_are_the_documented_ones():
    assert list(sigmoid_focal_loss.option_defaults().items()) == [
        ("gamma", 2.0), ("alpha", 0.25), ("label_smoothing", 0.0), ("ignore_index", None)]
    assert softmax_focal_loss.option_defaults() == {
        "gamma": 2.0, "alpha": None, "axis": -1, "class_weight": None, "ignore_index": None}
    assert poly_loss.option_defaults() == {
        "epsilon": 1.0, "axis": -1, "class_weight": None, "ignore_index": None,
        "label_smoothing": 0.0}
    assert kl_divergence.option_defaults() == {"axis": -1, "log_prediction": True,
                                               "log_target": False}
    assert softmax_kl_divergence.option_defaults() == {
        "temperature": 1.0, "target_is_logits": True, "scale_by_temperature_squared": True,
        "axis": -1}
    assert js_divergence.option_defaults() == {"axis": -1}
    assert brier_score.option_defaults() == {"axis": -1, "ignore_index": None}
    assert squared_hinge.option_defaults() == {"margin": 1.0}


# =============================================================================== sigmoid focal
def test_sigmoid_focal_gamma0_is_binary_cross_entropy_exactly():
    rng = np.random.default_rng(0)
    z, t = rng.normal(scale=3, size=(5, 3)), rng.random((5, 3))
    v, g = sigmoid_focal_loss.value_and_grad(z, t, gamma=0.0, alpha=None, reduction="sum")
    zt = _t(z, grad=True)
    ref = F.binary_cross_entropy_with_logits(zt, _t(t), reduction="sum")
    ref.backward()
    np.testing.assert_allclose(v, ref.item(), rtol=1e-14)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-13, atol=1e-16)
    # the documented identity, exactly
    v2, g2 = lk.sigmoid_binary_cross_entropy.value_and_grad(z, t, reduction="sum")
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_allclose(g, g2, rtol=1e-15, atol=1e-17)


def test_sigmoid_focal_alpha_none_and_negative_alpha_disable_the_weighting():
    z, t = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.0, 1.0])
    none = sigmoid_focal_loss(z, t, alpha=None, reduction="none")
    neg = sigmoid_focal_loss(z, t, alpha=-1.0, reduction="none")
    ref = torchvision_sigmoid_focal(_t(z), _t(t), 2.0, -1.0).numpy()
    np.testing.assert_allclose(none, ref, rtol=1e-14)
    np.testing.assert_array_equal(neg, none)
    # alpha = 0.25: positives times 0.25, negatives times 0.75
    np.testing.assert_allclose(sigmoid_focal_loss(z, t, reduction="none"),
                               none * np.array([0.25, 0.75, 0.25]), rtol=1e-14)


@pytest.mark.parametrize("z,t,value,grad", [
    # z = 1e4, t = 1: p_t = 1, ce = softplus(-1e4) = 0 -> 0, gradient 0
    (1e4, 1.0, 0.0, 0.0),
    # z = 1e4, t = 0: ce = 1e4, 1 - p_t = p = 1 -> (1 - alpha) 1e4; grad (1 - alpha)(p - t)
    (1e4, 0.0, 0.75e4, 0.75),
    # z = -1e4, t = 1: ce = 1e4, 1 - p_t = 1 - p = 1 -> alpha 1e4; grad alpha (p - t)
    (-1e4, 1.0, 0.25e4, -0.25),
    (-1e4, 0.0, 0.0, 0.0),
    (INF, 1.0, 0.0, 0.0),       # perfect at an infinite logit
    (-INF, 0.0, 0.0, 0.0),
    (INF, 0.0, INF, 0.75),      # certain and wrong: the limit of (1 - alpha)(p - t)
    (-INF, 1.0, INF, -0.25),
])
def test_sigmoid_focal_at_huge_and_infinite_logits(z, t, value, grad):
    v, g = sigmoid_focal_loss.value_and_grad(np.array([z]), np.array([t]), reduction="sum")
    np.testing.assert_allclose(v, value, rtol=1e-15)
    np.testing.assert_allclose(g, [grad], rtol=1e-15)


def test_sigmoid_focal_soft_target_at_huge_logit_is_exact():
    # t = 0.5, z = 1e4: ce = 0.5 * 1e4, 1 - p_t = 0.5 -> 0.5^2 * 5e3 * alpha_t(0.5) = 0.5
    v, g = sigmoid_focal_loss.value_and_grad(np.array([1e4]), np.array([0.5]), reduction="sum")
    np.testing.assert_allclose(v, 0.25 * 5e3 * 0.5, rtol=1e-15)
    # grad: alpha_t [q^2 (p - t) + gamma (1 - 2t) ...] = 0.5 * 0.25 * 0.5 (the second is 0)
    np.testing.assert_allclose(g, [0.0625], rtol=1e-15)


def _mp_sigmoid_focal(z, t, gamma, alpha):
    """value and d/dz of the focal loss at 50 digits (mpmath), from the definition."""
    mp = mpmath.mp
    mp.dps = 50

    def f(x):
        p = 1 / (1 + mp.exp(-x))
        ce = -(t * mp.log(p) + (1 - t) * mp.log(1 - p))
        a_t = alpha * t + (1 - alpha) * (1 - t)
        return a_t * (1 - (p * t + (1 - p) * (1 - t))) ** gamma * ce

    x = mp.mpf(z)
    return float(f(x)), float(mp.diff(f, x))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 2.0])
@pytest.mark.parametrize("z,t", [(40.0, 1.0), (-40.0, 0.0), (60.0, 1.0), (8.0, 1.0),
                                 (-15.0, 1.0), (5.0, 0.3)])
def test_sigmoid_focal_gradient_is_finite_and_exact_for_small_gamma(z, t, gamma):
    # at z = 40 the float64 sigmoid is exactly 1: autodiff of the textbook formula gives
    # inf * 0 = NaN for gamma < 1; the log-space form keeps the exact (tiny) value
    v, g = sigmoid_focal_loss.value_and_grad(np.array([z]), np.array([t]), gamma=gamma,
                                             alpha=0.25, reduction="sum")
    ref_v, ref_g = _mp_sigmoid_focal(z, t, gamma, 0.25)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, [ref_g], rtol=1e-11)


def test_sigmoid_focal_nan_propagates_even_with_zero_alpha_weight():
    z = np.array([NAN, NAN, 0.0])
    t = np.array([1.0, 0.0, 1.0])
    v, g = sigmoid_focal_loss.value_and_grad(z, t, alpha=1.0, reduction="none")
    # element 1 has alpha_t = 1 - alpha = 0, still NaN (0 * NaN), as in torchvision
    assert np.isnan(v[:2]).all() and np.isnan(g[:2]).all()
    assert np.isfinite(v[2]) and np.isfinite(g[2])
    assert np.isnan(sigmoid_focal_loss(np.array([0.0]), np.array([NAN])))


def test_sigmoid_focal_float16_is_computed_in_float32():
    rng = np.random.default_rng(1)
    z = torch.tensor(rng.normal(scale=3, size=(64,)), dtype=torch.float16)
    t = torch.tensor((rng.random(64) > 0.5).astype(np.float64), dtype=torch.float16)
    v, g = sigmoid_focal_loss.value_and_grad(z, t)
    assert v.dtype == torch.float16 and g.dtype == torch.float16
    zr = z.float().requires_grad_(True)
    ref = torchvision_sigmoid_focal(zr, t.float(), 2.0, 0.25).mean()
    ref.backward()
    np.testing.assert_allclose(float(v), ref.item(), rtol=2e-3)
    np.testing.assert_allclose(g.float().numpy(), zr.grad.numpy(), rtol=5e-3, atol=1e-5)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"gamma": -1.0}, ValueError, r"^`gamma` must lie in \[0, inf\]; got -1\.0$"),
    ({"gamma": INF}, ValueError, r"^`gamma` must be finite; got inf$"),
    ({"gamma": NAN}, ValueError, r"^`gamma` must lie in \[0, inf\]; got nan$"),
    ({"gamma": "2"}, TypeError, r"^`gamma` must be a real number; got str$"),
    ({"alpha": 1.5}, ValueError, r"^`alpha` must lie in \[-inf, 1\]; got 1\.5; None or a "
                                 r"negative alpha disables the weighting$"),
    ({"alpha": True}, TypeError, r"^`alpha` must be a real number; got bool$"),
])
def test_sigmoid_focal_option_errors(kw, exc, msg):
    z, t = np.zeros(3), np.array([0.0, 1.0, 1.0])
    for fn in (sigmoid_focal_loss, sigmoid_focal_loss.grad):
        with pytest.raises(exc, match=msg):
            fn(z, t, **kw)


def test_sigmoid_focal_target_errors():
    z = np.zeros(3)
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values above "
                       r"1 \(max 2\): targets are probabilities$"):
        sigmoid_focal_loss(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(3,\); got \(3, 1\); squeeze the last axis of `target`"):
        sigmoid_focal_loss(z, np.zeros((3, 1)))
    with pytest.raises(TypeError, match=r"^`prediction` of `sigmoid_focal_loss` must have a "
                       r"floating dtype .*got int64"):
        sigmoid_focal_loss(np.zeros(3, dtype=np.int64), np.zeros(3))


# =============================================================================== softmax focal
def test_softmax_focal_gamma0_is_cross_entropy_exactly():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2, size=(7, 4))
    y = rng.integers(0, 4, size=7)
    y[::3] = -100
    cw = np.array([0.5, 2.0, 1.0, 3.0])
    opts = {"class_weight": cw, "ignore_index": -100}
    v, g = softmax_focal_loss.value_and_grad(z, y, gamma=0.0, **opts)
    zt = _t(z, grad=True)
    ref = F.cross_entropy(zt, torch.as_tensor(y), weight=_t(cw), ignore_index=-100)
    ref.backward()
    np.testing.assert_allclose(v, ref.item(), rtol=1e-14)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-13, atol=1e-17)
    v2, g2 = lk.softmax_cross_entropy.value_and_grad(z, y, **opts)
    np.testing.assert_allclose(v, v2, rtol=1e-15)
    np.testing.assert_allclose(g, g2, rtol=1e-15, atol=1e-17)


def test_softmax_focal_is_focal_times_alpha_and_alpha_is_not_in_the_denominator():
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    y = np.array([0, 1])
    # row 0: p_y = 1/2 -> (1/2)^2 ln 2; row 1: p_y = 1/(1 + e^2) -> (1 - p)^2 (-ln p)
    p1 = 1 / (1 + math.exp(2))
    rows = np.array([0.25 * LN2, (1 - p1) ** 2 * -math.log(p1)])
    np.testing.assert_allclose(softmax_focal_loss(z, y, reduction="none"), rows, rtol=1e-14)
    alpha = np.array([0.25, 4.0])
    np.testing.assert_allclose(softmax_focal_loss(z, y, alpha=alpha),
                               (0.25 * rows[0] + 4.0 * rows[1]) / 2, rtol=1e-14)
    # class_weight divides the mean by sum w_y instead
    np.testing.assert_allclose(softmax_focal_loss(z, y, class_weight=alpha),
                               (0.25 * rows[0] + 4.0 * rows[1]) / 4.25, rtol=1e-14)


def test_softmax_focal_huge_and_minus_inf_logits():
    z = np.array([[1e4, 0.0, -1e4]])
    v, g = softmax_focal_loss.value_and_grad(z, np.array([0]), reduction="sum")
    assert v == 0.0 and np.all(g == 0)  # p_y = 1: no loss, no gradient
    # label 1: p_1 = e^-1e4 = 0 -> (1 - 0)^2 * 1e4; f_1 = -1, f_0 = 0 -> grad (1, -1, 0)
    v, g = softmax_focal_loss.value_and_grad(z, np.array([1]), reduction="sum")
    np.testing.assert_allclose(v, 1e4, rtol=1e-15)
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0]], atol=1e-300)
    # -inf off the target: the same as the problem without that class (torch reference)
    zi = np.array([[1.0, 2.0, -INF]])
    v, g = softmax_focal_loss.value_and_grad(zi, np.array([0]), reduction="sum")
    zt = _t(zi[:, :2], grad=True)
    logp = torch.log_softmax(zt, -1)[0, 0]
    ref = -(1 - logp.exp()) ** 2 * logp
    ref.backward()
    np.testing.assert_allclose(v, ref.item(), rtol=1e-14)
    np.testing.assert_allclose(g[:, :2], zt.grad.numpy(), rtol=1e-13)
    assert g[0, 2] == 0.0
    # -inf on the target: infinite loss, the cross-entropy's gradient p - e_y = (1, -1)
    v, g = softmax_focal_loss.value_and_grad(np.array([[0.0, -INF]]), np.array([1]),
                                             reduction="sum")
    assert v == INF
    np.testing.assert_array_equal(g, [[1.0, -1.0]])


def _mp_softmax_focal_row(z, y, gamma):
    """value and gradient of -(1 - p_y)^gamma log p_y at 50 digits (mpmath)."""
    mp = mpmath.mp
    mp.dps = 50

    def f(*x):
        lse = mp.log(sum(mp.exp(xi) for xi in x))
        logp = x[y] - lse
        return -(1 - mp.exp(logp)) ** gamma * logp

    x = [mp.mpf(v) for v in z]
    grad = []
    for j in range(len(z)):
        order = [1 if i == j else 0 for i in range(len(z))]
        grad.append(float(mp.diff(f, x, order)))
    return float(f(*x)), np.array(grad)


@pytest.mark.parametrize("gamma", [0.3, 0.5, 2.0])
@pytest.mark.parametrize("z,y", [([40.0, 0.0, -3.0], 0), ([3.0, 0.5, -1.0], 1),
                                 ([0.2, 0.1, 25.0], 2), ([0.0, -30.0, 1.0], 1)])
def test_softmax_focal_matches_mpmath_also_where_p_y_rounds_to_one(z, y, gamma):
    v, g = softmax_focal_loss.value_and_grad(np.array([z]), np.array([y]), gamma=gamma,
                                             reduction="sum")
    ref_v, ref_g = _mp_softmax_focal_row(z, y, gamma)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g[0], ref_g, rtol=1e-10, atol=1e-300)


def test_softmax_focal_ignored_row_of_minus_inf_costs_nothing():
    z = np.array([[-INF, -INF], [0.0, 0.0]])
    v, g = softmax_focal_loss.value_and_grad(z, np.array([-1, 0]), ignore_index=-1)
    np.testing.assert_allclose(v, 0.25 * LN2, rtol=1e-15)  # only row 1, mean over 1
    assert np.all(g[0] == 0)


def test_softmax_focal_nan_propagates_per_row():
    z = np.array([[NAN, 0.0], [0.0, 1.0]])
    v, g = softmax_focal_loss.value_and_grad(z, np.array([1, 1]), reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all()
    assert np.isfinite(v[1]) and np.isfinite(g[1]).all()


def test_softmax_focal_float16():
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(size=(32, 5)), dtype=torch.float16)
    y = torch.as_tensor(rng.integers(0, 5, size=32))
    v, g = softmax_focal_loss.value_and_grad(z, y)
    assert v.dtype == torch.float16 and g.dtype == torch.float16
    zr = z.float().requires_grad_(True)
    logp = torch.log_softmax(zr, -1).gather(1, y[:, None])[:, 0]
    ref = (-(1 - logp.exp()) ** 2 * logp).mean()
    ref.backward()
    np.testing.assert_allclose(float(v), ref.item(), rtol=2e-3)
    np.testing.assert_allclose(g.float().numpy(), zr.grad.numpy(), rtol=5e-3, atol=1e-5)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"alpha": -0.5}, ValueError, r"^`alpha` must lie in \[0, inf\]; got -0\.5$"),
    ({"alpha": [1.0, 2.0]}, ValueError, r"^`alpha` must be a number or one factor per class, "
                                        r"shape \(3,\) .*; got \(2,\)$"),
    ({"alpha": [1.0, -2.0, 1.0]}, ValueError, r"^`alpha` must lie in \[0, inf\]; it has values "
                                              r"below 0 \(min -2\): class factors must be "
                                              r"non-negative$"),
    ({"gamma": -0.1}, ValueError, r"^`gamma` must lie in \[0, inf\]; got -0\.1$"),
    ({"ignore_index": 1.5}, TypeError,
     r"^`ignore_index` of softmax_focal_loss must be an int or None; got 1\.5$"),
    ({"axis": 2}, ValueError, r"^`axis` of softmax_focal_loss must lie in \[-2, 1\] for a 2-d "
                              r"`prediction`; got 2$"),
])
def test_softmax_focal_option_errors(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        softmax_focal_loss(np.zeros((2, 3)), np.array([0, 2]), **kw)


def test_softmax_focal_label_errors_are_the_shared_ones():
    with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 2\] "
                       r"\(num_classes=3 from the class axis\); got 3$"):
        softmax_focal_loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values above "
                       r"1 \(max 1\.5\)"):
        softmax_focal_loss(np.zeros((1, 2)), np.array([[1.5, 0.5]]))


# =============================================================================== poly-1
def test_poly_epsilon0_is_cross_entropy_and_the_extra_term_is_epsilon_one_minus_p():
    rng = np.random.default_rng(4)
    z = rng.normal(scale=2, size=(6, 3))
    y = rng.integers(0, 3, size=6)
    ce = F.cross_entropy(_t(z), torch.as_tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(poly_loss(z, y, epsilon=0.0, reduction="none"), ce, rtol=1e-14)
    p_y = sc.softmax(z, axis=-1)[np.arange(6), y]
    for eps in (-1.0, 0.5, 2.0):
        np.testing.assert_allclose(poly_loss(z, y, epsilon=eps, reduction="none"),
                                   ce + eps * (1 - p_y), rtol=1e-13)


def test_poly_one_minus_p_is_exact_when_p_rounds_to_one():
    # z = (40, 0), y = 0: CE = log1p(e^-40), 1 - p_y = e^-40 / (1 + e^-40); both ~4.2e-18,
    # where the float64 softmax says p_y = 1 exactly
    v = poly_loss(np.array([[40.0, 0.0]]), np.array([0]), epsilon=2.0, reduction="sum")
    e = math.exp(-40.0)
    np.testing.assert_allclose(v, math.log1p(e) + 2.0 * e / (1 + e), rtol=1e-14)
    assert v > 0


def test_poly_huge_and_minus_inf_logits():
    # label on the -1e4 side: CE = 1e4, 1 - p_y = 1 -> 1e4 + epsilon
    v, g = poly_loss.value_and_grad(np.array([[1e4, 0.0]]), np.array([1]), epsilon=1.0,
                                    reduction="sum")
    np.testing.assert_allclose(v, 1e4 + 1.0, rtol=1e-15)
    # p - e_y + eps p_y (p - e_y) with p = (1, 0): (1, -1)
    np.testing.assert_allclose(g, [[1.0, -1.0]], atol=1e-300)
    v, g = poly_loss.value_and_grad(np.array([[0.0, 0.0, -INF]]), np.array([0]), epsilon=1.0,
                                    reduction="sum")
    np.testing.assert_allclose(v, LN2 + 0.5, rtol=1e-15)
    # (1 + eps p_y)(p - e_y) = 1.5 * (-0.5, 0.5, 0)
    np.testing.assert_allclose(g, [[-0.75, 0.75, 0.0]], rtol=1e-15)


@pytest.mark.parametrize("eps,exc,msg", [
    (-1.5, ValueError, r"^`epsilon` must lie in \[-1, inf\]; got -1\.5; the leading "
                       r"coefficient 1 \+ epsilon of Poly-1 must be non-negative$"),
    (INF, ValueError, r"^`epsilon` must be finite; got inf"),
    (None, TypeError, r"^`epsilon` must be a real number; got NoneType$"),
])
def test_poly_epsilon_errors(eps, exc, msg):
    with pytest.raises(exc, match=msg):
        poly_loss(np.zeros((2, 3)), np.array([0, 1]), epsilon=eps)


# =============================================================================== brier
def test_brier_binary_is_twice_sklearns_halved_binary_score():
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.1, 0.9, 0.8, 0.3])
    sk = metrics.brier_score_loss(y, p1)  # 0.0375 in scikit-learn's own docs
    assert sk == pytest.approx(0.0375)
    probs = np.stack([1 - p1, p1], axis=-1)
    np.testing.assert_allclose(brier_score(probs, y), 2 * sk, rtol=1e-14)
    np.testing.assert_allclose(brier_score(probs, y),
                               metrics.brier_score_loss(y, p1, scale_by_half=False),
                               rtol=1e-14)


def test_brier_multiclass_equals_sklearn_with_sample_weight():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(4), size=20)
    y = rng.integers(0, 4, size=20)
    w = rng.random(20)
    sk = metrics.brier_score_loss(y, probs, labels=[0, 1, 2, 3])
    np.testing.assert_allclose(brier_score(probs, y), sk, rtol=1e-13)
    sk_w = metrics.brier_score_loss(y, probs, labels=[0, 1, 2, 3], sample_weight=w)
    np.testing.assert_allclose(brier_score(probs, y, sample_weight=w), sk_w, rtol=1e-13)
    # the sklearn docstring's three-class example (printed there as 0.146...): by hand
    # (0.04 + 0.01 + 0.01) + (0.04 + 0.09 + 0.01) + (0.04 + 0.04 + 0.16) = 0.44, over 3
    P = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(brier_score(P, np.array([0, 1, 2])), 0.44 / 3, rtol=1e-13)
    np.testing.assert_allclose(metrics.brier_score_loss([0, 1, 2], P), 0.44 / 3, rtol=1e-13)


def test_brier_onehot_target_equals_labels_and_ignored_rows_cost_nothing():
    P = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    y = np.array([0, 1, -1])
    v, g = brier_score.value_and_grad(P, y, ignore_index=-1, reduction="sum")
    # 2 * 0.2^2 + 2 * 0.4^2 = 0.4; ignored row 0
    np.testing.assert_allclose(v, 0.4, rtol=1e-14)
    np.testing.assert_allclose(g, [[-0.4, 0.4], [0.8, -0.8], [0.0, 0.0]], rtol=1e-14)
    np.testing.assert_allclose(brier_score(P, y, ignore_index=-1), 0.2, rtol=1e-14)  # mean / 2
    v2 = brier_score(P[:2], np.eye(2)[y[:2]], reduction="sum")
    np.testing.assert_allclose(v2, 0.4, rtol=1e-14)


def test_brier_errors_and_nan():
    with pytest.raises(ValueError, match=r"^`prediction` must lie in \[0, 1\]; it has values "
                       r"above 1 \(max 1\.2\): brier_score expects probabilities \(use "
                       r"losskit\.softmax on logits first\)$"):
        brier_score(np.array([[1.2, 0.2]]), np.array([0]))
    with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 1\]"):
        brier_score(np.array([[0.5, 0.5]]), np.array([2]))
    v = brier_score(np.array([[NAN, 0.5], [0.5, 0.5]]), np.array([0, 0]), reduction="none")
    assert np.isnan(v[0]) and v[1] == 0.5


# =============================================================================== squared hinge
def test_squared_hinge_is_smooth_at_the_margin_and_hand_values():
    s = np.array([1.0, 0.999, 3.0, -2.0])
    t = np.array([1.0, 1.0, -1.0, -1.0])
    v, g = squared_hinge.value_and_grad(s, t, reduction="none")
    # slack m - t s = (0, 0.001, 4, -1)
    np.testing.assert_allclose(v, [0.0, 1e-6, 16.0, 0.0], rtol=1e-9)
    np.testing.assert_allclose(g, [0.0, -0.002, 8.0, 0.0], rtol=1e-9)
    assert g[0] == 0.0 and not np.signbit(g[0])
    v, g = squared_hinge.value_and_grad(np.array([0.0]), np.array([1.0]), margin=2.5,
                                        reduction="sum")
    assert float(v) == 6.25 and g[0] == -5.0


def test_squared_hinge_errors_and_nan():
    with pytest.raises(ValueError, match=r"^`target` of squared_hinge must hold labels -1 or "
                       r"\+1; got also \[0\.0\]\. Map 0/1 labels with 2 \* t - 1$"):
        squared_hinge(np.zeros(2), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"^`margin` must be a real number; got str$"):
        squared_hinge(np.zeros(2), np.ones(2), margin="1")
    v, g = squared_hinge.value_and_grad(np.array([NAN, 2.0]), np.array([1.0, 1.0]),
                                        reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]) and v[1] == 0.0 and g[1] == 0.0


# =============================================================================== multiclass hinge
# -inf scores (a masked class) and +inf scores: PyTorch's multi_margin_loss is the reference,
# times C (it divides each example's sum by the number of classes). Its CPU kernel has no
# float16, so float16 inputs (exact in float32) are checked against float32 torch.
MINUS_INF_ROWS = [
    ([-INF, 0.5, -INF, 1.0, -INF], 1),   # the issue's example: 1.5, gradient (0, -1, 0, 1, 0)
    ([-INF, -INF, 2.0, -INF, 0.0], 4),   # several -inf, target beaten by 2: 3 + 0
    ([3.0, -INF, -INF, -INF, 0.5], 0),   # target wins by the margin: 0
    ([-INF, 0.5, -INF, 1.0, -INF], 0),   # -inf target: inf against the finite scores; the
                                         # -inf ones give -inf - (-inf) = NaN, not counted
    ([-INF, -INF, -INF, -INF, -INF], 2),  # every score -inf: no violation counted, 0
    ([2.0, INF, -INF, 1.0, -INF], 0),    # +inf on a wrong class: inf, gradient +1 there
    ([2.0, 0.5, INF, 1.0, -INF], 2),     # +inf target: beats everything, 0
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("row, label", MINUS_INF_ROWS)
def test_multiclass_hinge_infinite_scores_follow_torch_multi_margin_loss(row, label, dtype):
    x = np.array([row], dtype=dtype)
    y = np.array([label])
    c = x.shape[1]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    xt = _t(x.astype(np.float64), grad=True, dtype=tdt)
    ref = F.multi_margin_loss(xt, torch.tensor(y), reduction="sum") * c
    ref.backward()
    ref_v, ref_g = ref.item(), xt.grad.numpy()
    v, g = lk.multiclass_hinge.value_and_grad(x, y, reduction="sum")
    assert v.dtype == dtype and g.dtype == dtype
    assert not np.isnan(v) and not np.isnan(g).any(), (v, g)
    np.testing.assert_array_equal(np.float64(v), np.float64(dtype(ref_v)))
    np.testing.assert_array_equal(g.astype(np.float64), ref_g)


def test_multiclass_hinge_minus_inf_issue_example_and_batch_rows_are_independent():
    x = np.array([[-INF, 0.5, -INF, 1.0, -INF], [0.0, 0.2, 0.1, 0.0, -0.3]])
    y = np.array([1, 0])
    v, g = lk.multiclass_hinge.value_and_grad(x, y, reduction="none")
    xt = _t(x, grad=True)
    ref = F.multi_margin_loss(xt, torch.tensor(y), reduction="none") * 5
    ref.sum().backward()
    np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-15)
    np.testing.assert_array_equal(g[0], [0.0, -1.0, 0.0, 1.0, 0.0])


def test_multiclass_hinge_nan_still_propagates_next_to_infinities():
    # a NaN score is not an infinity: its row's value and gradient are NaN (losskit's rule)
    x = np.array([[NAN, 0.5, -INF, 1.0], [-INF, 0.5, -INF, 1.0]])
    v, g = lk.multiclass_hinge.value_and_grad(x, np.array([1, 1]), reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all()
    assert v[1] == 1.5 and list(g[1]) == [0.0, -1.0, 0.0, 1.0]
    x = np.array([[0.0, NAN, -INF]])  # NaN in the target position
    v, g = lk.multiclass_hinge.value_and_grad(x, np.array([1]), reduction="none")
    assert np.isnan(v[0]) and np.isnan(g).all()


# =============================================================================== KL
def test_kl_mean_is_torch_batchmean_and_torch_mean_is_k_times_smaller():
    rng = np.random.default_rng(6)
    logq = sc.log_softmax(rng.normal(size=(5, 4)), axis=-1)
    p = rng.dirichlet(np.ones(4), size=5)
    ref_bm = F.kl_div(_t(logq), _t(p), reduction="batchmean").item()
    with warnings.catch_warnings():  # torch warns that this 'mean' is not the KL divergence
        warnings.simplefilter("ignore", UserWarning)
        ref_mean = F.kl_div(_t(logq), _t(p), reduction="mean").item()
    for red in ("mean", "batchmean"):
        np.testing.assert_allclose(kl_divergence(logq, p, reduction=red), ref_bm, rtol=1e-14)
    np.testing.assert_allclose(kl_divergence(logq, p) / 4, ref_mean, rtol=1e-14)  # pitfall
    ref_sum = sc.rel_entr(p, np.exp(logq)).sum()
    np.testing.assert_allclose(kl_divergence(logq, p, reduction="sum"), ref_sum, rtol=1e-12)


def test_kl_zero_log_zero_and_infinite_cases():
    # p = (1, 0) against q = (1/2, 0)... : p_c = 0 costs 0 even where log q_c = -inf
    # (torch's kl_div gives NaN for 0 * (log 0 - (-inf)))
    logq = np.array([[0.0, -INF], [-LN2, -LN2]])
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    v, g = kl_divergence.value_and_grad(logq, p, reduction="none")
    np.testing.assert_allclose(v, [0.0, LN2], rtol=1e-15)
    np.testing.assert_array_equal(g, -p)
    # p > 0 where q = 0: +inf; the gradient wrt log q stays -p
    v, g = kl_divergence.value_and_grad(np.array([[0.0, -INF]]), np.array([[0.5, 0.5]]),
                                        reduction="none")
    assert v[0] == INF
    np.testing.assert_array_equal(g, [[-0.5, -0.5]])
    # probabilities in: -p/q, 0 where p = 0, -inf where p > 0 = q
    v, g = kl_divergence.value_and_grad(np.array([[1.0, 0.0, 0.0]]),
                                        np.array([[0.5, 0.5, 0.0]]),
                                        log_prediction=False, reduction="sum")
    assert v == INF
    np.testing.assert_array_equal(g, [[-0.5, -INF, 0.0]])


def test_kl_log_target_equals_probability_target_and_torch():
    rng = np.random.default_rng(7)
    logq = sc.log_softmax(rng.normal(size=(3, 5)), axis=-1)
    logp = sc.log_softmax(rng.normal(scale=3, size=(3, 5)), axis=-1)
    ref = F.kl_div(_t(logq), _t(logp), reduction="batchmean", log_target=True).item()
    np.testing.assert_allclose(kl_divergence(logq, logp, log_target=True), ref, rtol=1e-13)
    np.testing.assert_allclose(kl_divergence(logq, np.exp(logp)), ref, rtol=1e-13)
    # a log target of -inf is p = 0: no cost
    assert float(kl_divergence(np.array([[-LN2, -LN2]]), np.array([[0.0, -INF]]),
                               log_target=True)) == pytest.approx(LN2, rel=1e-15)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
def test_kl_accepts_any_real_log_prediction_as_torch_and_optax_do(fast):
    from losskit.core import dispatch

    rng = np.random.default_rng(9)
    logq = rng.normal(size=(4, 6)) * 2.0  # half of it positive: not log-probabilities
    p = rng.dirichlet(np.ones(6), size=4)
    p[0, 2] = 0.0  # 0 log 0 = 0
    z = torch.tensor(logq, requires_grad=True)
    ref = F.kl_div(z, torch.tensor(p), reduction="batchmean")
    ref.backward()
    saved = dispatch.ENABLED
    dispatch.ENABLED = fast
    try:
        value, grad = lk.kl_divergence.value_and_grad(logq, p, reduction="batchmean")
    finally:
        dispatch.ENABLED = saved
    np.testing.assert_allclose(value, ref.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-13)
    optax = pytest.importorskip("optax")
    np.testing.assert_allclose(lk.kl_divergence(logq, p, reduction="none"),
                               np.asarray(optax.kl_divergence(logq, p)), rtol=1e-6)


def test_kl_nan_propagates():
    v, g = kl_divergence.value_and_grad(np.array([[NAN, -LN2], [-LN2, -LN2]]),
                                        np.array([[0.0, 1.0], [0.5, 0.5]]), reduction="none")
    assert np.isnan(v[0]) and v[1] == 0.0  # NaN even where its p is 0
    assert np.isnan(g[0, 0]) and not np.isnan(g[1]).any()
    assert np.isnan(kl_divergence(np.array([[-LN2, -LN2]]), np.array([[NAN, 0.5]])))


def test_kl_float16():
    rng = np.random.default_rng(8)
    logq = torch.tensor(sc.log_softmax(rng.normal(size=(8, 6)), -1), dtype=torch.float16)
    p = torch.tensor(rng.dirichlet(np.ones(6), size=8), dtype=torch.float16)
    v = kl_divergence(logq, p)
    assert v.dtype == torch.float16
    ref = F.kl_div(logq.float(), p.float(), reduction="batchmean").item()
    np.testing.assert_allclose(float(v), ref, rtol=3e-3)


@pytest.mark.parametrize("pred,target,kw,exc,msg", [
    ([[1.5, 0.0]], [[0.5, 0.5]], {"log_prediction": False}, ValueError,
     r"^`prediction` must lie in \[0, 1\]; it has values above 1 \(max 1\.5\): with "
     r"log_prediction=False the prediction holds probabilities$"),
    ([[-1.0, -1.0]], [[1.5, 0.5]], {}, ValueError,
     r"^`target` must lie in \[0, 1\]; it has values above 1 \(max 1\.5\): the target holds "
     r"probabilities \(log_target=True for log-probabilities\)$"),
    ([[-1.0, -1.0]], [[0.5, -0.5]], {"log_target": True}, ValueError,
     r"^`target` must lie in \[-inf, 0\]; it has values above 0 \(max 0\.5\): with "
     r"log_target=True the target holds log-probabilities$"),
    ([[-1.0, -1.0]], [[0.5, 0.5]], {"log_prediction": 1}, TypeError,
     r"^`log_prediction` must be True or False; got 1$"),
    ([[-1.0, -1.0]], [[0.5, 0.5]], {"axis": 2}, ValueError,
     r"^`axis` of kl_divergence must lie in \[-2, 1\] for a 2-d `prediction`; got 2$"),
    ([[-1.0, -1.0]], [0.5, 0.5], {}, ValueError,
     r"^`target` must have the same shape as `prediction` \(1, 2\); got \(2,\)$"),
])
def test_kl_errors(pred, target, kw, exc, msg):
    for fn in (kl_divergence, kl_divergence.grad, kl_divergence.value_and_grad):
        with pytest.raises(exc, match=msg):
            fn(np.array(pred), np.array(target), **kw)


def test_kl_of_a_scalar_prediction_needs_a_class_axis():
    with pytest.raises(ValueError, match=r"^`prediction` of kl_divergence needs a class axis; "
                       r"got a 0-d array$"):
        kl_divergence(np.array(-1.0), np.array(1.0))


# =============================================================================== distillation
def test_softmax_kl_is_hintons_objective_with_the_t_squared_factor():
    rng = np.random.default_rng(9)
    z, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    for T in (1.0, 2.0, 5.0):
        ref = F.kl_div(F.log_softmax(_t(z) / T, -1), F.softmax(_t(t) / T, -1),
                       reduction="batchmean").item() * T * T
        np.testing.assert_allclose(softmax_kl_divergence(z, t, temperature=T), ref,
                                   rtol=1e-13)
        np.testing.assert_allclose(
            softmax_kl_divergence(z, t, temperature=T, scale_by_temperature_squared=False),
            ref / (T * T), rtol=1e-13)
        # teacher probabilities given directly: the same number
        np.testing.assert_allclose(
            softmax_kl_divergence(z, sc.softmax(t / T, -1), temperature=T,
                                  target_is_logits=False), ref, rtol=1e-12)


def test_softmax_kl_gradient_tends_to_matching_logits_at_high_temperature():
    # Hinton et al. eq. (3)-(4): for zero-mean logits and T >> |z|, T (q - p) -> (z - v) / K
    rng = np.random.default_rng(10)
    z, v = rng.normal(size=(1, 6)), rng.normal(size=(1, 6))
    z, v = z - z.mean(), v - v.mean()
    g = softmax_kl_divergence.grad(z, v, temperature=1e4, reduction="sum")
    np.testing.assert_allclose(g, (z - v) / 6, rtol=1e-3, atol=1e-8)
    # without the T^2 factor the gradient shrinks like 1/T^2
    g2 = softmax_kl_divergence.grad(z, v, temperature=1e2, reduction="sum",
                                    scale_by_temperature_squared=False)
    np.testing.assert_allclose(g2 * 1e4, (z - v) / 6, rtol=2e-2, atol=1e-6)


def test_softmax_kl_huge_and_infinite_logits():
    # teacher puts no mass on class 2 (-inf) and neither does the student: free
    z = np.array([[0.0, 0.0, -INF]])
    t = np.array([[1e4, 1e4, -INF]])
    v, g = softmax_kl_divergence.value_and_grad(z, t, reduction="sum")
    assert v == 0.0
    np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0]])
    # student -inf where the teacher has mass: infinite; gradient q - p = (1, -1) * T
    v, g = softmax_kl_divergence.value_and_grad(np.array([[0.0, -INF]]),
                                                np.array([[0.0, 0.0]]), temperature=2.0,
                                                reduction="sum")
    assert v == INF
    np.testing.assert_allclose(g, [[1.0, -1.0]], rtol=1e-15)  # T (q - p) = 2 * (0.5, -0.5)
    # huge logits: student (1e4, 0) vs teacher (0, 0): 4 * [0.5 ln(0.5/1) + 0.5 ln(0.5/q_1)]
    # with log q_1 = -1e4 / 2 at T = 2
    v = softmax_kl_divergence(np.array([[1e4, 0.0]]), np.array([[0.0, 0.0]]),
                              temperature=2.0, reduction="sum")
    np.testing.assert_allclose(v, 4 * (0.5 * -LN2 + 0.5 * (-LN2 + 5e3)), rtol=1e-15)


@pytest.mark.parametrize("T,exc,msg", [
    (0.0, ValueError, r"^`temperature` must lie in \(0, inf\]; got 0\.0$"),
    (-1.0, ValueError, r"^`temperature` must lie in \(0, inf\]; got -1\.0$"),
    (NAN, ValueError, r"^`temperature` must lie in \(0, inf\]; got nan$"),
    (INF, ValueError, r"^`temperature` must be finite and positive; got inf$"),
    ("2", TypeError, r"^`temperature` must be a real number; got str$"),
])
def test_softmax_kl_temperature_validation(T, exc, msg):
    for fn in (softmax_kl_divergence, softmax_kl_divergence.grad):
        with pytest.raises(exc, match=msg):
            fn(np.zeros((1, 2)), np.zeros((1, 2)), temperature=T)


def test_softmax_kl_other_errors():
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values above "
                       r"1 \(max 2\): with target_is_logits=False the target holds the "
                       r"teacher's probabilities$"):
        softmax_kl_divergence(np.zeros((1, 2)), np.array([[2.0, 1.0]]),
                              target_is_logits=False)
    with pytest.raises(TypeError, match=r"^`scale_by_temperature_squared` must be True or "
                       r"False; got 'yes'$"):
        softmax_kl_divergence(np.zeros((1, 2)), np.zeros((1, 2)),
                              scale_by_temperature_squared="yes")
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(1, 2\); got \(1, 3\)$"):
        softmax_kl_divergence(np.zeros((1, 2)), np.zeros((1, 3)))


def test_softmax_kl_nan_propagates_per_row():
    v, g = softmax_kl_divergence.value_and_grad(np.array([[NAN, 0.0], [0.0, 1.0]]),
                                                np.zeros((2, 2)), reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all() and np.isfinite(v[1])


# =============================================================================== JS
def test_js_equals_scipy_jensenshannon_squared():
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(11)
    q, p = rng.dirichlet(np.ones(5), size=6), rng.dirichlet(np.ones(5), size=6)
    ref = distance.jensenshannon(p, q, axis=-1) ** 2  # natural log, the square of the metric
    np.testing.assert_allclose(js_divergence(q, p, reduction="none"), ref, rtol=1e-12)


def test_js_edges():
    # disjoint supports: ln 2; gradient 1/2 log(2q/(p+q)): p = 0 -> ln2/2, q = 0 < p -> -inf
    v, g = js_divergence.value_and_grad(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]),
                                        reduction="sum")
    np.testing.assert_allclose(v, LN2, rtol=1e-15)
    np.testing.assert_array_equal(g, [[-INF, LN2 / 2]])
    # both 0: the one-sided slope ln 2 / 2; equal distributions: 0 and gradient 0
    v, g = js_divergence.value_and_grad(np.array([[0.0, 0.5, 0.5]]),
                                        np.array([[0.0, 0.5, 0.5]]), reduction="sum")
    assert v == 0.0
    np.testing.assert_allclose(g, [[LN2 / 2, 0.0, 0.0]], rtol=1e-15)
    v = js_divergence(np.array([[NAN, 0.5]]), np.array([[0.5, 0.5]]))
    assert np.isnan(v)


def test_js_errors():
    with pytest.raises(ValueError, match=r"^`prediction` must lie in \[0, 1\]; it has values "
                       r"above 1 \(max 3\): js_divergence expects probabilities"):
        js_divergence(np.array([[3.0, 0.0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"^`target` must lie in \[0, 1\]; it has values below "
                       r"0 \(min -1\): targets are probabilities$"):
        js_divergence(np.array([[0.5, 0.5]]), np.array([[0.0, -1.0]]))


# =============================================================================== properties
finite = st.floats(-30, 30, allow_nan=False, allow_subnormal=False)


@st.composite
def logits_labels(draw, max_n=5, max_k=5):
    n, k = draw(st.integers(1, max_n)), draw(st.integers(2, max_k))
    z = draw(arrays(np.float64, (n, k), elements=finite))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return z, y


@st.composite
def distributions(draw, max_n=4, max_k=5):
    n, k = draw(st.integers(1, max_n)), draw(st.integers(2, max_k))
    w = st.floats(0.0, 10.0, allow_subnormal=False)
    p = draw(arrays(np.float64, (n, k), elements=w)) + 1e-3
    q = draw(arrays(np.float64, (n, k), elements=w)) + 1e-3
    return q / q.sum(-1, keepdims=True), p / p.sum(-1, keepdims=True)


@SETTINGS
@given(logits_labels(), st.floats(0.0, 5.0), st.floats(-50, 50))
def test_softmax_focal_is_between_zero_and_ce_shift_invariant_rows_sum_to_zero(zy, gamma, c):
    z, y = zy
    v, g = softmax_focal_loss.value_and_grad(z, y, gamma=gamma, reduction="none")
    ce = sc.logsumexp(z, axis=-1) - z[np.arange(len(y)), y]  # scipy
    # scipy's logsumexp - z_y rounds at the scale of the logits
    assert np.all(v >= 0) and np.all(v <= ce + 1e-14 * (1 + np.abs(z).max()))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-12)
    v2 = softmax_focal_loss(z + c, y, gamma=gamma, reduction="none")
    np.testing.assert_allclose(v2, v, rtol=1e-8, atol=1e-12)


@SETTINGS
@given(arrays(np.float64, (6,), elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
       arrays(np.float64, (6,), elements=st.floats(0, 1)), st.floats(0.0, 4.0))
def test_sigmoid_focal_is_between_zero_and_bce_and_gradient_finite(z, t, gamma):
    v, g = sigmoid_focal_loss.value_and_grad(z, t, gamma=gamma, alpha=None, reduction="none")
    bce = (np.logaddexp(0, z) - t * z)  # softplus(z) - t z, numpy
    assert np.all(v >= 0) and np.all(v <= bce * (1 + 1e-12) + 1e-12)
    assert np.all(np.isfinite(g))


@SETTINGS
@given(logits_labels(), st.floats(-1.0, 5.0))
def test_poly_minus_ce_is_epsilon_times_one_minus_p(zy, eps):
    z, y = zy
    v, g = poly_loss.value_and_grad(z, y, epsilon=eps, reduction="none")
    ce = sc.logsumexp(z, axis=-1) - z[np.arange(len(y)), y]
    p_y = sc.softmax(z, axis=-1)[np.arange(len(y)), y]
    np.testing.assert_allclose(v, ce + eps * (1 - p_y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-12)


@SETTINGS
@given(distributions())
def test_divergences_are_nonnegative_zero_on_equality_and_js_symmetric_bounded(qp):
    q, p = qp
    kl = kl_divergence(np.log(q), p, reduction="none")
    assert np.all(kl >= -1e-12)
    np.testing.assert_allclose(kl_divergence(np.log(p), p, reduction="none"), 0.0, atol=1e-15)
    js = js_divergence(q, p, reduction="none")
    assert np.all(js >= -1e-15) and np.all(js <= LN2 + 1e-12)
    np.testing.assert_allclose(js, js_divergence(p, q, reduction="none"), rtol=1e-12,
                               atol=1e-15)
    b = brier_score(q, p, reduction="none")
    assert np.all(b >= 0) and np.all(b <= 2 + 1e-12)


@SETTINGS
@given(logits_labels(), st.floats(0.1, 20.0), st.floats(-50, 50))
def test_softmax_kl_is_invariant_to_shifting_either_logits(zy, T, c):
    z, _ = zy
    t = z[::-1].copy()
    v, g = softmax_kl_divergence.value_and_grad(z, t, temperature=T, reduction="none")
    v2, g2 = softmax_kl_divergence.value_and_grad(z + c, t - c, temperature=T,
                                                  reduction="none")
    np.testing.assert_allclose(v2, v, rtol=1e-7, atol=1e-9 * T * T)
    np.testing.assert_allclose(g2, g, rtol=1e-7, atol=1e-9 * T)
    assert np.all(v >= -1e-12 * T * T)


def test_every_entry_point_validates_the_same_way():
    for fn in (poly_loss, poly_loss.grad, poly_loss.value_and_grad):
        with pytest.raises(ValueError, match=re.escape("`epsilon` must lie in [-1, inf]")):
            fn(np.zeros((1, 2)), np.array([0]), epsilon=-3.0)


# ============================================================== several distribution axes
def test_divergences_over_several_axes_errors_and_one_axis_tuples():
    r = np.random.default_rng(31)
    q = r.dirichlet(np.ones(12), size=3).reshape(3, 3, 4)
    p = r.dirichlet(np.ones(12), size=3).reshape(3, 3, 4)
    for loss, pred in ((lk.kl_divergence, np.log(q)), (lk.js_divergence, q),
                       (lk.softmax_kl_divergence, np.log(q))):
        # a one-axis tuple is that axis
        np.testing.assert_allclose(loss(pred, p, axis=(2,), reduction="none"),
                                   loss(pred, p, axis=2, reduction="none"), rtol=1e-14)
        with pytest.raises(ValueError, match=rf"^`axis` of {loss.name} must name at least "
                                             r"one axis; got \(\)$"):
            loss(pred, p, axis=())
        with pytest.raises(ValueError, match=rf"^`axis` of {loss.name} names an axis twice: "
                                             r"\(1, -2\) for a 3-d `prediction`$"):
            loss(pred, p, axis=(1, -2))
        with pytest.raises(ValueError, match=r"must lie in \[-3, 2\].*got 3$"):
            loss(pred, p, axis=(1, 3))
    # the total over every axis of a map equals the sum of its per-example values
    v = lk.kl_divergence(np.log(q), p, axis=(1, 2), reduction="none")
    np.testing.assert_allclose(v, (p * (np.log(p) - np.log(q))).sum(axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("fast", [True, False])
def test_softmax_kl_divergence_gradient_with_teacher_probabilities_of_any_sum(fast):
    """Given probabilities are taken as they are: the gradient of -sum p log q is
    ((sum p) q - p) / T, not q - p, when the probabilities do not sum to 1 (torch autograd
    of the formula written out)."""
    torch = pytest.importorskip("torch")
    from losskit.core import dispatch

    rng = np.random.default_rng(4)
    z = rng.normal(size=(3, 5))
    p = rng.uniform(size=(3, 5)) * 0.3  # rows summing to about 0.75
    for temp in (1.0, 2.5):
        zt = torch.tensor(z, requires_grad=True)
        pt = torch.tensor(p)
        ref = (temp * temp * (torch.xlogy(pt, pt) - pt * torch.log_softmax(zt / temp, -1))
               ).sum(-1).mean()
        ref.backward()
        saved = dispatch.ENABLED
        dispatch.ENABLED = fast
        try:
            v, g = lk.softmax_kl_divergence.value_and_grad(z, p, target_is_logits=False,
                                                          temperature=temp)
        finally:
            dispatch.ENABLED = saved
        np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-10, atol=1e-15)
