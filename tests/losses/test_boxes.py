"""The bounding-box (IoU family) losses: stopped gradients, edges, errors, properties.

The generic checks (values and gradients against torch float64/float32 and JAX, finite
differences, reductions, sample weights, backends) run on ``cases_boxes.CASES``. Here:
the default gradients that stop a term (CIoU's alpha, Focal-EIoU's weight, Wise-IoU's
enclosing box and focusing coefficient) against the same references with ``.detach()``
and against finite differences of the reference with those terms frozen; the degenerate
and special configurations with numbers worked out by hand in the comments; every error
message; hypothesis properties; metadata.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import loss_cases  # noqa: F401  (first: it collects cases_boxes, which imports it back)
import losskit as lk
from cases_boxes import (
    EPS,
    TorchNS,
    _unbind,
    box_pairs,
    ref_centres,
    ref_ciou_loss,
    ref_diou_loss,
    ref_eiou_loss,
    ref_enclosing,
    ref_focal_eiou_loss,
    ref_giou_loss,
    ref_inner_iou,
    ref_inner_iou_loss,
    ref_iou,
    ref_iou_loss,
    ref_mpdiou_loss,
    ref_siou_loss,
    ref_wiou_loss,
    torch_ref,
    with_inner,
)
from losskit.losses.boxes import (
    ciou_loss,
    complete_box_iou_loss,
    diou_loss,
    distance_box_iou_loss,
    eiou_loss,
    focal_eiou_loss,
    generalized_box_iou_loss,
    giou_loss,
    inner_iou_loss,
    iou_loss,
    mpdiou_loss,
    siou_loss,
    wiou_loss,
)
from losskit.gradcheck import gradcheck

torch = pytest.importorskip("torch")

ALL = [iou_loss, giou_loss, diou_loss, ciou_loss, eiou_loss, focal_eiou_loss, siou_loss,
       wiou_loss, mpdiou_loss, inner_iou_loss]
IMAGE = (16.0, 12.0)
REFS = {  # name -> reference of the default configuration (stopped gradients included)
    "iou_loss": ref_iou_loss, "giou_loss": ref_giou_loss, "diou_loss": ref_diou_loss,
    "ciou_loss": ref_ciou_loss, "eiou_loss": ref_eiou_loss,
    "focal_eiou_loss": ref_focal_eiou_loss, "siou_loss": ref_siou_loss,
    "wiou_loss": ref_wiou_loss, "mpdiou_loss": ref_mpdiou_loss,
    "inner_iou_loss": ref_inner_iou_loss,
}
REDUCTIONS = ("none", "sum", "mean", "batchmean")


def opts(loss):
    """The options a loss cannot do without."""
    return {"image_size": IMAGE} if loss is mpdiou_loss else {}


def ref_opts(loss):
    return {"image_size": IMAGE} if loss is mpdiou_loss else {}


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _torch(fn, p, t, reduction="none", **kw):
    """Value and autograd gradient (of the sum for 'none') of a reference, float64."""
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64)
    v = torch_ref(fn, **kw)(pt, tt, reduction, torch)
    (v.sum() if reduction == "none" else v).backward()
    return v.detach().numpy(), pt.grad.numpy()


# ---------------------------------------------------------------- stopped gradients
STOPPED = [
    ("ciou", ciou_loss, ref_ciou_loss, {}),
    ("ciou-inner", ciou_loss, with_inner(ref_ciou_loss, 0.7), {"inner_ratio": 0.7}),
    ("focal_eiou", focal_eiou_loss, ref_focal_eiou_loss, {}),
    ("focal_eiou-gamma1.5", focal_eiou_loss, ref_focal_eiou_loss, {"gamma": 1.5}),
    ("wiou-v1", wiou_loss, ref_wiou_loss, {}),
    ("wiou-v2", wiou_loss, ref_wiou_loss, {"version": 2, "iou_mean": 0.6}),
    ("wiou-v3", wiou_loss, ref_wiou_loss,
     {"version": 3, "iou_mean": 0.6, "alpha": 1.7, "delta": 2.7}),
]
STOPPED_IDS = [s[0] for s in STOPPED]


def _ref_kw(options):
    return {k: v for k, v in options.items() if k != "inner_ratio"}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("id_, loss, ref, options", STOPPED, ids=STOPPED_IDS)
def test_default_gradient_stops_what_the_reference_detaches(id_, loss, ref, options,
                                                           reduction):
    p, t = box_pairs()(np.random.default_rng(11))
    ref_v, ref_g = _torch(ref, p, t, reduction, **_ref_kw(options))  # stop=True default
    v, g = loss.value_and_grad(p, t, reduction=reduction, **options)
    np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-9, atol=1e-13)
    # the value does not depend on stop_gradient; the gradient does
    v2, g2 = loss.value_and_grad(p, t, reduction=reduction, stop_gradient=False, **options)
    np.testing.assert_array_equal(v2, v)
    assert np.max(np.abs(g2 - g)) > 1e-6


@pytest.mark.parametrize("id_, loss, ref, options", STOPPED, ids=STOPPED_IDS)
def test_default_gradient_float32(id_, loss, ref, options):
    p, t = box_pairs()(np.random.default_rng(12))
    ref_v, ref_g = _torch(ref, p, t, "mean", **_ref_kw(options))
    v, g = loss.value_and_grad(p.astype(np.float32), t.astype(np.float32), **options)
    assert v.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(v, ref_v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)


class _Frozen(TorchNS):
    """The reference with every stopped term frozen at its value at the first call."""

    def __init__(self):
        super().__init__(torch)
        self.frozen, self.k = [], None

    def stop(self, x):
        if self.k is None:  # first evaluation, at the point being checked: record
            self.frozen.append(x.detach().clone())
            return self.frozen[-1]
        self.k += 1
        return self.frozen[self.k - 1]


@pytest.mark.parametrize("id_, loss, ref, options", STOPPED, ids=STOPPED_IDS)
def test_default_gradient_is_the_derivative_with_stopped_terms_held_fixed(id_, loss, ref,
                                                                          options):
    """Finite differences of the reference whose detached terms are frozen at the point."""
    p, t = box_pairs()(np.random.default_rng(13))
    ns = _Frozen()
    kw = _ref_kw(options)

    def frozen_sum(q):
        out = ref(ns, torch.tensor(q, dtype=torch.float64), torch.tensor(t), **kw).sum()
        ns.k = 0
        return float(out)

    res = gradcheck(frozen_sum, p,
                    grad=lambda q: loss.grad(q, t, reduction="sum", **options))
    assert ns.frozen, "the reference stops nothing"
    assert res.ok and res.kinks == 0, str(res)


# ---------------------------------------------------------------- special configurations
def test_identical_boxes_cost_nothing_and_are_a_minimum():
    b = np.array([[1.0, 2.0, 4.0, 3.0], [0.5, 0.5, 1.7, 2.0]])
    for loss in ALL:
        v, g = loss.value_and_grad(b, b, reduction="none", **opts(loss))
        # 1 - A / (A + eps) = eps / (A + eps) <= 1e-7 / 1.8
        np.testing.assert_allclose(v, 0.0, atol=1e-6, err_msg=loss.name)
        # ties share the derivative of max/min half and half: the gradient vanishes
        np.testing.assert_allclose(g, 0.0, atol=1e-6, err_msg=loss.name)
    v, g = iou_loss.value_and_grad(b, b, eps=0.0)
    assert float(v) == 0.0 and np.all(g == 0.0)  # exactly, without eps


def test_disjoint_boxes_by_hand():
    b = np.array([0.0, 0.0, 1.0, 1.0])
    g = np.array([3.0, 0.0, 4.0, 1.0])
    # I = 0, U = 2, enclosing box 4 x 1 (C = 4, c^2 = 17), centre offset (3, 0)
    v, grad = iou_loss.value_and_grad(b, g)
    assert float(v) == 1.0 and np.all(grad == 0.0)  # no overlap: no gradient
    np.testing.assert_allclose(giou_loss(b, g), 1.0 + 2.0 / (4.0 + EPS), rtol=1e-15)
    diou = 1.0 + 9.0 / (17.0 + EPS)
    np.testing.assert_allclose(diou_loss(b, g), diou, rtol=1e-15)
    np.testing.assert_allclose(ciou_loss(b, g), diou, rtol=1e-15)  # same aspect: v = 0
    np.testing.assert_allclose(eiou_loss(b, g), diou, rtol=1e-15)  # same sides
    # SIoU: angle 0 (gamma = 2), rho_x = 9/16, same shape
    np.testing.assert_allclose(siou_loss(b, g), 1.0 + (1.0 - np.exp(-2 * 9.0 / (16.0 + EPS))) / 2,
                               rtol=1e-15)
    np.testing.assert_allclose(wiou_loss(b, g), np.exp(9.0 / (17.0 + EPS)), rtol=1e-15)
    # corners both off by (3, 0): (9 + 9) / (10^2 + 10^2)
    np.testing.assert_allclose(mpdiou_loss(b, g, image_size=(10, 10)), 1.09, rtol=1e-15)
    assert float(focal_eiou_loss(b, g)) == 0.0  # IoU^gamma = 0
    for loss in (giou_loss, diou_loss, ciou_loss, eiou_loss, siou_loss, wiou_loss):
        assert float(loss(b, g)) > 1.0, loss.name
        # the penalty pulls the box toward the target: moving it right (x1 and x2
        # together) lowers the loss, and so does moving its right edge alone (GIoU's
        # d/dx1 is positive: it also grows the box to shrink the empty enclosed area)
        gx = loss.grad(b, g)
        assert gx[0] + gx[2] < 0 and gx[2] < 0, loss.name


def test_containment_by_hand():
    b = np.array([1.0, 1.0, 2.0, 3.0])  # 1 x 2 inside a 4 x 4 box
    g = np.array([0.0, 0.0, 4.0, 4.0])
    iou = 2.0 / (16.0 + EPS)
    np.testing.assert_allclose(iou_loss(b, g), 1 - iou, rtol=1e-15)
    # the enclosing box is the target: C = U, GIoU's penalty vanishes
    np.testing.assert_allclose(giou_loss(b, g), 1 - iou, rtol=1e-15)
    # centres (1.5, 2) and (2, 2): rho^2 = 1/4, c^2 = 32
    np.testing.assert_allclose(diou_loss(b, g), 1 - iou + 0.25 / (32 + EPS), rtol=1e-15)
    # inside, the IoU gradient grows the box: d/dx1 = -(-h - IoU*(-h + h))/U... = h/U
    np.testing.assert_allclose(iou_loss.grad(b, g), np.array([2.0, 1.0, -2.0, -1.0]) / (16 + EPS),
                               rtol=1e-12)


def test_ciou_flat_box_by_hand():
    """h = 0: torchvision's atan(w / 0) = pi/2 gives the value, but its autograd gives NaN;
    losskit's atan2 form gives the limit of the gradient."""
    b = np.array([0.0, 1.0, 2.0, 1.0])
    g = np.array([0.0, 0.0, 2.0, 2.0])
    # I = 0 (no height), U = 4, IoU = 0; same centre; v = 4/pi^2 (pi/4 - pi/2)^2 = 1/4;
    # alpha = v / (1 - 0 + v + eps) = 0.2: loss 1 + 0.2 * 0.25 = 1.05
    v, grad = ciou_loss.value_and_grad(b, g)
    np.testing.assert_allclose(v, 1.0 + 0.25 ** 2 / (1.25 + EPS), rtol=1e-14)
    # d atan2(w, h) / dh = -w / (w^2 + h^2) = -1/2: dv/dh = 2 * 4/pi^2 * (-pi/4) * (1/2)
    # = -1/pi, and d/dy1 = -dv/dh, d/dy2 = dv/dh; alpha * those
    alpha = 0.25 / (1.25 + EPS)
    np.testing.assert_allclose(grad, [0.0, alpha / np.pi, 0.0, -alpha / np.pi], atol=1e-15)
    ref_v, ref_g = _torch(ref_ciou_loss, b[None], g[None], "sum")
    np.testing.assert_allclose(v, ref_v, rtol=1e-14)
    assert np.isnan(ref_g).any()  # what the atan(w / h) form gives


DEGENERATE = {
    "flat prediction inside": ([1.0, 2.0, 3.0, 2.0], [0.0, 0.0, 4.0, 4.0]),
    "thin prediction crossing": ([2.0, -1.0, 2.0, 5.0], [0.0, 0.0, 4.0, 4.0]),
    "point prediction": ([1.0, 1.5, 1.0, 1.5], [0.0, 0.0, 4.0, 4.0]),
    "point target": ([0.0, 0.0, 4.0, 3.0], [1.0, 1.0, 1.0, 1.0]),
    "identical points": ([2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]),
    "distinct points": ([0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 3.0, 4.0]),
    "flat and thin": ([0.0, 1.0, 4.0, 1.0], [2.0, 0.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("case", list(DEGENERATE), ids=list(DEGENERATE))
def test_zero_area_boxes_are_defined(case):
    b, g = (np.array(x) for x in DEGENERATE[case])
    for loss in ALL:
        extra = {"version": 3, "iou_mean": 0.5} if loss is wiou_loss else {}
        v, grad = loss.value_and_grad(b, g, **opts(loss), **extra)
        assert np.isfinite(v) and np.all(np.isfinite(grad)), (loss.name, v, grad)
        # wherever the reference formula itself is finite, it agrees, gradient included
        rv, rg = _torch(REFS[loss.name], b[None], g[None], "sum", **ref_opts(loss), **extra)
        if np.isfinite(rv):
            np.testing.assert_allclose(v, rv, rtol=1e-12, atol=1e-15, err_msg=loss.name)
        # (the Inner-IoU reference clamps each side of the overlap at 0 and takes the
        # one-sided derivative at an empty side; losskit keeps torchvision's mask there)
        if np.all(np.isfinite(rg)) and loss is not inner_iou_loss:
            np.testing.assert_allclose(grad, rg[0], rtol=1e-12, atol=1e-15, err_msg=loss.name)


def test_identical_point_boxes_follow_torchvision():
    p = np.array([2.0, 2.0, 2.0, 2.0])
    # I = U = 0: IoU = 0 / (0 + eps) = 0, so the IoU loss is 1 (torchvision's convention)
    assert float(iou_loss(p, p)) == 1.0
    assert float(giou_loss(p, p)) == 1.0  # C = U = 0
    assert float(diou_loss(p, p)) == 1.0  # rho = 0
    assert float(ciou_loss(p, p)) == 1.0  # v = 0 with atan2(0, 0) = 0


def test_a_nan_coordinate_makes_its_box_nan_and_leaves_the_others():
    p, t = box_pairs((4,))(np.random.default_rng(5))
    for where in ("prediction", "target"):
        bad_p, bad_t = p.copy(), t.copy()
        (bad_p if where == "prediction" else bad_t)[1, 2] = np.nan
        for loss in ALL:
            v, g = loss.value_and_grad(bad_p, bad_t, reduction="none", **opts(loss))
            rv, rg = loss.value_and_grad(p, t, reduction="none", **opts(loss))
            assert np.isnan(v[1]) and np.all(np.isnan(g[1])), (loss.name, where)
            keep = [0, 2, 3]
            np.testing.assert_array_equal(v[keep], rv[keep])
            np.testing.assert_array_equal(g[keep], rg[keep])
            assert np.isnan(loss(bad_p, bad_t, **opts(loss)))


def test_batch_shapes_single_box_and_empty_batch():
    p, t = box_pairs((2, 3))(np.random.default_rng(6))
    v = giou_loss(p, t, reduction="none")
    assert v.shape == (2, 3)
    np.testing.assert_allclose(v[1, 2], giou_loss(p[1, 2], t[1, 2], reduction="none"),
                               rtol=1e-15)
    assert giou_loss(p[0, 0], t[0, 0]).shape == ()
    assert giou_loss.grad(p[0, 0], t[0, 0]).shape == (4,)
    e = np.zeros((0, 4))
    v, g = giou_loss.value_and_grad(e, e)
    assert float(v) == 0.0 and g.shape == (0, 4)


def test_inner_ratio_one_is_the_plain_loss():
    p, t = box_pairs()(np.random.default_rng(7))
    np.testing.assert_array_equal(inner_iou_loss(p, t, ratio=1.0, reduction="none"),
                                  iou_loss(p, t, reduction="none"))
    for loss in (giou_loss, diou_loss, ciou_loss, eiou_loss, siou_loss, mpdiou_loss):
        np.testing.assert_allclose(
            loss.grad(p, t, inner_ratio=1.0, **opts(loss)), loss.grad(p, t, **opts(loss)),
            rtol=1e-15, atol=1e-17, err_msg=loss.name)


def test_inner_iou_by_hand():
    b = np.array([0.0, 0.0, 2.0, 2.0])
    g = np.array([1.0, 0.0, 3.0, 2.0])
    # ratio 1.5: 3 x 3 boxes centred at (1, 1) and (2, 1): I = 2 * 3, U = 18 - 6
    np.testing.assert_allclose(inner_iou_loss(b, g, ratio=1.5), 1 - 6 / (12 + EPS), rtol=1e-15)
    # ratio 0.5: 1 x 1 boxes at x in [0.5, 1.5] and [1.5, 2.5]: they only touch
    assert float(inner_iou_loss(b, g, ratio=0.5)) == 1.0


def test_focal_gamma_zero_is_eiou_and_wiou_v2_gamma_zero_is_v1():
    p, t = box_pairs()(np.random.default_rng(8))
    for stop in (True, False):
        np.testing.assert_array_equal(
            focal_eiou_loss.grad(p, t, gamma=0.0, stop_gradient=stop), eiou_loss.grad(p, t))
        np.testing.assert_allclose(
            wiou_loss.grad(p, t, version=2, iou_mean=0.5, gamma=0.0, stop_gradient=stop),
            wiou_loss.grad(p, t, stop_gradient=stop), rtol=1e-15)


def test_wiou_v3_focusing_coefficient_by_hand():
    p, t = box_pairs()(np.random.default_rng(9))
    mean, a, d = 0.5, 1.9, 3.0
    beta = iou_loss(p, t, reduction="none") / mean  # outlier degree L_IoU* / mean
    r = beta / (d * a ** (beta - d))
    np.testing.assert_allclose(wiou_loss(p, t, version=3, iou_mean=mean, reduction="none"),
                               r * wiou_loss(p, t, reduction="none"), rtol=1e-14)


# ---------------------------------------------------------------- errors
def test_box_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^`prediction` of iou_loss must have shape "
                                         r"\(\.\.\., 4\), boxes \(x1, y1, x2, y2\) on the last "
                                         r"axis; got \(5, 3\)$"):
        iou_loss(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., 4\).*got \(\)$"):
        giou_loss(np.array(1.0), np.array(1.0))
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                                         r"\(4, 4\); got \(5, 4\)"):
        diou_loss(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(TypeError, match=r"`prediction` of `ciou_loss` must have a floating"):
        ciou_loss(np.zeros((2, 4), dtype=int), np.zeros((2, 4)))


def test_unordered_corners_are_an_error_naming_the_argument():
    good = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 3.0]])
    bad = good.copy()
    bad[1, 2] = 0.5  # x2 < x1
    with pytest.raises(ValueError, match=r"^`prediction` of giou_loss must hold boxes \(x1, y1, "
                                         r"x2, y2\) with x1 <= x2; 1 box has x2 < x1 \(the "
                                         r"first at index \(1,\): x1=1, x2=0\.5\)\. Convert"):
        giou_loss(bad, good)
    bad = good.copy()
    bad[:, 3] = -1.0  # y2 < y1 in both
    with pytest.raises(ValueError, match=r"^`target` of siou_loss must hold .* with y1 <= y2; "
                                         r"2 boxes have y2 < y1 \(the first at index \(0,\): "
                                         r"y1=0, y2=-1\)"):
        siou_loss(good, bad)
    with pytest.raises(ValueError, match=r"has x2 < x1 \(x1=1, x2=0\)"):
        iou_loss(np.array([1.0, 0.0, 0.0, 1.0]), good[0])


def test_unordered_corners_under_jit_give_nan():
    # traced values cannot raise: the deferred check makes the result NaN, never a number
    jax = pytest.importorskip("jax")
    bad = np.array([[1.0, 0.0, 0.0, 1.0]])
    good = np.array([[0.0, 0.0, 1.0, 1.0]])
    v = jax.jit(lambda a, b: iou_loss(a, b))(bad, good)
    assert np.isnan(float(v))
    assert np.isfinite(float(jax.jit(lambda a, b: iou_loss(a, b))(good * 0.5, good)))


@pytest.mark.parametrize("loss, kwargs, exc, message", [
    (iou_loss, {"eps": -1.0}, ValueError, r"^`eps` must lie in \[0, inf\]; got -1\.0$"),
    (giou_loss, {"inner_ratio": 0.0}, ValueError,
     r"^`inner_ratio` must lie in \(0, inf\]; got 0\.0$"),
    (inner_iou_loss, {"ratio": float("inf")}, ValueError, r"^`ratio` must be finite; got inf$"),
    (inner_iou_loss, {"ratio": "big"}, TypeError, r"^`ratio` must be a real number"),
    (siou_loss, {"theta": 0.5}, ValueError, r"^`theta` must lie in \[1, inf\]; got 0\.5$"),
    (focal_eiou_loss, {"gamma": -1.0}, ValueError, r"^`gamma` must lie in \[0, inf\]"),
    (ciou_loss, {"stop_gradient": "yes"}, TypeError,
     r"^`stop_gradient` must be True or False; got 'yes'$"),
    (wiou_loss, {"version": 4}, ValueError,
     r"^`version` of wiou_loss must be 1, 2 or 3; got 4$"),
    (wiou_loss, {"version": 3}, ValueError,
     r"^wiou_loss version 3 needs iou_mean=, the running mean of 1 - IoU"),
    (wiou_loss, {"version": 2, "iou_mean": 0.0}, ValueError,
     r"^`iou_mean` must lie in \(0, inf\]; got 0\.0$"),
    (wiou_loss, {"alpha": 0.0}, ValueError, r"^`alpha` must lie in \(0, inf\]"),
    (mpdiou_loss, {}, ValueError,
     r"^mpdiou_loss needs image_size=\(width, height\) of the input image"),
    (mpdiou_loss, {"image_size": (640, 480, 3)}, ValueError,
     r"^`image_size` of mpdiou_loss must be \(width, height\); got \(640, 480, 3\)$"),
    (mpdiou_loss, {"image_size": (0, 480)}, ValueError,
     r"^`image_size\[0\]` must lie in \(0, inf\]; got 0$"),
])
def test_option_errors(loss, kwargs, exc, message):
    p, t = box_pairs((2,))(np.random.default_rng(0))
    with pytest.raises(exc, match=message):
        loss(p, t, **kwargs)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"image_size"):
        mpdiou_loss(np.zeros((1, 4)), np.zeros((1, 4)), image_sz=(1, 1))


# ---------------------------------------------------------------- properties
# coordinates on a grid of 1/64: every sum and difference the losses form is exact, so a
# property fails only through the losses' own arithmetic (not through rounded inputs)
coord = st.integers(-3200, 3200).map(lambda k: k / 64)
side = st.one_of(st.just(0.0), st.integers(1, 1280).map(lambda k: k / 64))


@st.composite
def boxes(draw, n=3):
    out = []
    for _ in range(n):
        x, y, w, h = draw(coord), draw(coord), draw(side), draw(side)
        out.append([x, y, x + w, y + h])
    return np.array(out)


SETTINGS = settings(max_examples=50, deadline=None)


@SETTINGS
@given(boxes(), boxes())
def test_bounds_and_orderings(a, b):
    iou = iou_loss(a, b, reduction="none")
    giou = giou_loss(a, b, reduction="none")
    diou = diou_loss(a, b, reduction="none")
    assert np.all((iou >= 0) & (iou <= 1))
    assert np.all((giou >= 0) & (giou <= 2))
    assert np.all((diou >= 0) & (diou < 2))
    assert np.all(giou >= iou - 1e-15) and np.all(diou >= iou - 1e-15)
    # the extra penalties of CIoU and EIoU are non-negative
    assert np.all(ciou_loss(a, b, reduction="none") >= diou - 1e-15)
    assert np.all(eiou_loss(a, b, reduction="none") >= diou - 1e-15)
    assert np.all(inner_iou_loss(a, b, reduction="none") <= 1)
    # Wise-IoU v1 scales the IoU loss by exp(rho^2 / c^2) in [1, e)
    w = wiou_loss(a, b, reduction="none")
    assert np.all((w >= iou - 1e-15) & (w <= np.e * iou + 1e-15))


@SETTINGS
@given(boxes(), boxes())
def test_iou_giou_diou_are_symmetric(a, b):
    np.testing.assert_array_equal(iou_loss(a, b, reduction="none"),
                                  iou_loss(b, a, reduction="none"))
    np.testing.assert_array_equal(giou_loss(a, b, reduction="none"),
                                  giou_loss(b, a, reduction="none"))
    np.testing.assert_allclose(diou_loss(a, b, reduction="none"),
                               diou_loss(b, a, reduction="none"), rtol=1e-14)


@SETTINGS
@given(boxes(), boxes(), coord, coord)
def test_values_are_translation_invariant(a, b, sx, sy):
    s = np.array([sx, sy, sx, sy])
    for loss in (iou_loss, giou_loss, diou_loss, ciou_loss, eiou_loss, siou_loss, wiou_loss,
                 inner_iou_loss):
        np.testing.assert_allclose(loss(a + s, b + s, reduction="none"),
                                   loss(a, b, reduction="none"), rtol=1e-9, atol=1e-9,
                                   err_msg=loss.name)


# ---------------------------------------------------------------- tiny and huge coordinates
# Every configuration of every box loss: its reference (with_inner for inner_ratio, the
# stopped terms as the option says) and boxes in general position.
SCALE_CONFIGS = [
    (iou_loss, {}), (giou_loss, {}), (giou_loss, {"inner_ratio": 0.8}), (diou_loss, {}),
    (diou_loss, {"inner_ratio": 1.25}), (ciou_loss, {}),
    (ciou_loss, {"stop_gradient": False, "inner_ratio": 0.7}), (eiou_loss, {}),
    (eiou_loss, {"inner_ratio": 1.2}), (focal_eiou_loss, {}),
    (focal_eiou_loss, {"stop_gradient": False, "gamma": 2.0}), (siou_loss, {}),
    (siou_loss, {"theta": 2.0, "inner_ratio": 1.1}), (wiou_loss, {}),
    (wiou_loss, {"version": 2, "iou_mean": 0.6, "stop_gradient": False}),
    (wiou_loss, {"version": 3, "iou_mean": 0.6}), (mpdiou_loss, {"image_size": IMAGE}),
    (mpdiou_loss, {"image_size": (20.0, 10.0), "inner_ratio": 0.9}), (inner_iou_loss, {}),
    (inner_iou_loss, {"ratio": 1.3}),
]
SCALE_IDS = [loss.name.replace("_loss", "") + "".join(f"-{k}={v}" for k, v in o.items())
             for loss, o in SCALE_CONFIGS]


def _ref_of(loss, options):
    """The reference function and its keywords for a configuration."""
    kw = {k: v for k, v in options.items() if k not in ("inner_ratio", "stop_gradient")}
    if "stop_gradient" in options:
        kw["stop"] = options["stop_gradient"]
    fn = REFS[loss.name]
    if "inner_ratio" in options:
        fn = with_inner(fn, options["inner_ratio"])
    return fn, kw


def _pairs(loss, seed=21):
    # IoU^gamma has an infinite slope at IoU = 0 in autodiff: Focal-EIoU on overlapping pairs
    return box_pairs((5,), overlap=loss is focal_eiou_loss)(np.random.default_rng(seed))


def _scaled_options(options, s):
    out = dict(options)
    if "image_size" in out:  # MPDIoU's normaliser is a length: it scales with the boxes
        out["image_size"] = tuple(s * v for v in out["image_size"])
    return out


def _ref_value_grad(fn, p, t, dtype=torch.float64, **kw):
    pt = torch.tensor(p, dtype=dtype, requires_grad=True)
    tt = torch.tensor(t, dtype=dtype)
    v = fn(TorchNS(torch), pt, tt, **kw)
    v.sum().backward()
    return v.detach().numpy().astype(np.float64), pt.grad.numpy().astype(np.float64)


def _assert_close_rows(g, ref, rtol, msg="", atol=0.0):
    """Gradients agree to rtol relative to the largest entry of each box's gradient."""
    g, ref = np.asarray(g, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref), axis=-1, keepdims=True)
    assert np.all(np.abs(g - ref) <= rtol * np.abs(ref) + rtol * scale + atol), (msg, g, ref)


# powers of two: s * boxes is exact, so the scaled boxes are the same boxes
SCALES = {np.float64: [2.0 ** -531, 2.0 ** -40, 2.0 ** 40, 2.0 ** 500],   # 1.5e-160 .. 3e150
          np.float32: [2.0 ** -83, 2.0 ** -63, 2.0 ** 33, 2.0 ** 43, 2.0 ** 50, 2.0 ** 60]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss, options", SCALE_CONFIGS, ids=SCALE_IDS)
def test_every_box_loss_is_scale_invariant_at_tiny_and_huge_coordinates(loss, options, dtype):
    """With eps=0 every box loss is scale-invariant: loss(s b) = loss(b) and
    grad(s b) = grad(b) / s (MPDIoU with the image size scaled too). Checked against the
    float64 reference (torch autograd) at unit scale, for coordinates from 1e-160 to 1e150
    (float64) and 1e-25 to 1e19 (float32), where the unscaled arithmetic over- or
    underflows (fourth powers in SIoU, squared sides in CIoU)."""
    fn, kw = _ref_of(loss, options)
    p, t = _pairs(loss)
    p, t = p.astype(dtype), t.astype(dtype)  # the boxes as the dtype holds them
    ref_v, ref_g = _ref_value_grad(fn, p.astype(np.float64), t.astype(np.float64), eps=0.0,
                                   **kw)
    rtol = 1e-11 if dtype == np.float64 else 2e-4
    for s in SCALES[dtype]:
        v, g = loss.value_and_grad(p * dtype(s), t * dtype(s), reduction="none", eps=0.0,
                                   **_scaled_options(options, s))
        assert v.dtype == dtype and g.dtype == dtype
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (s, v, g)
        np.testing.assert_allclose(v, ref_v, rtol=rtol, atol=rtol, err_msg=f"scale {s:g}")
        _assert_close_rows(g.astype(np.float64) * s, ref_g, rtol, msg=f"scale {s:g}")


@pytest.mark.parametrize("exponent", [10, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("loss, options", SCALE_CONFIGS, ids=SCALE_IDS)
def test_float32_at_huge_coordinates_equals_float64(loss, options, exponent):
    """The issue's case: float32 boxes at 1e10 .. 1e15 (SIoU's gradient was NaN or wrong
    there), default eps, against the float64 reference on the same float32 boxes."""
    fn, kw = _ref_of(loss, options)
    s = 10.0 ** exponent
    p, t = _pairs(loss, seed=exponent)
    p32, t32 = (p * s).astype(np.float32), (t * s).astype(np.float32)
    opts_s = _scaled_options(options, s)
    fn_kw = dict(kw, **({"image_size": opts_s["image_size"]} if "image_size" in kw else {}))
    ref_v, ref_g = _ref_value_grad(fn, p32.astype(np.float64), t32.astype(np.float64), **fn_kw)
    v, g = loss.value_and_grad(p32, t32, reduction="none", **opts_s)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (v, g)
    np.testing.assert_allclose(v, ref_v, rtol=2e-4, atol=2e-4)
    _assert_close_rows(g.astype(np.float64) * s, ref_g * s, 2e-4)


def _torchvision_ciou(x, y, eps=1e-7):
    """torchvision.ops.complete_box_iou_loss (torchvision/ops/ciou_loss.py, v0.17) written
    out: _diou_iou_loss (torchvision/ops/diou_loss.py) with _loss_inter_union
    (torchvision/ops/_utils.py), then the aspect term v and alpha under no_grad."""
    x1, y1, x2, y2 = x.unbind(dim=-1)
    x1g, y1g, x2g, y2g = y.unbind(dim=-1)
    # _loss_inter_union
    xkis1, ykis1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xkis2, ykis2 = torch.min(x2, x2g), torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    iou = intsctk / (unionk + eps)
    # _diou_iou_loss
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p, y_p = (x2 + x1) / 2, (y2 + y1) / 2
    x_g, y_g = (x1g + x2g) / 2, (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    diou_loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    # complete_box_iou_loss
    w_pred, h_pred = x2 - x1, y2 - y1
    w_gt, h_gt = x2g - x1g, y2g - y1g
    v = (4 / (torch.pi ** 2)) * torch.pow(
        (torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou_loss + alpha * v


@pytest.mark.parametrize("dtype, s", [(np.float64, 1e-160), (np.float64, 1e-155),
                                      (np.float64, 1e-170), (np.float32, 1e-20),
                                      (np.float32, 1e-25), (np.float32, 1e-30)])
def test_ciou_on_tiny_boxes_matches_torchvision_autograd(dtype, s):
    """The issue's case: sides below 1e-155 (float64) or 1e-20 (float32) gave NaN or inf
    gradients, 1 / (w^2 + h^2) overflowing. Autograd through torchvision's formula, in the
    same dtype, stays finite (atan(w / h) never squares a side): losskit agrees with it,
    default eps included, value and gradient, wherever the reference is finite."""
    p, t = box_pairs((6,))(np.random.default_rng(31))
    p, t = (p * s).astype(dtype), (t * s).astype(dtype)
    v, g = ciou_loss.value_and_grad(p, t, reduction="none")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (v, g)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    pt = torch.tensor(p, dtype=tdt, requires_grad=True)
    ref = _torchvision_ciou(pt, torch.tensor(t, dtype=tdt))
    ref.sum().backward()
    ref_v, ref_g = ref.detach().numpy(), pt.grad.numpy()
    assert np.isfinite(ref_g).all()  # torchvision's own formula is finite at these scales
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(v, ref_v, rtol=rtol)
    _assert_close_rows(g, ref_g, rtol)
    # and the float64 reference on the same boxes agrees as well
    fv, fg = _ref_value_grad(ref_ciou_loss, p.astype(np.float64), t.astype(np.float64))
    np.testing.assert_allclose(v, fv, rtol=rtol)
    _assert_close_rows(g, fg, rtol)


@pytest.mark.parametrize("dtype, s", [(np.float64, 1e-160), (np.float32, 1e-25),
                                      (np.float32, 1e-19)])
@pytest.mark.parametrize("loss, options", SCALE_CONFIGS, ids=SCALE_IDS)
def test_tiny_boxes_with_default_eps_match_the_float64_reference(loss, options, dtype, s):
    """At sides far below sqrt(eps) the eps terms dominate the denominators; every loss stays
    finite and agrees with the float64 reference on the same boxes. The reference itself
    squares sides into subnormal numbers there (SIoU's angle, MPDIoU's corner distances),
    so it is evaluated on the boxes times a power of two k (exact) that brings them to
    about 1e-75, with every eps scaled by its dimension (an area's by k^2, SIoU's length
    by k) and MPDIoU's image size by k: the same number. CIoU's eps is also a pure number
    (in alpha), so its reference runs on the boxes as they are (its atan(w / h) form does
    not underflow)."""
    p, t = _pairs(loss, seed=41)
    p, t = (p * s).astype(dtype), (t * s).astype(dtype)
    opts_s = _scaled_options(options, s)
    v, g = loss.value_and_grad(p, t, reduction="none", **opts_s)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (v, g)
    fn, kw = _ref_of(loss, options)
    eps_d = float(dtype(EPS))  # the eps the dtype adds
    if loss is ciou_loss:
        k = 1.0
    else:
        k = 2.0 ** (-250 - round(math.log2(float(np.max(np.abs(t))))))
    pk, tk = p.astype(np.float64) * k, t.astype(np.float64) * k
    if "image_size" in kw:
        kw["image_size"] = tuple(k * v for v in opts_s["image_size"])
    if loss is siou_loss:
        ref_v, ref_g = _ref_value_grad(_siou_with(options, eps_d * k * k, eps_d * k), pk, tk)
    else:
        ref_v, ref_g = _ref_value_grad(fn, pk, tk, eps=eps_d * k * k, **kw)
    rtol, atol = (1e-9 if dtype == np.float64 else 1e-4), 0.0
    if loss is focal_eiou_loss:
        # IoU ~ I / eps ~ s^2 / eps is below the normal range of the dtype: IoU^gamma, the
        # weight of the value and gradient, is as precise as a subnormal number can be
        rtol, atol = 1e-2, float(np.finfo(dtype).smallest_normal)
    np.testing.assert_allclose(v, ref_v, rtol=rtol, atol=atol)
    _assert_close_rows(g.astype(np.float64) / k, ref_g, rtol, atol=atol / k)


def _siou_with(options, eps_area, eps_len):
    """The SIoU reference (inner_ratio and theta as in options) with its two eps apart."""
    theta, ratio = options.get("theta", 4.0), options.get("inner_ratio")

    def fn(ns, a, b):
        out = _siou_two_eps(ns, a, b, eps_area, eps_len, theta=theta)
        if ratio is not None:
            out = out + ref_iou(ns, a, b, eps_area) - ref_inner_iou(ns, a, b, ratio, eps_area)
        return out
    return fn


def _siou_two_eps(ns, p, t, eps_area, eps_len, theta=4.0):
    """ref_siou_loss with its area-valued eps (IoU, rho) and length-valued eps (omega)
    given separately, so that it can be evaluated on rescaled boxes."""
    iou = ref_iou(ns, p, t, eps_area)
    dx, dy = ref_centres(p, t)
    sigma = ns.sqrt(dx ** 2 + dy ** 2)
    angle = 1 - 2 * ns.sin(ns.arcsin(ns.abs(dy) / sigma) - ns.pi / 4) ** 2
    gamma = 2 - angle
    cw, ch = ref_enclosing(ns, p, t)
    distance = (1 - ns.exp(-gamma * dx ** 2 / (cw ** 2 + eps_area))) \
        + (1 - ns.exp(-gamma * dy ** 2 / (ch ** 2 + eps_area)))
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    w, h, wg, hg = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    omega_w = ns.abs(w - wg) / (ns.maximum(w, wg) + eps_len)
    omega_h = ns.abs(h - hg) / (ns.maximum(h, hg) + eps_len)
    # 1 - exp(-omega) as -expm1(-omega): omega ~ 1e-12 here, where 1 - exp loses 4 digits
    shape = (-ns.expm1(-omega_w)) ** theta + (-ns.expm1(-omega_h)) ** theta
    return 1 - iou + (distance + shape) / 2


@pytest.mark.parametrize("s", [2.0 ** -531, 2.0 ** -450, 2.0 ** -60, 2.0 ** 60, 2.0 ** 500])
@pytest.mark.parametrize("case", list(DEGENERATE), ids=list(DEGENERATE))
def test_zero_area_boxes_at_tiny_and_huge_scales(case, s):
    """Degenerate boxes stay defined at every scale; where every eps of a loss is an area
    (IoU, GIoU, DIoU, EIoU, Wise-IoU, MPDIoU, Inner-IoU) scaling the boxes by s and eps by
    s^2 gives the same value and gradient / s (s a power of two: exact)."""
    b, g = (np.array(x) for x in DEGENERATE[case])
    for loss in ALL:
        extra = {"version": 3, "iou_mean": 0.5} if loss is wiou_loss else {}
        o = dict(opts(loss), **extra)
        v, grad = loss.value_and_grad(b * s, g * s, **_scaled_options(o, s))
        assert np.isfinite(v) and np.all(np.isfinite(grad)), (loss.name, v, grad)
        if loss in (ciou_loss, siou_loss, focal_eiou_loss) or EPS * s * s < 1e-300:
            continue  # an eps that is not an area (alpha's, omega's), or eps s^2 subnormal
        v1, g1 = loss.value_and_grad(b, g, **o)
        v2, g2 = loss.value_and_grad(b * s, g * s, eps=EPS * s * s, **_scaled_options(o, s))
        np.testing.assert_array_equal(v2, v1, err_msg=loss.name)
        np.testing.assert_array_equal(g2 * s, g1, err_msg=loss.name)


# ---------------------------------------------------------------- backends, metadata
@pytest.mark.parametrize("loss, options", [
    (ciou_loss, {}), (wiou_loss, {"version": 3, "iou_mean": 0.7}), (focal_eiou_loss, {})],
    ids=["ciou", "wiou-v3", "focal_eiou"])
def test_default_stopped_gradients_on_every_backend(loss, options, backend):
    p, t = box_pairs()(np.random.default_rng(14))
    ref_v, ref_g = loss.value_and_grad(p, t, reduction="none", **options)
    v, g = loss.value_and_grad(backend.asarray(p), backend.asarray(t), reduction="none",
                               **options)
    assert backend.is_native(v) and backend.is_native(g)
    np.testing.assert_allclose(backend.to_numpy(v), ref_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(g), ref_g, rtol=1e-12, atol=1e-15)


def test_metadata_and_aliases():
    boxes_ = {loss.name for loss in lk.catalog(family="boxes")}
    assert boxes_ == {loss.name for loss in ALL}
    for loss in ALL:
        assert loss.family == "boxes" and loss.prediction == "boxes"
        assert loss.formula and loss.gradient_formula and len(loss.when_to_use) > 80
        assert loss.inputs == ("prediction", "target")
        assert loss.differentiable == ("prediction",)
        assert any("arXiv" in r for r in loss.references)
        assert "eps" in loss.option_defaults() and loss.option_defaults()["eps"] == 1e-7
    assert generalized_box_iou_loss is giou_loss
    assert distance_box_iou_loss is diou_loss
    assert complete_box_iou_loss is ciou_loss
    assert ciou_loss.option_defaults()["stop_gradient"] is True
    assert wiou_loss.option_defaults()["version"] == 1
    assert mpdiou_loss.option_defaults()["image_size"] is None
    assert inner_iou_loss.option_defaults()["ratio"] == 0.75
    assert "inner_ratio" in siou_loss.info()["options"]
    # a configured copy keeps its defaults
    v3 = type(wiou_loss)(version=3, iou_mean=0.5)
    p, t = box_pairs()(np.random.default_rng(15))
    np.testing.assert_array_equal(v3(p, t), wiou_loss(p, t, version=3, iou_mean=0.5))
