r"""Margin losses: the binary hinge, its square, and the multi-class (SVM) hinge.

The hinge only cares whether the correct score beats the others by a margin; past the
margin an example costs nothing and gives no gradient (contrast softmax cross-entropy,
which keeps scoring and normalising every class).
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, isnan, where
from ..core.loss import Loss, Terms, register
from ..kernels import pointwise
from ..kernels import rows
from .cross_entropy import class_target
from ..core.primitives import _weighted
from ..core.validation import check_scalar, check_two_values

__all__ = ["hinge", "multiclass_hinge", "squared_hinge"]


# the pointwise math of hinge and squared_hinge, stated once (losskit.core.formula): the
# generic kernels evaluate it on any array library, losskit.kernels.pointwise compiles it
def _hinge(s, t, margin):
    slack = margin - t * s
    active = (slack > 0) | isnan(slack)  # NaN propagates to value and gradient
    return where(active, slack, 0.0), where(isnan(slack), slack, where(active, -t, 0.0))


def _squared_hinge(s, t, margin):
    slack = margin - t * s
    active = where((slack > 0) | isnan(slack), slack, 0.0)  # max(0, slack), NaN kept
    return active * active, 0.0 - 2.0 * (t * active)  # 0.0 -: no -0 entries


def _signed_label_ok(s, t, margin):
    return (t == 1.0) | (t == -1.0)


HINGE = Formula(_hinge)
SQUARED_HINGE = Formula(_squared_hinge)
SIGNED_LABEL_OK = Formula(_signed_label_ok)


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
        \frac{\partial \ell}{\partial s} = \begin{cases} -t & t s < m \\ 0 & t s \ge m \end{cases}

    At the kink :math:`t s = m` the subgradient 0 is used.

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
        return Terms(value, grad if need_grad else None)


class MulticlassHinge(Loss):
    r"""Multi-class hinge (SVM) loss, Weston–Watkins / CS231n convention.

    :math:`\ell = \sum_{j \ne y} \max(0, s_j - s_y + m)`: every wrong class whose score comes
    within the margin :math:`m` of the correct one costs its violation.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Class scores; the class axis is ``axis``.
    target : integer array
        Class labels (the prediction's shape without the class axis).
    margin : float, default 1
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

        \ell_n = \sum_{j \ne y_n} \max(0, s_{nj} - s_{n y_n} + m), \qquad
        \frac{\partial \ell_n}{\partial s_{nj}} = [s_{nj} - s_{ny_n} + m > 0] \;(j \ne y_n),
        \qquad \frac{\partial \ell_n}{\partial s_{ny_n}} = -\#\{j \ne y_n : s_{nj} - s_{ny_n} + m > 0\}

    Infinite scores follow PyTorch's ``multi_margin_loss``: a ``-inf`` score on a wrong
    class costs nothing (a masked class), ``+inf`` there costs ``inf`` with gradient 1,
    and a pair whose violation is ``inf - inf`` (:math:`s_j = s_y = \pm\infty`, e.g. a
    ``-inf`` correct score against other ``-inf`` scores) counts as no violation; a
    ``-inf`` correct score against finite ones costs ``inf``. A NaN score makes its row's
    value and gradient NaN.

    Conventions differ: PyTorch's ``multi_margin_loss`` divides each example's sum by K
    (``multiclass_hinge(...) / K`` reproduces it) and weights the mean by N, not by the class
    weights; Crammer–Singer takes the max over :math:`j` instead of the sum.

    References
    ----------
    .. [1] J. Weston, C. Watkins, "Support vector machines for multi-class pattern
       recognition", ESANN 1999.
    .. [2] Stanford CS231n notes, "Linear classification: Multiclass SVM loss".

    Examples
    --------
    CS231n's worked example: scores (13, -7, 11), correct class 0, margin 10 gives 8.

    >>> import numpy as np, losskit as lk
    >>> float(lk.multiclass_hinge(np.array([[13.0, -7.0, 11.0]]), np.array([0]), margin=10.0))
    8.0
    """

    name = "multiclass_hinge"
    family = "margin"
    prediction = "scores"
    target = "integer labels"
    formula = r"\ell = \sum_{j \ne y} \max(0, s_j - s_y + m)"
    gradient_formula = (r"\frac{\partial \ell}{\partial s_j} = [s_j - s_y + m > 0],\ "
                        r"\frac{\partial \ell}{\partial s_y} = -\sum_{j \ne y} [s_j - s_y + m > 0]")
    when_to_use = (
        "Multi-class classification when only the ranking of the correct class matters (the "
        "SVM view): once the correct score beats the rest by the margin, the example stops "
        "contributing. Softmax cross-entropy, by contrast, keeps pushing probabilities and "
        "gives calibrated outputs."
    )
    references = ("Weston and Watkins, ESANN 1999", "Stanford CS231n, Multiclass SVM loss")

    def _compute(self, ctx, prediction, target, *, need_grad, margin=1.0, axis=-1,
                 class_weight=None, ignore_index=None):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, soft_ok=False)
        zero = xp.zeros_like(prediction)
        # s_y gathered (not onehot * s: 0 * (-inf) would make the row NaN); an ignored row
        # picks class 0, and its weight 0 removes it below
        hit = ct.hit()
        correct = ct.pick(xp, prediction)
        violation = prediction - correct + m
        # a NaN score propagates to the value and gradient of its row; a NaN violation from
        # inf - inf (s_j = s_y = -inf, or both +inf) is no violation, as in PyTorch's
        # multi_margin_loss (its `z > 0` test is false for NaN)
        nan = xp.isnan(prediction) | xp.isnan(correct)
        active = ((violation > 0) | nan) & ~hit
        per_example = xp.sum(xp.where(active, violation, zero), axis=ct.axis)
        value = _weighted(xp, ct.weight, per_example)  # class weight of the label, 0 ignored
        grad = None
        if need_grad:
            a = xp.astype(active, ctx.work)
            g = a - xp.where(hit, xp.sum(a, axis=ct.axis, keepdims=True), zero)
            row_nan = xp.any(nan, axis=ct.axis, keepdims=True)
            g = xp.where(row_nan, xp.full_like(g, float("nan")), g)
            grad = _weighted(xp, ct.expand(ct.weight), g)
        return Terms(value, grad, ct.weight, ct.expand)


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
        \frac{\partial \ell}{\partial s} = -2\,t \max(0, m - t s)

    The derivative is continuous (0 from both sides at :math:`t s = m`), so no subgradient
    choice is needed. Keras's ``squared_hinge`` is this loss averaged over the last axis;
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
        return Terms(value, grad if need_grad else None)


hinge = register(Hinge())
multiclass_hinge = register(MulticlassHinge())
squared_hinge = register(SquaredHinge())

# fused NumPy kernels of hinge and squared_hinge (losskit.kernels.pointwise)
register_fast_path(Hinge, pointwise.fast_path(HINGE, ("margin",), check=SIGNED_LABEL_OK))
register_fast_path(SquaredHinge, pointwise.fast_path(SQUARED_HINGE, ("margin",),
                                                     check=SIGNED_LABEL_OK))

# fused NumPy kernel of multiclass_hinge (losskit.kernels.rows)
register_fast_path(MulticlassHinge, rows.multiclass_hinge)
