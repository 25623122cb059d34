r"""Margin losses: functions of how far the correct score beats the others.

* binary, labels -1/+1, elementwise: ``hinge``, ``squared_hinge``, ``perceptron`` (the
  hinge at margin 0), ``soft_margin`` (the logistic loss :math:`\log(1 + e^{-t s})`) and
  ``hinge_embedding`` (PyTorch's loss of distances: the score itself for similar pairs,
  a hinge for dissimilar ones);
* multi-class, one row of scores per example: ``multiclass_hinge`` (Weston–Watkins,
  Crammer–Singer and Keras's categorical hinge, power 1 or 2) and
  ``multiclass_perceptron``.

The hinge only cares whether the correct score beats the others by a margin; past the
margin an example costs nothing and gives no gradient (contrast softmax cross-entropy,
which keeps scoring and normalising every class).
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, isnan, log1p_unit, maximum, where
from ..core.loss import Loss, Terms, register
from ..kernels import pointwise
from ..kernels import rows
from .cross_entropy import class_target, normalize_axis
from ..core.arrays import device_of
from ..core.primitives import _weighted
from ..core.validation import (check_choice, check_in_range, check_integer, check_numeric,
                               check_scalar, check_two_values)

__all__ = ["hinge", "multiclass_hinge", "squared_hinge", "perceptron", "soft_margin",
           "soft_margin_loss", "hinge_embedding", "hinge_embedding_loss",
           "multiclass_perceptron"]

_INF = float("inf")


# the pointwise math of hinge and squared_hinge, stated once (losskit.core.formula): the
# generic kernels evaluate it on any array library, losskit.kernels.pointwise compiles it
def _hinge(s, t, margin):
    slack = margin - t * s
    active = (slack > 0) | isnan(slack)  # NaN propagates to value and gradient
    return where(active, slack, 0.0), where(isnan(slack), slack, where(active, -t, 0.0))


def _hinge_hessian(s, t, margin):
    slack = margin - t * s
    return where(isnan(slack), slack, 0.0 * t)  # 0 off the kink (inf scores included)


def _squared_hinge(s, t, margin):
    slack = margin - t * s
    active = where((slack > 0) | isnan(slack), slack, 0.0)  # max(0, slack), NaN kept
    return active * active, 0.0 - 2.0 * (t * active)  # 0.0 -: no -0 entries


def _squared_hinge_hessian(s, t, margin):
    slack = margin - t * s
    return where(isnan(slack), slack, where(slack > 0, 2.0 * (t * t), 0.0))


def _signed_label_ok(s, t, margin):
    return (t == 1.0) | (t == -1.0)


def _perceptron(s, t):
    slack = 0.0 - t * s
    active = (slack > 0) | isnan(slack)  # NaN propagates to value and gradient
    return where(active, slack, 0.0), where(isnan(slack), slack, where(active, -t, 0.0))


def _perceptron_hessian(s, t):
    slack = 0.0 - t * s
    return where(isnan(slack), slack, 0.0 * t)


def _soft_margin(s, t):
    u = 0.0 - t * s  # the loss is softplus(u), its derivative in s is -t sigmoid(u)
    e = exp(0.0 - abs(u))  # in (0, 1]: no overflow on either side
    value = maximum(u, 0.0) + log1p_unit(e)
    sig = where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return value, 0.0 - t * sig


def _soft_margin_hessian(s, t):
    u = 0.0 - t * s
    e = exp(0.0 - abs(u))  # sigma(u) (1 - sigma(u)) = e / (1 + e)^2: no overflow
    d = 1.0 + e
    return (t * t) * (e / (d * d))


def _hinge_embedding(x, t, margin):
    slack = margin - x
    active = (slack > 0) | isnan(slack)
    similar = t > 0
    value = where(similar, x, where(active, slack, 0.0))
    # d/dx: 1 (= t) for a similar pair, -1 (= t) inside the margin for a dissimilar one
    grad = where(isnan(x), x, where(similar | active, t, 0.0))
    return value, grad


def _hinge_embedding_hessian(x, t, margin):
    return where(isnan(x), x, 0.0 * t)  # linear pieces: 0 off the kink x = m


def _signed_label_ok0(s, t):
    return (t == 1.0) | (t == -1.0)


HINGE = Formula(_hinge, hessian=_hinge_hessian)
SQUARED_HINGE = Formula(_squared_hinge, hessian=_squared_hinge_hessian)
SIGNED_LABEL_OK = Formula(_signed_label_ok)
PERCEPTRON = Formula(_perceptron, hessian=_perceptron_hessian)
SOFT_MARGIN = Formula(_soft_margin, hessian=_soft_margin_hessian)
HINGE_EMBEDDING = Formula(_hinge_embedding, hessian=_hinge_embedding_hessian)
SIGNED_LABEL_OK0 = Formula(_signed_label_ok0)


def _signed_labels(ctx, t):
    """``t`` after checking that it holds labels -1 or +1 only."""
    check_two_values(ctx.xp, "target", t, (1.0, -1.0), loss=ctx.loss,
                     meaning="labels -1 or +1", hint="Map 0/1 labels with 2 * t - 1")
    return t


class Hinge(Loss):
    r"""Binary hinge loss :math:`\ell = \max(0, m - t\,s)` for targets :math:`t \in \{-1, +1\}`.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Real-valued scores :math:`s` (not probabilities).
    target : array of the same shape
        Labels -1 or +1 (map 0/1 labels with ``2 * t - 1``).
    margin : float, default 1
        The margin :math:`m` the correct sign must be beaten by.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \max(0, m - t s), \qquad
        \frac{\partial \ell}{\partial s} = \begin{cases} -t & t s < m \\ 0 & t s \ge m \end{cases},
        \qquad \frac{\partial^2 \ell}{\partial s^2} = 0 \quad (t s \ne m)

    At the kink :math:`t s = m` the subgradient 0 is used. The Hessian is 0 almost
    everywhere and undefined at the kink; ``hessian`` returns zeros. A Newton or
    gradient-boosting step needs a curvature of its own there: as XGBoost's
    ``reg:absoluteerror`` and LightGBM's ``l1`` do for their piecewise-linear losses,
    take a Hessian of 1 (times the sample weight) and refit each leaf's value afterwards.

    References
    ----------
    .. [1] C. Cortes, V. Vapnik, "Support-vector networks", Machine Learning 20, 1995,
       doi:10.1007/BF00994018.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> s = np.array([2.0, 0.5, -1.0]); t = np.array([1.0, 1.0, 1.0])
    >>> lk.hinge(s, t, reduction="none")
    array([0. , 0.5, 2. ])
    >>> lk.hinge.grad(s, t, reduction="sum")
    array([ 0., -1., -1.])
    """

    name = "hinge"
    family = "margin"
    prediction = "scores"
    target = "labels -1/+1, same shape"
    formula = r"\ell = \max(0, m - t s)"
    gradient_formula = r"\frac{\partial \ell}{\partial s} = -t\,[t s < m]"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial s^2} = 0 \quad (t s \ne m)"
    second_order = "zero"
    when_to_use = (
        "Maximum-margin binary classification (linear SVMs): examples classified correctly "
        "by more than the margin cost nothing, so the solution depends only on the hard "
        "examples near the boundary. Gives scores, not calibrated probabilities."
    )
    references = ("Cortes and Vapnik, Support-vector networks, 1995, doi:10.1007/BF00994018",)

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        t = _signed_labels(ctx, self._real_target(ctx, prediction, target))
        value, grad = HINGE.on(xp)(prediction, t, m)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(HINGE, prediction, t, m))


_VARIANTS = ("weston_watkins", "crammer_singer", "categorical")


def _power(p) -> int:
    """The exponent of the violations: 1 or 2 (PyTorch's ``p`` of ``multi_margin_loss``)."""
    v = check_integer("p", p, loss="multiclass_hinge")
    if v not in (1, 2):
        raise ValueError(f"`p` of multiclass_hinge must be 1 or 2; got {v}")
    return v


def _powered(xp, active, violation, p, zero):
    """``max(0, v)^p`` where active (0 elsewhere) and its derivative ``p max(0, v)^(p-1)``."""
    v = xp.where(active, violation, zero)
    if p == 1:
        return v, xp.where(active, xp.ones_like(v), zero)
    return v * v, 2.0 * v


def _class_weights(ctx, class_weight, k):
    """``class_weight`` as a (K,) array of the compute dtype, checked."""
    xp = ctx.xp
    cw = ctx.asarray(class_weight, "class_weight")
    check_numeric(xp, "class_weight", cw, bool_ok=False)
    if tuple(cw.shape) != (k,):
        raise ValueError(f"`class_weight` must have one weight per class: shape ({k},) (the "
                         f"size of the class axis of `prediction`); got {tuple(cw.shape)}")
    cw = xp.astype(cw, ctx.work)
    check_in_range(xp, "class_weight", cw, 0.0, _INF, hint="weights must be non-negative")
    return cw


def _top(xp, x, axis, exclude=None):
    """Row maxima of ``x`` (``exclude``'s entries left out, keepdims) and the (sub)gradient
    of the maximum: 1/n on each of the n tied maximal entries (``jax.grad``'s choice)."""
    if exclude is not None:
        x = xp.where(exclude, xp.full_like(x, -_INF), x)
    if x.shape[axis] == 0:  # no class: a max of nothing, -inf
        shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
        top = xp.full(shape, -_INF, dtype=x.dtype, device=device_of(x))
    else:
        top = xp.max(x, axis=axis, keepdims=True)
    at = x == top
    if exclude is not None:
        at = at & ~exclude
    at = xp.astype(at, x.dtype)
    n = xp.sum(at, axis=axis, keepdims=True)
    return top, at / xp.where(n > 0, n, xp.ones_like(n))


class MulticlassHinge(Loss):
    r"""Multi-class hinge (SVM) loss: Weston–Watkins, Crammer–Singer or Keras's categorical hinge.

    ``variant="weston_watkins"`` (the default, CS231n's multiclass SVM loss):
    :math:`\ell = \sum_{j \ne y} \max(0, s_j - s_y + m)^p`, every wrong class whose score
    comes within the margin :math:`m` of the correct one costs its violation.
    ``variant="crammer_singer"``: only the largest wrong score counts,
    :math:`\ell = \max(0, m + \max_{j \ne y} s_j - s_y)^p` (Optax's
    ``multiclass_hinge_loss``). ``variant="categorical"``: Keras's ``CategoricalHinge``,
    for one-hot or soft targets :math:`t` (integer labels are taken as one-hot),
    :math:`\ell = \max\bigl(0, m + \max_j (1 - t_j) s_j - \sum_j t_j s_j\bigr)^p`; a row
    with no true class (all zeros) costs :math:`\max(0, m + \max_j s_j)^p`.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Class scores; the class axis is ``axis``.
    target : integer array, or floating array like ``prediction``
        Class labels (the prediction's shape without the class axis). With
        ``variant="categorical"`` also one-hot or soft targets in [0, 1] of the
        prediction's shape.
    margin : float, default 1
    p : {1, 2}, default 1
        Power of each violation: 2 squares them (PyTorch's ``p=2``, the L2-SVM).
    variant : {"weston_watkins", "crammer_singer", "categorical"}, default "weston_watkins"
    axis : int, default -1
    class_weight : array of shape (K,), optional
        Multiplies each example's loss by the weight of its true class (the mean then divides
        by the sum of those weights). For probability targets (``"categorical"``) the
        factor is :math:`\sum_c w_c t_c` and the mean divides by the number of examples,
        as for ``softmax_cross_entropy``.
    ignore_index : int, optional
        Labels equal to it contribute nothing.
    {common_parameters}

    Notes
    -----
    Weston–Watkins, with :math:`v_j = s_j - s_y + m` and :math:`a_j = [v_j > 0]` for
    :math:`j \ne y`:

    .. math::

        \ell = \sum_{j \ne y} a_j v_j^p, \qquad
        \frac{\partial \ell}{\partial s_j} = p\,a_j v_j^{p-1} \;(j \ne y), \qquad
        \frac{\partial \ell}{\partial s_y} = -\sum_{j \ne y} p\,a_j v_j^{p-1}

    Crammer–Singer and categorical, with :math:`v = m + \max_j u_j - \sum_j t_j s_j`,
    :math:`u_j = (1 - t_j) s_j` (Crammer–Singer: :math:`t = e_y` and the max over
    :math:`j \ne y` only):

    .. math::

        \ell = \max(0, v)^p, \qquad
        \frac{\partial \ell}{\partial s_j} = p \max(0, v)^{p-1}
            \bigl((1 - t_j)\,\pi_j - t_j\bigr)

    where :math:`\pi` puts weight 1 on the maximising entry (shared equally among tied
    maxima, as ``jax.grad`` of a max does). At the kink :math:`v = 0` the subgradient 0
    is used.

    Second order: with ``p=1`` every variant is piecewise linear, so its Hessian is 0
    almost everywhere and undefined at the kinks; ``hessian`` returns zeros (gradient
    boosting then needs a curvature of its own, as XGBoost's ``reg:absoluteerror`` and
    LightGBM's ``l1`` take a Hessian of 1 and refit the leaf values). With ``p=2`` the
    violation couples the true class's score with the others: for a violation :math:`v`
    with :math:`c = \partial v / \partial s` (:math:`e_j - e_y` for Weston–Watkins,
    :math:`\pi - e_y` for Crammer–Singer, :math:`(1 - t) \odot \pi - t` for the
    categorical hinge) the Hessian is :math:`2\,[v > 0]\, c c^\top`, summed over
    Weston–Watkins's violations:

    .. math::

        \frac{\partial^2 \ell}{\partial s \, \partial s^\top} =
            2 \sum_{j \ne y} a_j (e_j - e_y)(e_j - e_y)^\top \quad (p = 2)

    ``hessian`` gives its diagonal and ``hvp`` the exact product (:math:`\pi` held fixed,
    as in the gradient).

    Infinite scores follow PyTorch's ``multi_margin_loss``: a ``-inf`` score on a wrong
    class costs nothing (a masked class), ``+inf`` there costs ``inf``, and a violation
    ``inf - inf`` (:math:`s_j = s_y = \pm\infty`) counts as no violation; a ``-inf``
    correct score against finite ones costs ``inf``. A NaN score makes its row's value and
    gradient NaN.

    Conventions differ: PyTorch's ``multi_margin_loss`` divides each example's sum by K
    (``multiclass_hinge(...) / K`` reproduces it, ``p=2`` included) and weights the mean by
    N, not by the class weights; Optax's ``multiclass_hinge_loss`` is
    ``variant="crammer_singer"``; Keras's ``CategoricalHinge`` is ``variant="categorical"``
    (with one-hot labels its masked true class enters the max as 0, so it differs from
    Crammer–Singer where every wrong score is below 0).

    References
    ----------
    .. [1] J. Weston, C. Watkins, "Support vector machines for multi-class pattern
       recognition", ESANN 1999.
    .. [2] K. Crammer, Y. Singer, "On the algorithmic implementation of multiclass
       kernel-based vector machines", JMLR 2, 2001.
    .. [3] Stanford CS231n notes, "Linear classification: Multiclass SVM loss".

    Examples
    --------
    CS231n's worked example: scores (13, -7, 11), correct class 0, margin 10 gives 8;
    Crammer–Singer counts the largest violation only, here the same 8.

    >>> import numpy as np, losskit as lk
    >>> s = np.array([[13.0, -7.0, 11.0]])
    >>> float(lk.multiclass_hinge(s, np.array([0]), margin=10.0))
    8.0
    >>> float(lk.multiclass_hinge(s, np.array([1]), variant="crammer_singer"))   # 1 + 13 + 7
    21.0
    >>> float(lk.multiclass_hinge(s, np.array([[0.0, 0.0, 0.0]]), variant="categorical"))
    14.0
    """

    name = "multiclass_hinge"
    family = "margin"
    prediction = "scores"
    target = "integer labels (categorical: also class probabilities)"
    formula = r"\ell = \sum_{j \ne y} \max(0, s_j - s_y + m)^p"
    gradient_formula = (r"\frac{\partial \ell}{\partial s_j} = p\,[v_j > 0]\, v_j^{p-1},\ "
                        r"\frac{\partial \ell}{\partial s_y} = -\sum_{j \ne y} "
                        r"p\,[v_j > 0]\, v_j^{p-1},\ v_j = s_j - s_y + m")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial s \partial s^\top} = 2 \sum_{j \ne y} "
                       r"[v_j > 0] (e_j - e_y)(e_j - e_y)^\top\ (p = 2),\ 0\ (p = 1)")
    second_order = "dense"
    when_to_use = (
        "Multi-class classification when only the ranking of the correct class matters (the "
        "SVM view): once the correct score beats the rest by the margin, the example stops "
        "contributing. Softmax cross-entropy, by contrast, keeps pushing probabilities and "
        "gives calibrated outputs."
    )
    references = ("Weston and Watkins, ESANN 1999",
                  "Crammer and Singer, JMLR 2, 2001",
                  "Stanford CS231n, Multiclass SVM loss")

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0, p=1,
                 variant="weston_watkins", axis=-1, class_weight=None, ignore_index=None):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        power = _power(p)
        check_choice("variant", variant, _VARIANTS)
        if variant == "categorical":
            return self._categorical(ctx, prediction, target, need_grad, m, power, axis,
                                     class_weight, ignore_index)
        t = ctx.asarray(target, "target")
        if xp.isdtype(t.dtype, "real floating"):
            raise TypeError(f"`target` of multiclass_hinge must be integer class labels with "
                            f"variant={variant!r}; got dtype {t.dtype}; one-hot or soft "
                            f"targets take variant='categorical' (Keras's CategoricalHinge)")
        ct = class_target(ctx, prediction, t, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, soft_ok=False)
        zero = xp.zeros_like(prediction)
        # s_y gathered (not onehot * s: 0 * (-inf) would make the row NaN); an ignored row
        # picks class 0, and its weight 0 removes it below
        hit = ct.hit()
        correct = ct.pick(xp, prediction)
        # a NaN score propagates to the value and gradient of its row; a NaN violation from
        # inf - inf (s_j = s_y = -inf, or both +inf) is no violation, as in PyTorch's
        # multi_margin_loss (its `z > 0` test is false for NaN)
        nan = xp.isnan(prediction) | xp.isnan(correct)
        row_nan = xp.any(nan, axis=ct.axis, keepdims=True)
        if variant == "weston_watkins":
            violation = prediction - correct + m
            active = ((violation > 0) | nan) & ~hit
            v, d = _powered(xp, active, violation, power, zero)
            per_example = xp.sum(v, axis=ct.axis)
            g = None
            if need_grad:
                g = d - xp.where(hit, xp.sum(d, axis=ct.axis, keepdims=True), zero)
            h = hv = None
            if ctx.wants_hessian and power == 2:
                # sum over the active j of 2 (e_j - e_y)(e_j - e_y)^T
                a2 = xp.where(active, xp.full_like(prediction, 2.0), zero)
                h = a2 + xp.where(hit, xp.sum(a2, axis=ct.axis, keepdims=True), zero)
                if ctx.vector is not None:
                    hv = a2 * (ctx.vector - ct.pick(xp, ctx.vector))
                    hv = hv - xp.where(hit, xp.sum(hv, axis=ct.axis, keepdims=True), zero)
        else:  # crammer_singer: the largest wrong score only
            top, at = _top(xp, prediction, ct.axis, exclude=hit)
            violation = top - correct + m
            row = xp.zeros_like(violation)
            active = (violation > 0) | row_nan
            v, d = _powered(xp, active, violation, power, row)
            per_example = xp.squeeze(v, axis=ct.axis)
            g = None
            if need_grad:
                g = d * (at - xp.astype(hit, ctx.work))
            h = hv = None
            if ctx.wants_hessian and power == 2:
                h, hv = _rank_one(ctx, active, at - xp.astype(hit, ctx.work), ct.axis)
        value = _weighted(xp, ct.weight, per_example)  # class weight of the label, 0 ignored
        grad = None
        if need_grad:
            g = xp.where(row_nan, xp.full_like(g, float("nan")), g)
            grad = _weighted(xp, ct.expand(ct.weight), g)
        hess = hvp = None
        if ctx.wants_hessian:
            hess, hvp = _second_terms(ctx, prediction, h, hv, row_nan,
                                      ct.expand(ct.weight))
        return Terms(value, grad, ct.weight, ct.expand, hess=hess, hvp=hvp)

    @staticmethod
    def _categorical(ctx, prediction, target, need_grad, m, power, axis, class_weight,
                     ignore_index):
        """Keras's categorical hinge, max(0, m + max_j (1 - t_j) s_j - sum_j t_j s_j)^p."""
        xp = ctx.xp
        ax = normalize_axis(prediction.ndim, axis, ctx.loss)
        k = prediction.shape[ax]
        t = ctx.asarray(target, "target")
        soft = xp.isdtype(t.dtype, "real floating")
        ct = class_target(ctx, prediction, t, axis=ax, class_weight=None if soft else
                          class_weight, ignore_index=ignore_index)
        if soft:
            onehot = ct.coef  # the probabilities, checked in [0, 1]
            weight = None
            factor = None
            if class_weight is not None:
                cw = _class_weights(ctx, class_weight, k)
                bshape = tuple(k if i == ax else 1 for i in range(prediction.ndim))
                factor = xp.sum(onehot * xp.reshape(cw, bshape), axis=ax)
        else:
            onehot = ct.onehot  # 0 rows where ignored (their weight 0 removes them)
            weight = ct.weight
            factor = ct.weight
        s = prediction
        nan = xp.isnan(s)
        row_nan = xp.any(nan, axis=ax, keepdims=True)
        u = _weighted(xp, 1.0 - onehot, s)  # 0 * inf = 0 where t_j = 1
        top, at = _top(xp, u, ax)
        pos = xp.sum(_weighted(xp, onehot, s), axis=ax, keepdims=True)
        violation = top - pos + m
        row = xp.zeros_like(violation)
        active = (violation > 0) | row_nan
        v, d = _powered(xp, active, violation, power, row)
        per_example = xp.squeeze(v, axis=ax)
        value = per_example if factor is None else _weighted(xp, factor, per_example)
        grad = None
        if need_grad:
            g = d * ((1.0 - onehot) * at - onehot)
            g = xp.where(row_nan, xp.full_like(g, float("nan")), g)
            grad = g if factor is None else _weighted(xp, ct.expand(factor), g)
        hess = hvp = None
        if ctx.wants_hessian:
            h = hv = None
            if power == 2:  # 2 c c^T with c = d v / d s = (1 - t) pi - t
                h, hv = _rank_one(ctx, active, (1.0 - onehot) * at - onehot, ax)
            hess, hvp = _second_terms(ctx, s, h, hv, row_nan,
                                      None if factor is None else ct.expand(factor))
        return Terms(value, grad, weight, ct.expand, hess=hess, hvp=hvp)


def _rank_one(ctx, active, c, axis):
    """The diagonal of 2 c c^T where ``active`` (0 elsewhere) and its product with
    ``ctx.vector`` (None without one): the Hessian of max(0, v)^2 whose dv/ds is c."""
    xp = ctx.xp
    a2 = xp.where(active, xp.full_like(c, 2.0), xp.zeros_like(c))
    h = a2 * (c * c)
    hv = None
    if ctx.vector is not None:
        hv = a2 * c * xp.sum(c * ctx.vector, axis=axis, keepdims=True)
    return h, hv


def _second_terms(ctx, prediction, h, hv, row_nan, weight):
    """``(hess, hvp)`` of multiclass_hinge from the rows' Hessian diagonal ``h`` and
    product ``hv`` (``h`` None for p = 1, piecewise linear: a zero Hessian), NaN rows NaN,
    times the example weight (broadcastable to the prediction, or None)."""
    xp = ctx.xp
    if h is None:  # hvp None too: the pipeline multiplies the zeros by the vector
        h = xp.zeros_like(prediction)
    nan = xp.full_like(h, float("nan"))
    h = xp.where(row_nan, nan, h)
    if hv is not None:
        hv = xp.where(row_nan, nan, hv)
    if weight is not None:
        h = _weighted(xp, weight, h)
        hv = None if hv is None else _weighted(xp, weight, hv)
    return h, hv


class MulticlassPerceptron(Loss):
    r"""Multi-class perceptron loss :math:`\ell = \max_k s_k - s_y`.

    The score of the best class minus that of the correct one: 0 when the correct class
    wins (ties included), else how far it lags. Optax's ``multiclass_perceptron_loss``; the
    loss of Collins's structured perceptron.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Class scores; the class axis is ``axis``.
    target : integer array
        Class labels (the prediction's shape without the class axis).
    axis : int, default -1
    class_weight : array of shape (K,), optional
        Multiplies each example's loss by the weight of its true class (the mean then divides
        by the sum of those weights).
    ignore_index : int, optional
        Labels equal to it contribute nothing.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \max_k s_k - s_y, \qquad
        \frac{\partial \ell}{\partial s} = \pi - e_y

    where :math:`\pi` puts weight 1 on the best class (shared equally among tied best
    classes, as ``jax.grad`` of a max does). Where the correct class is among the best
    the loss is 0 and the subgradient 0 is used (``jax.grad`` of Optax's formula gives
    :math:`\pi - e_y` there too). The loss is piecewise linear: its Hessian is 0 almost
    everywhere and undefined where the best class changes, and ``hessian`` returns zeros
    (gradient boosting on it would need a stand-in curvature, as XGBoost's
    ``reg:absoluteerror`` and LightGBM's ``l1`` use a Hessian of 1 and refit the leaves). A ``+inf`` correct score costs 0; a NaN score makes its
    row's value and gradient NaN.

    References
    ----------
    .. [1] M. Collins, "Discriminative training methods for Hidden Markov Models: Theory
       and experiments with perceptron algorithms", EMNLP 2002.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> s = np.array([[1.0, 3.0, 0.5]])
    >>> float(lk.multiclass_perceptron(s, np.array([0])))   # 3 - 1
    2.0
    >>> lk.multiclass_perceptron.grad(s, np.array([0]))
    array([[-1.,  1.,  0.]])
    """

    name = "multiclass_perceptron"
    family = "margin"
    prediction = "scores"
    target = "integer labels"
    formula = r"\ell = \max_k s_k - s_y"
    gradient_formula = r"\frac{\partial \ell}{\partial s} = e_{\arg\max_k s_k} - e_y"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial s \partial s^\top} = 0"
    second_order = "zero"
    when_to_use = (
        "Multi-class and structured prediction trained by perceptron updates: only a "
        "mistake costs, and its gradient moves the correct class up and the winning wrong "
        "class down. No margin: for a maximum-margin classifier use multiclass_hinge."
    )
    references = ("Collins, Discriminative training methods for Hidden Markov Models, "
                  "EMNLP 2002",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, class_weight=None,
                 ignore_index=None):
        xp = ctx.xp
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, soft_ok=False)
        ax = ct.axis
        correct = ct.pick(xp, prediction)
        top, at = _top(xp, prediction, ax)
        row_nan = xp.any(xp.isnan(prediction), axis=ax, keepdims=True)
        wins = (correct >= top) & ~row_nan  # the correct class is among the best: 0
        lag = xp.where(wins, xp.zeros_like(top), top - correct)
        value = _weighted(xp, ct.weight, xp.squeeze(lag, axis=ax))
        grad = None
        if need_grad:
            g = at - xp.astype(ct.hit(), ctx.work)
            g = xp.where(wins, xp.zeros_like(g), g)
            g = xp.where(row_nan, xp.full_like(g, float("nan")), g)
            grad = _weighted(xp, ct.expand(ct.weight), g)
        hess = None
        if ctx.wants_hessian:  # piecewise linear: 0 (NaN rows NaN, ignored rows 0)
            h = xp.where(row_nan, xp.full_like(prediction, float("nan")),
                         xp.zeros_like(prediction))
            hess = _weighted(xp, ct.expand(ct.weight), h)
        return Terms(value, grad, ct.weight, ct.expand, hess=hess)


class SquaredHinge(Loss):
    r"""Squared hinge loss :math:`\ell = \max(0, m - t\,s)^2` for targets :math:`t \in \{-1, +1\}`.

    The L2-SVM loss: like ``hinge`` it ignores examples beyond the margin, but it is
    differentiable everywhere (the gradient goes to 0 continuously at the margin) and
    punishes large violations quadratically.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Real-valued scores :math:`s` (not probabilities).
    target : array of the same shape
        Labels -1 or +1 (map 0/1 labels with ``2 * t - 1``).
    margin : float, default 1
        The margin :math:`m`.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \max(0, m - t s)^2, \qquad
        \frac{\partial \ell}{\partial s} = -2\,t \max(0, m - t s), \qquad
        \frac{\partial^2 \ell}{\partial s^2} = 2\,[t s < m]

    The derivative is continuous (0 from both sides at :math:`t s = m`), so no subgradient
    choice is needed; the second derivative jumps there from 2 to 0 (0 is used at
    :math:`t s = m`). Keras's ``squared_hinge`` is this loss averaged over the last axis;
    scikit-learn's ``LinearSVC(loss="squared_hinge")`` minimises its sum.

    References
    ----------
    .. [1] S. S. Keerthi, D. DeCoste, "A modified finite Newton method for fast solution
       of large scale linear SVMs", JMLR 6, 2005 (the L2-SVM).
    .. [2] R.-E. Fan, K.-W. Chang, C.-J. Hsieh, X.-R. Wang, C.-J. Lin, "LIBLINEAR: A
       library for large linear classification", JMLR 9, 2008.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> s = np.array([2.0, 0.5, -1.0]); t = np.array([1.0, 1.0, 1.0])
    >>> lk.squared_hinge(s, t, reduction="none")   # max(0, 1 - s)^2
    array([0.  , 0.25, 4.  ])
    >>> lk.squared_hinge.grad(s, t, reduction="sum")   # -2 max(0, 1 - s)
    array([ 0., -1., -4.])
    """

    name = "squared_hinge"
    family = "margin"
    prediction = "scores"
    target = "labels -1/+1, same shape"
    formula = r"\ell = \max(0, m - t s)^2"
    gradient_formula = r"\frac{\partial \ell}{\partial s} = -2 t \max(0, m - t s)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial s^2} = 2\,[t s < m]"
    second_order = "diagonal"
    when_to_use = (
        "Maximum-margin binary classification with a smooth loss (the L2-SVM, LinearSVC's "
        "default): examples beyond the margin cost nothing, as with the hinge, but the "
        "loss is differentiable, which suits gradient and Newton solvers; violations cost "
        "quadratically, so it is more sensitive to outliers than the hinge."
    )
    references = ("Fan et al., LIBLINEAR: A library for large linear classification, "
                  "JMLR 9, 2008",)

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        t = _signed_labels(ctx, self._real_target(ctx, prediction, target))
        value, grad = SQUARED_HINGE.on(xp)(prediction, t, m)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(SQUARED_HINGE, prediction, t, m))


class Perceptron(Loss):
    r"""Binary perceptron loss :math:`\ell = \max(0, -t\,s)` for targets :math:`t \in \{-1, +1\}`.

    The hinge at margin 0 (``hinge(..., margin=0)``): a correctly signed score costs
    nothing however small it is, a wrong one costs its size. Optax's ``perceptron_loss``.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Real-valued scores :math:`s`.
    target : array of the same shape
        Labels -1 or +1 (map 0/1 labels with ``2 * t - 1``).
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \max(0, -t s), \qquad
        \frac{\partial \ell}{\partial s} = \begin{cases} -t & t s < 0 \\ 0 & t s \ge 0 \end{cases},
        \qquad \frac{\partial^2 \ell}{\partial s^2} = 0 \quad (t s \ne 0)

    At the kink :math:`t s = 0` the subgradient 0 is used (``jax.grad`` of Optax's
    ``jnp.maximum`` gives half of :math:`-t` there). The Hessian is 0 almost everywhere
    and undefined at the kink; ``hessian`` returns zeros (gradient boosting on a
    piecewise-linear loss uses a Hessian of 1 instead, as XGBoost's
    ``reg:absoluteerror`` and LightGBM's ``l1`` do, and refits the leaf values). Gradient descent on it with a linear
    model is Rosenblatt's perceptron update.

    References
    ----------
    .. [1] F. Rosenblatt, "The perceptron: a probabilistic model for information storage
       and organization in the brain", Psychological Review 65(6), 1958,
       doi:10.1037/h0042519.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> s = np.array([2.0, -0.5, 0.5]); t = np.array([1.0, 1.0, -1.0])
    >>> lk.perceptron(s, t, reduction="none")
    array([0. , 0.5, 0.5])
    >>> lk.perceptron.grad(s, t, reduction="sum")
    array([ 0., -1.,  1.])
    """

    name = "perceptron"
    family = "margin"
    prediction = "scores"
    target = "labels -1/+1, same shape"
    formula = r"\ell = \max(0, -t s)"
    gradient_formula = r"\frac{\partial \ell}{\partial s} = -t\,[t s < 0]"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial s^2} = 0 \quad (t s \ne 0)"
    second_order = "zero"
    when_to_use = (
        "Online linear classification where only the sign matters: the classic perceptron "
        "(and the structured perceptron) minimises it. It has no margin, so any separating "
        "boundary is a minimum; use hinge for a maximum-margin solution."
    )
    references = ("Rosenblatt, The perceptron, Psychological Review 65(6), 1958, "
                  "doi:10.1037/h0042519",)

    def _compute(self, ctx, prediction, target, *, need_grad):
        t = _signed_labels(ctx, self._real_target(ctx, prediction, target))
        value, grad = PERCEPTRON.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(PERCEPTRON, prediction, t))


class SoftMargin(Loss):
    r"""Soft-margin (logistic) loss :math:`\ell = \log(1 + e^{-t s})`, targets :math:`t \in \{-1, +1\}`.

    Exactly ``torch.nn.functional.soft_margin_loss``: the binary cross-entropy of logits
    written for labels -1/+1, ``sigmoid_binary_cross_entropy(s, (t + 1) / 2)``.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Real-valued scores (logits) :math:`s`.
    target : array of the same shape
        Labels -1 or +1.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \operatorname{softplus}(-t s), \qquad
        \frac{\partial \ell}{\partial s} = -t\,\sigma(-t s), \qquad
        \frac{\partial^2 \ell}{\partial s^2} = \sigma(t s)\,\sigma(-t s)

    Computed as :math:`\max(u, 0) + \operatorname{log1p}(e^{-|u|})` with :math:`u = -ts`:
    exact for any score, infinite ones included.

    References
    ----------
    .. [1] T. Hastie, R. Tibshirani, J. Friedman, *The Elements of Statistical Learning*,
       2nd ed., Springer 2009, sec. 10.6 (the binomial deviance as a margin loss).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> s = np.array([0.0, np.log(3.0)]); t = np.array([1.0, -1.0])
    >>> bool(np.allclose(lk.soft_margin(s, t, reduction="none"), [np.log(2), np.log(4)]))
    True
    >>> lk.soft_margin.grad(s, t, reduction="sum")   # -t sigmoid(-t s): -1/2, 3/4
    array([-0.5 ,  0.75])
    """

    name = "soft_margin"
    aliases = ("soft_margin_loss",)
    family = "margin"
    prediction = "scores"
    target = "labels -1/+1, same shape"
    formula = r"\ell = \log\left(1 + e^{-t s}\right)"
    gradient_formula = r"\frac{\partial \ell}{\partial s} = -t\,\sigma(-t s)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial s^2} = \sigma(t s)\,\sigma(-t s)"
    second_order = "diagonal"
    when_to_use = (
        "Binary classification (logistic regression) when the labels are already -1/+1, "
        "as in margin-based code: the same loss as sigmoid binary cross-entropy, smooth "
        "everywhere, and never exactly zero, so every example keeps a small gradient."
    )
    references = ("Hastie, Tibshirani, Friedman, The Elements of Statistical Learning, "
                  "2009, sec. 10.6",)

    def _compute(self, ctx, prediction, target, *, need_grad):
        t = _signed_labels(ctx, self._real_target(ctx, prediction, target))
        value, grad = SOFT_MARGIN.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(SOFT_MARGIN, prediction, t))


class HingeEmbedding(Loss):
    r"""Hinge embedding loss, exactly ``torch.nn.functional.hinge_embedding_loss``.

    For a distance (or any non-negative score) :math:`x` between two items and a label
    :math:`t = +1` (similar) or :math:`-1` (dissimilar): similar pairs cost their distance,
    dissimilar ones cost how far they fall inside the margin :math:`m`.

    Parameters
    ----------
    prediction : floating array of shape (*)
        The inputs :math:`x`, typically distances such as an L1 or L2 norm.
    target : array of the same shape
        Labels +1 (similar) or -1 (dissimilar).
    margin : float, default 1
        The margin :math:`m` below which a dissimilar pair costs.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \begin{cases} x & t = 1 \\ \max(0, m - x) & t = -1 \end{cases}, \qquad
        \frac{\partial \ell}{\partial x} = \begin{cases} 1 & t = 1 \\
            -[x < m] & t = -1 \end{cases}, \qquad
        \frac{\partial^2 \ell}{\partial x^2} = 0

    At the kink :math:`x = m` of a dissimilar pair the subgradient 0 is used. Both pieces
    are linear: the Hessian is 0 almost everywhere and undefined at that kink, and
    ``hessian`` returns zeros (for gradient boosting, XGBoost's ``reg:absoluteerror`` and
    LightGBM's ``l1`` show the usual workaround: a Hessian of 1 and a refit of the leaves).

    References
    ----------
    .. [1] PyTorch documentation, ``torch.nn.HingeEmbeddingLoss``.
    .. [2] R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality Reduction by Learning an
       Invariant Mapping", CVPR 2006, doi:10.1109/CVPR.2006.100 (the same idea on
       distances).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> x = np.array([0.3, 0.4, 1.5]); t = np.array([1.0, -1.0, -1.0])
    >>> lk.hinge_embedding(x, t, reduction="none")
    array([0.3, 0.6, 0. ])
    >>> lk.hinge_embedding.grad(x, t, reduction="sum")
    array([ 1., -1.,  0.])
    """

    name = "hinge_embedding"
    aliases = ("hinge_embedding_loss",)
    family = "margin"
    prediction = "distances"
    target = "labels -1/+1, same shape"
    formula = r"\ell = x\,[t = 1] + \max(0, m - x)\,[t = -1]"
    gradient_formula = r"\frac{\partial \ell}{\partial x} = [t = 1] - [t = -1]\,[x < m]"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial x^2} = 0 \quad (x \ne m)"
    second_order = "zero"
    when_to_use = (
        "Learning embeddings or similarities from labelled pairs when the model outputs a "
        "distance per pair: similar pairs are pulled to distance 0, dissimilar pairs pushed "
        "beyond the margin (semi-supervised and nonlinear embedding learning)."
    )
    references = ("PyTorch documentation, torch.nn.HingeEmbeddingLoss",
                  "Hadsell, Chopra, LeCun, Dimensionality Reduction by Learning an Invariant "
                  "Mapping, CVPR 2006",)

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0):
        m = check_scalar("margin", margin)
        t = _signed_labels(ctx, self._real_target(ctx, prediction, target))
        value, grad = HINGE_EMBEDDING.on(ctx.xp)(prediction, t, m)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(HINGE_EMBEDDING, prediction, t, m))


hinge = register(Hinge())
multiclass_hinge = register(MulticlassHinge())
squared_hinge = register(SquaredHinge())
perceptron = register(Perceptron())
soft_margin = soft_margin_loss = register(SoftMargin())
hinge_embedding = hinge_embedding_loss = register(HingeEmbedding())
multiclass_perceptron = register(MulticlassPerceptron())

# fused NumPy kernels of hinge and squared_hinge (losskit.kernels.pointwise)
register_fast_path(Hinge, pointwise.fast_path(HINGE, ("margin",), check=SIGNED_LABEL_OK))
register_fast_path(SquaredHinge, pointwise.fast_path(SQUARED_HINGE, ("margin",),
                                                     check=SIGNED_LABEL_OK))
register_fast_path(Perceptron, pointwise.fast_path(PERCEPTRON, check=SIGNED_LABEL_OK0))
register_fast_path(SoftMargin, pointwise.fast_path(SOFT_MARGIN, check=SIGNED_LABEL_OK0))
register_fast_path(HingeEmbedding, pointwise.fast_path(HINGE_EMBEDDING, ("margin",),
                                                       check=SIGNED_LABEL_OK))

# fused NumPy kernel of multiclass_hinge, Weston-Watkins with p=1 (losskit.kernels.rows)
register_fast_path(MulticlassHinge, rows.multiclass_hinge)
register_fast_path(MulticlassPerceptron, rows.multiclass_perceptron)
