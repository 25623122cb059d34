r"""Multi-label losses: every example has a set of true classes among K.

* ``multilabel_margin``: PyTorch's ``multilabel_margin_loss``, a hinge between every true
  class and every other one, the true classes given as indices padded with -1;
* ``multilabel_soft_margin``: PyTorch's ``multilabel_soft_margin_loss``, the sigmoid
  binary cross-entropy of each class averaged over the K classes of an example;
* ``asymmetric_loss``: ASL (Ridnik et al.), a sigmoid cross-entropy whose negatives are
  down-weighted harder than its positives and whose easy negatives are discarded by a
  probability shift.

The first two give one value per example (shape of the prediction without its last, class
axis); ``asymmetric_loss`` is elementwise, like ``sigmoid_binary_cross_entropy``.
"""

from __future__ import annotations

import math

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, isnan, log, maximum, minimum, sign, where
from ..core.loss import Loss, Terms, register
from ..core.primitives import _sigmoid, _softplus, _weighted
from ..core.validation import check_in_range, check_numeric, check_scalar, check_same_shape
from ..kernels import pointwise, rows

__all__ = ["multilabel_margin", "multilabel_margin_loss", "multilabel_soft_margin",
           "multilabel_soft_margin_loss", "asymmetric_loss"]

_INF = float("inf")


def _class_axis(ctx, prediction):
    """K, the size of the last axis of ``prediction`` (which must have one)."""
    if prediction.ndim == 0:
        raise ValueError(f"`prediction` of {ctx.loss} needs a class axis (the last); got a "
                         f"0-d array")
    return prediction.shape[-1]


# ----------------------------------------------------------------------------- margin
class MultilabelMargin(Loss):
    r"""Multi-label hinge loss, exactly ``torch.nn.functional.multilabel_margin_loss``.

    Every true class :math:`j` should score at least the margin above every other class
    :math:`i`; each pair that does not costs its shortfall, and the sum is divided by the
    number of classes K.

    Parameters
    ----------
    prediction : floating array of shape (..., K)
        Class scores :math:`x`, the class axis last.
    target : integer array of the same shape
        Per example, the indices of its true classes first, then -1: the first -1 ends the
        list (PyTorch's layout; entries after it are not read). ``[3, 0, -1, 1]`` means
        classes 3 and 0.
    margin : float, default 1
        The margin :math:`m` (PyTorch's is fixed at 1).
    {common_parameters}

    Notes
    -----
    With :math:`Y` the list of true classes (an index listed twice counts twice, as in
    PyTorch), :math:`c_j` the number of times :math:`j` is listed and :math:`h_{ji} =
    m - x_j + x_i`:

    .. math::

        \ell = \frac{1}{K} \sum_{j \in Y} \sum_{i \notin Y} \max(0, h_{ji}), \qquad
        \frac{\partial \ell}{\partial x_j} = -\frac{c_j}{K} \sum_{i \notin Y} [h_{ji} > 0],
        \qquad \frac{\partial \ell}{\partial x_i} = \frac{1}{K} \sum_{j \in Y} c_j
        [h_{ji} > 0]

    At the kink :math:`h_{ji} = 0` the subgradient 0 is used. The loss is piecewise
    linear: its Hessian is 0 almost everywhere and undefined at the kinks, and ``hessian``
    returns zeros (a gradient-boosting objective has to supply its own curvature there,
    as XGBoost and LightGBM do for their L1 objectives with a constant Hessian of 1 and a
    refit of the leaf values). An example with no true class
    (or with every class true) costs 0. As in ``multiclass_hinge``, a pair whose
    :math:`h_{ji}` is ``inf - inf`` is no violation; a NaN score makes its example's value
    and gradient NaN (PyTorch skips NaN pairs instead).

    References
    ----------
    .. [1] PyTorch documentation, ``torch.nn.MultiLabelMarginLoss``.
    .. [2] J. Weston, C. Watkins, "Support vector machines for multi-class pattern
       recognition", ESANN 1999 (the pairwise hinge).

    Examples
    --------
    PyTorch's documented example: true classes 3 and 0 of four; the pairs (3, 1), (3, 2),
    (0, 1), (0, 2) cost 0.4 + 0.6 + 1.1 + 1.3 = 3.4, divided by K = 4.

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[0.1, 0.2, 0.4, 0.8]]); y = np.array([[3, 0, -1, 1]])
    >>> round(float(lk.multilabel_margin(x, y)), 6)
    0.85
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "multilabel_margin"
    aliases = ("multilabel_margin_loss",)
    family = "margin"
    prediction = "scores"
    target = "class indices padded with -1, same shape"
    formula = r"\ell = \frac{1}{K} \sum_{j \in Y} \sum_{i \notin Y} \max(0, m - x_j + x_i)"
    gradient_formula = (r"\frac{\partial \ell}{\partial x_j} = -\frac{1}{K} \sum_{i \notin Y}"
                        r" [m - x_j + x_i > 0],\ \frac{\partial \ell}{\partial x_i} = "
                        r"\frac{1}{K} \sum_{j \in Y} [m - x_j + x_i > 0]")
    hessian_formula = r"\frac{\partial^2 \ell}{\partial x_i \partial x_j} = 0"
    second_order = "zero"
    when_to_use = (
        "Multi-label classification (tagging, an image with several objects) when only the "
        "ranking matters: every true label should outscore every false one by the margin. "
        "For calibrated per-label probabilities use multilabel_soft_margin or sigmoid "
        "binary cross-entropy instead."
    )
    references = ("PyTorch documentation, torch.nn.MultiLabelMarginLoss",
                  "Weston and Watkins, ESANN 1999")

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        k = _class_axis(ctx, prediction)
        t = ctx.asarray(target, "target")
        if t.dtype == xp.bool or not xp.isdtype(t.dtype, "integral"):
            raise TypeError(f"`target` of multilabel_margin must hold integer class indices "
                            f"padded with -1; got dtype {t.dtype}")
        check_same_shape("prediction", prediction.shape, "target", t.shape,
                         hint="one row of class indices per row of scores")
        check_in_range(xp, "target", t, -1, k - 1,
                       hint=f"class indices in [0, {k - 1}], padded with -1")
        classes = xp.arange(k, device=ctx.device)

        def col_of(a):  # (..., K) -> (..., K, 1)
            return xp.expand_dims(a, axis=-1)

        def row_of(a):  # (..., K) -> (..., 1, K)
            return xp.expand_dims(a, axis=-2)

        # the listed entries: those before the first negative one (an upper-triangular
        # matrix counts the negatives up to each position)
        neg = xp.astype(t < 0, ctx.work)
        col, row = xp.expand_dims(classes, axis=-1), xp.expand_dims(classes, axis=0)
        upto = xp.astype(col <= row, ctx.work)
        listed = xp.matmul(neg, upto) == 0
        # (..., position, class): the class listed at each position that is read
        hits = (col_of(t) == classes) & col_of(listed)
        count = xp.sum(xp.astype(hits, ctx.work), axis=-2)  # c_j
        is_target = count > 0
        x = prediction
        h = m - col_of(x) + row_of(x)  # h_ji, (..., j, i)
        pair = col_of(is_target) & ~row_of(is_target)
        active = (h > 0) & pair  # inf - inf (NaN) is no violation
        row_nan = xp.any(xp.isnan(x), axis=-1)
        scale = 1.0 / k if k else 0.0
        per_j = xp.sum(xp.where(active, h, xp.zeros_like(h)), axis=-1)
        value = xp.sum(_weighted(xp, count, per_j), axis=-1) * scale
        value = xp.where(row_nan, xp.full_like(value, float("nan")), value)
        grad = None
        if need_grad:
            a = xp.astype(active, ctx.work)
            pull = xp.sum(a, axis=-1) * count  # x_j of a true class
            push = xp.sum(a * col_of(count), axis=-2)  # x_i of another class
            grad = (push - pull) * scale
            grad = xp.where(col_of(row_nan), xp.full_like(grad, float("nan")), grad)
        hess = None
        if ctx.wants_hessian:  # piecewise linear: 0 (NaN rows stay NaN)
            hess = xp.where(col_of(row_nan), xp.full_like(x, float("nan")), xp.zeros_like(x))
        return Terms(value, grad, expand=_last_axis(xp), hess=hess)


def _last_axis(xp):
    def expand(a):
        return xp.expand_dims(a, axis=-1)
    return expand


# ----------------------------------------------------------------------------- soft margin
class MultilabelSoftMargin(Loss):
    r"""Multi-label soft-margin loss, exactly ``torch.nn.functional.multilabel_soft_margin_loss``.

    The sigmoid binary cross-entropy of every class of an example, averaged over its K
    classes: one value per example.

    Parameters
    ----------
    prediction : floating array of shape (..., K)
        Logits :math:`x`, the class axis last.
    target : array of the same shape
        Targets in [0, 1] (n-hot labels, or soft ones).
    class_weight : array of shape (K,), optional
        Weight :math:`w_c` of each class's term (PyTorch's ``weight``); the mean still
        divides by the number of examples.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \frac{1}{K} \sum_c w_c \bigl[t_c \operatorname{softplus}(-x_c) + (1 - t_c)
            \operatorname{softplus}(x_c)\bigr], \qquad
        \frac{\partial \ell}{\partial x_c} = \frac{w_c}{K} \bigl(\sigma(x_c) - t_c\bigr),
        \qquad \frac{\partial^2 \ell}{\partial x_c^2} = \frac{w_c}{K}\,\sigma(x_c)
            \bigl(1 - \sigma(x_c)\bigr)

    With the default ``reduction="mean"`` this equals ``sigmoid_binary_cross_entropy`` of
    the same arrays (both are the mean over every element); the two differ in their
    ``"none"`` and ``"sum"`` reductions (per example here, per element there) and in the
    per-class weight.

    References
    ----------
    .. [1] PyTorch documentation, ``torch.nn.MultiLabelSoftMarginLoss``.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> x = np.array([[0.0, np.log(3.0)]]); t = np.array([[1.0, 1.0]])
    >>> bool(np.isclose(lk.multilabel_soft_margin(x, t), (np.log(2) + np.log(4 / 3)) / 2))
    True
    >>> lk.multilabel_soft_margin.grad(x, t)   # (sigmoid(x) - t) / K
    array([[-0.25 , -0.125]])
    """

    name = "multilabel_soft_margin"
    aliases = ("multilabel_soft_margin_loss",)
    family = "classification"
    prediction = "logits"
    target = "probabilities in [0, 1], same shape"
    formula = (r"\ell = -\frac{1}{K} \sum_c w_c \left[t_c \log \sigma(x_c) + (1 - t_c) "
               r"\log(1 - \sigma(x_c))\right]")
    gradient_formula = r"\frac{\partial \ell}{\partial x_c} = \frac{w_c}{K} (\sigma(x_c) - t_c)"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial x_c^2} = \frac{w_c}{K} \sigma(x_c) "
                       r"(1 - \sigma(x_c))")
    second_order = "diagonal"
    when_to_use = (
        "Multi-label classification from logits with one loss value per example (PyTorch's "
        "MultiLabelSoftMarginLoss): independent yes/no per class, averaged over the classes "
        "so that examples weigh the same whatever their number of classes."
    )
    references = ("PyTorch documentation, torch.nn.MultiLabelSoftMarginLoss",)

    def _compute(self, ctx, prediction, target, *, need_grad, class_weight=None):
        xp = ctx.xp
        k = _class_axis(ctx, prediction)
        t = self._probability_target(ctx, prediction, target)
        w = None
        if class_weight is not None:
            w = ctx.asarray(class_weight, "class_weight")
            check_numeric(xp, "class_weight", w, bool_ok=False)
            if tuple(w.shape) != (k,):
                raise ValueError(f"`class_weight` must have one weight per class: shape "
                                 f"({k},) (the size of the last axis of `prediction`); got "
                                 f"{tuple(w.shape)}")
            w = xp.astype(w, ctx.work)
            check_in_range(xp, "class_weight", w, 0.0, _INF,
                           hint="weights must be non-negative")
        x = prediction
        per_class = (_weighted(xp, t, _softplus(xp, -x))
                     + _weighted(xp, 1.0 - t, _softplus(xp, x)))
        if w is not None:
            per_class = _weighted(xp, w, per_class)
        scale = 1.0 / k if k else 0.0
        value = xp.sum(per_class, axis=-1) * scale
        grad = None
        if need_grad:
            grad = (_sigmoid(xp, x) - t) * scale
            if w is not None:
                grad = w * grad
        hess = None
        if ctx.wants_hessian:  # sigma (1 - sigma) = e / (1 + e)^2, e = exp(-|x|): no overflow
            e = xp.exp(-xp.abs(x))
            hess = (e / ((1.0 + e) * (1.0 + e))) * scale
            if w is not None:
                hess = w * hess
        return Terms(value, grad, expand=_last_axis(xp), hess=hess)


# ----------------------------------------------------------------------------- ASL
# the elementwise math of asymmetric_loss, stated once (losskit.core.formula): the generic
# kernel evaluates it on any array library, losskit.kernels.pointwise compiles it
def _asymmetric(x, t, gamma_pos, gamma_neg, clip, eps):
    e = exp(0.0 - abs(x))
    big = 1.0 / (1.0 + e)
    small = e / (1.0 + e)
    p = where(x >= 0, big, small)  # sigmoid(x)
    r = where(x >= 0, small, big)  # 1 - p, to full relative precision
    # probability shifting: the negative part sees q = 1 - p_m = min(1 - p + clip, 1)
    q = minimum(r + clip, 1.0)
    pc = maximum(p, eps)
    qc = maximum(q, eps)
    s = 1.0 - t
    ce = 0.0 - (t * log(pc) + s * log(qc))
    # d ce / dx through the clamps: d log p = 1 - p, d q = -p (1 - p) while r + clip < 1
    dq = where(r + clip < 1.0, 0.0 - p * r, 0.0)
    dce = 0.0 - (t * where(p > eps, r, 0.0) + s * where(q > eps, dq / qc, 0.0))
    # the focusing weight u^g, u = 1 - p_t, with the exponent of the label
    u = t * r + s * maximum(p - clip, 0.0)
    du = 0.0 - (t * (p * r) + s * dq)
    g = t * gamma_pos + s * gamma_neg
    pos = u > 0
    lu = log(where(pos, u, 1.0))
    w = where(pos, exp(g * lu), where(g == 0, 1.0, 0.0 * g))  # 0^0 = 1
    dw = where(du == 0, 0.0, g * exp((g - 1.0) * lu) * du)
    return w * ce, w * dce + dw * ce


def _asymmetric_hessian(x, t, gamma_pos, gamma_neg, clip, eps):
    """d2 value / dx2 of asymmetric_loss: (u^g)'' ce + 2 (u^g)' ce' + u^g ce'', with the
    powers of u taken in log space together with the derivatives of u that vanish with it
    (finite for every gamma >= 0), the clamps' indicators as in the gradient."""
    e = exp(0.0 - abs(x))
    big = 1.0 / (1.0 + e)
    small = e / (1.0 + e)
    p = where(x >= 0, big, small)  # sigmoid(x)
    r = where(x >= 0, small, big)  # 1 - p
    v = p * r  # dp/dx; dv/dx = v (1 - 2p)
    bend = v * (r - p)
    q = minimum(r + clip, 1.0)
    shift = r + clip < 1.0  # the probability shift is active (p > clip): dq/dx = -v
    pc = maximum(p, eps)
    qc = maximum(q, eps)
    in_q = q > eps
    s = 1.0 - t
    ce = 0.0 - (t * log(pc) + s * log(qc))
    dq = where(shift, 0.0 - v, 0.0)
    vq = v / where(in_q, qc, 1.0)
    dce = 0.0 - (t * where(p > eps, r, 0.0) + s * where(in_q, dq / where(in_q, qc, 1.0), 0.0))
    # d/dx of -log q = -q''/q + (q'/q)^2 with q' = -v, q'' = -v (1 - 2p)
    d2ce = t * where(p > eps, v, 0.0) + s * where(shift & in_q, (r - p) * vq + vq * vq, 0.0)
    u = t * r + s * maximum(p - clip, 0.0)
    du = 0.0 - (t * v + s * dq)
    d2u = where(shift, s, 0.0 * s) * bend - t * bend
    g = t * gamma_pos + s * gamma_neg
    pos = u > 0
    lu = log(where(pos, u, 1.0))
    w = where(pos, exp(g * lu), where(g == 0, 1.0, 0.0 * g))  # 0^0 = 1
    dw = where(du == 0, 0.0, g * exp((g - 1.0) * lu) * du)
    # g (g-1) u^(g-2) du^2 + g u^(g-1) d2u, each power with its factor in log space
    k1 = g * (g - 1.0)
    use1 = pos & (du != 0) & (k1 != 0)
    ldu = log(where(use1, abs(du), 1.0))
    t1 = where(use1, k1 * exp((g - 2.0) * lu + 2.0 * ldu), 0.0)
    use2 = pos & (d2u != 0) & (g != 0)
    ld2u = log(where(use2, abs(d2u), 1.0))
    t2 = where(use2, g * sign(d2u) * exp((g - 1.0) * lu + ld2u), 0.0)
    d2w = t1 + t2
    h = where(d2w == 0, 0.0, d2w * ce) + 2.0 * (dw * dce) + w * d2ce
    return where(isnan(x), x, h)


def _asymmetric_ok(x, t, gamma_pos, gamma_neg, clip, eps):
    return ((t >= 0.0) & (t <= 1.0)) | isnan(t)


ASYMMETRIC = Formula(_asymmetric, hessian=_asymmetric_hessian)
ASYMMETRIC_OK = Formula(_asymmetric_ok)


def _finite(name, value, *, lo, hi=None, hi_open=False):
    v = check_scalar(name, value, lo=lo, hi=hi, hi_open=hi_open)
    if math.isinf(v):
        raise ValueError(f"`{name}` must be finite; got {value!r}")
    return v


class AsymmetricLoss(Loss):
    r"""Asymmetric loss (ASL) for multi-label classification, elementwise on logits.

    The loss of Ridnik et al. [1]_: a sigmoid cross-entropy whose positives and negatives
    are focused separately, :math:`(1 - p)^{\gamma_+}` on a positive and
    :math:`p_m^{\gamma_-}` on a negative (:math:`\gamma_- > \gamma_+` turns the many easy
    negatives of a multi-label problem down), and whose negatives see the shifted
    probability :math:`p_m = \max(p - c, 0)`: a negative predicted below the clip
    :math:`c` costs nothing at all. The official implementation is ``AsymmetricLoss`` of
    ``src/loss_functions/losses.py`` in the Alibaba-MIIL/ASL repository; its total is
    ``reduction="sum"`` here.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Logits :math:`x`; :math:`p = \sigma(x)`.
    target : array of the same shape
        Targets in [0, 1] (n-hot labels; a soft target mixes the two parts, with the
        official code's interpolated :math:`p_t` and exponent).
    gamma_pos : float >= 0, default 1
        Focusing exponent :math:`\gamma_+` of the positives.
    gamma_neg : float >= 0, default 4
        Focusing exponent :math:`\gamma_-` of the negatives.
    clip : float in [0, 1), default 0.05
        The probability margin :math:`c` of the negatives; 0 disables the shift.
    eps : float in [0, 1), default 1e-8
        The probabilities in the logs are clamped below at it, as in the official code.
    {common_parameters}

    Notes
    -----
    With :math:`p = \sigma(x)`, :math:`q = \min(1 - p + c, 1) = 1 - p_m`,
    :math:`u = t(1 - p) + (1 - t)\,p_m` (that is :math:`1 - p_t`),
    :math:`\gamma = t \gamma_+ + (1 - t) \gamma_-` and the clamped cross-entropy
    :math:`c_e = -t \log \max(p, \epsilon) - (1 - t) \log \max(q, \epsilon)`:

    .. math::

        \ell = u^{\gamma} c_e, \qquad
        \frac{\partial \ell}{\partial x} = u^{\gamma} \frac{\partial c_e}{\partial x}
            + \gamma\, u^{\gamma - 1} \frac{\partial u}{\partial x}\, c_e

    with :math:`\partial u / \partial x = -t p (1 - p) + (1 - t)\,p (1 - p)\,[p > c]` and
    :math:`\partial c_e / \partial x = -t (1 - p)[p > \epsilon] + (1 - t)\,\frac{p (1 -
    p)}{q} [p > c][q > \epsilon]`. For a hard label this is :math:`(1-p)^{\gamma_+}
    (-\log p)` on a positive and :math:`p_m^{\gamma_-} (-\log(1 - p_m))` on a negative.
    With :math:`v = p (1 - p)` the second derivative is

    .. math::

        \frac{\partial^2 \ell}{\partial x^2} = \bigl(\gamma (\gamma - 1) u^{\gamma - 2}
            u'^2 + \gamma u^{\gamma - 1} u''\bigr) c_e
            + 2 \gamma u^{\gamma - 1} u' c_e' + u^{\gamma} c_e''

    with :math:`u'' = -t v (1 - 2p) + (1 - t)\,v (1 - 2p)\,[p > c]` and
    :math:`c_e'' = t v [p > \epsilon] + (1 - t) \bigl(\frac{v (1 - 2p)}{q} +
    \frac{v^2}{q^2}\bigr)[p > c][q > \epsilon]`; each power of :math:`u` is formed in log
    space with the derivative of :math:`u` it multiplies, so it is finite for every
    :math:`\gamma \ge 0` and every logit. A negative below the clip has second derivative
    0; just above it, :math:`u^{\gamma_- - 2}` makes it unbounded for :math:`0 < \gamma_- <
    2`, :math:`\gamma_- \ne 1` (the loss is not twice differentiable at :math:`p = c`).

    The gradient is the exact derivative of the loss, the focusing weight included. The
    official code can detach the weight (``disable_torch_grad_focal_loss=True``, whose
    gradient drops the second term); losskit's gradient equals the official one with that
    option off. :math:`0^0 = 1`: with :math:`\gamma = 0` the weight is 1.

    References
    ----------
    .. [1] T. Ridnik, E. Ben-Baruch, N. Zamir, A. Noy, I. Friedman, M. Protter,
       L. Zelnik-Manor, "Asymmetric Loss For Multi-Label Classification", ICCV 2021,
       arXiv:2009.14119.

    Examples
    --------
    A negative predicted at :math:`p = 0.5` with the clip 0.05: :math:`p_m = 0.45`, it
    costs :math:`0.45^4 \cdot (-\ln 0.55)`; one predicted below the clip costs 0.

    >>> import numpy as np, losskit as lk
    >>> x = np.array([0.0, -4.0]); t = np.array([0.0, 0.0])
    >>> v = lk.asymmetric_loss(x, t, reduction="none")
    >>> bool(np.isclose(v[0], 0.45 ** 4 * -np.log(0.55))), float(v[1])
    (True, 0.0)
    """

    name = "asymmetric_loss"
    family = "classification"
    prediction = "logits"
    target = "probabilities in [0, 1], same shape"
    formula = (r"\ell = -t (1 - p)^{\gamma_+} \log p - (1 - t)\, p_m^{\gamma_-} "
               r"\log(1 - p_m),\ p = \sigma(x),\ p_m = \max(p - c, 0)")
    gradient_formula = (r"\frac{\partial \ell}{\partial x} = u^{\gamma} \frac{\partial c_e}"
                        r"{\partial x} + \gamma u^{\gamma - 1} \frac{\partial u}{\partial x}"
                        r" c_e,\ u = 1 - p_t")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial x^2} = \left(\gamma (\gamma - 1) "
                       r"u^{\gamma - 2} u'^2 + \gamma u^{\gamma - 1} u''\right) c_e + 2 \gamma "
                       r"u^{\gamma - 1} u' c_e' + u^{\gamma} c_e''")
    second_order = "diagonal"
    when_to_use = (
        "Multi-label classification with many labels per image and few positives each (MS "
        "COCO, Open Images, NUS-WIDE): the negatives, easy and numerous, are focused "
        "harder than the positives and those below the clip are discarded, which "
        "rebalances the gradient towards the positives better than the symmetric focal "
        "loss."
    )
    references = ("Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021, "
                  "arXiv:2009.14119",)

    def _compute(self, ctx, prediction, target, *, need_grad, gamma_pos=1.0, gamma_neg=4.0,
                 clip=0.05, eps=1e-8):
        gp = _finite("gamma_pos", gamma_pos, lo=0.0)
        gn = _finite("gamma_neg", gamma_neg, lo=0.0)
        c = _finite("clip", clip, lo=0.0, hi=1.0, hi_open=True)
        e = _finite("eps", eps, lo=0.0, hi=1.0, hi_open=True)
        t = self._probability_target(ctx, prediction, target)
        value, grad = ASYMMETRIC.on(ctx.xp)(prediction, t, gp, gn, c, e)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(ASYMMETRIC, prediction, t, gp, gn, c, e))


multilabel_margin = multilabel_margin_loss = register(MultilabelMargin())
multilabel_soft_margin = multilabel_soft_margin_loss = register(MultilabelSoftMargin())
asymmetric_loss = register(AsymmetricLoss())

# fused NumPy kernel of asymmetric_loss (losskit.kernels.pointwise)
register_fast_path(AsymmetricLoss, pointwise.fast_path(
    ASYMMETRIC, {"gamma_pos": pointwise.number(0.0), "gamma_neg": pointwise.number(0.0),
                 "clip": pointwise.number(0.0, 1.0, hi_open=True),
                 "eps": pointwise.number(0.0, 1.0, hi_open=True)},
    check=ASYMMETRIC_OK))
register_fast_path(MultilabelMargin, rows.multilabel_margin)
register_fast_path(MultilabelSoftMargin, rows.multilabel_soft_margin)
